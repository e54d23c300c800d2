// End-to-end capacity bench: open-loop load at fixed offered rates, stepped up until the SLO breaks.
// Per step: offered vs achieved, HTTP p50/p95/p99/max and errors by status, end-to-end latency
// (accept → row visible in Postgres), consumer lag, CPU and RSS of every process, and the CPU each
// process spent per accepted event (µs of CPU per event; the load generator's, from its own summary,
// is reported beside them and not counted). At the end, the guarantees as PASS/FAIL rows: no acknowledged event lost; every
// event stored and counted once (sql/checks.ts storedOnce); the latency sample complete (every
// stored event of the sampled QR codes observed). Exits 1 when one fails. Saves JSON and a
// self-contained HTML report.
//
// With --variants (bench/levers.ts) the same steps run once per variant, each on a fresh database
// and topic, in one run, and a lever table compares them: before/after figures from the same hour.
//   bun bench/e2e.ts [--steps 1000,2000,4000,8000,16000] [--step-seconds 10] [--batch 10] [--workers 2]
//                    [--variants before,after] [--all-steps]
// SLO for a step to hold: HTTP p95 < 400 ms, error rate < 1%, end-to-end p95 < 400 ms.
import { writeFileSync } from "node:fs";
import postgres from "postgres";
import { localStack } from "../shared/local-stack.ts";
import { sum } from "../shared/prometheus-text.ts";
import { missingEventIds, storedOnce } from "../sql/checks.ts";
import { scrapeIfUp } from "../tools/harness.ts";
import { childPids, isolatedRun, service } from "../tools/pipeline.ts";
import { up } from "../tools/stack.ts";
import { kafkaNodePid } from "../tools/stack/kafka.ts";
import { pgbouncerPid, postgresPid } from "../tools/stack/postgres.ts";
import { freePort } from "../tools/stack/processes.ts";
import { checkoutOf } from "../tools/tree-copies.ts";
import { type Variant, variantsNamed } from "./levers.ts";
import { arg, numArg, printTable, saveResults } from "./lib.ts";
import type { LoadResult } from "./load.ts";
import { SAMPLE_QR_IDS, startE2eObserver } from "./observer.ts";
import { cpuSampler } from "./proc-stats.ts";
import { lineChart, page, table } from "./report.ts";

const steps = arg("steps", "1000,2000,4000,8000,16000").split(",").map(Number);
const stepSeconds = numArg("step-seconds", 10);
const batch = numArg("batch", 10);
const workerCount = numArg("workers", 2);
/** Without --variants: this checkout as it is. */
const variants: Variant[] = process.argv.includes("--variants")
  ? variantsNamed(arg("variants", "").split(",").filter(Boolean))
  : [{ name: "this checkout", lever: "", env: {} }];
/** Keep stepping after the SLO breaks (a lever table wants every variant at every rate). */
const allSteps = process.argv.includes("--all-steps");
const SLO = { httpP95Ms: 400, errorRate: 0.01, e2eP95Ms: 400 };
/** The roadmap's bar and our own aim (an order of magnitude under it), checked per step. */
const PHASES = [
  { name: "roadmap bar", p95Ms: 400, errorRate: 0.01 },
  { name: "our aim", p95Ms: 40, errorRate: 0.001 },
];
/** The pipeline's processes, whose CPU per event is the figure to move. */
const PROCS = ["server", "workers", "kafka", "postgres", "pgbouncer"] as const;

const stack = localStack();
const root = new URL("..", import.meta.url).pathname;
const pct = (sorted: number[], p: number) =>
  sorted.length
    ? (sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number)
    : Number.NaN;

interface Sample {
  t: number;
  lag: number;
  rows: number;
  procs: Record<string, { cpu_pct: number; rss_mib: number }>;
}
interface StepResult {
  offered_events_s: number;
  load: LoadResult;
  startedAt: number;
  endedAt: number;
  acked: string[];
  /** CPU% (of one core) of the load generator over the step: reported apart, not counted. */
  loadgenCpuPct: number;
  /** Postgres' WAL over the step (pg_stat_wal, the whole cluster): bytes, records, full-page images. */
  wal: { bytes: number; records: number; fpi: number };
}

/** The cluster's WAL counters so far (PostgreSQL 14+). */
async function walCounters(sql: postgres.Sql) {
  const [w] = await sql<{ bytes: string; records: string; fpi: string }[]>`
    select wal_bytes::text as bytes, wal_records::text as records, wal_fpi::text as fpi from pg_stat_wal`;
  return { bytes: Number(w?.bytes), records: Number(w?.records), fpi: Number(w?.fpi) };
}

await up();

/** Applies a variant's PostgreSQL settings (ALTER SYSTEM + reload); returns how to undo them. */
async function applyPostgresSettings(settings: Record<string, string> = {}) {
  const names = Object.keys(settings);
  if (names.length === 0) return async () => {};
  const admin = postgres(stack.adminDatabaseUrl, { max: 1, onnotice: () => {} });
  for (const [name, value] of Object.entries(settings)) await admin.unsafe(`alter system set ${name} = '${value}'`);
  await admin`select pg_reload_conf()`;
  return async () => {
    for (const name of names) await admin.unsafe(`alter system reset ${name}`);
    await admin`select pg_reload_conf()`;
    await admin.end();
  };
}

async function runVariant(variant: Variant) {
  const checkout = variant.rev ? checkoutOf(variant.rev, "e2e") : null;
  const resetPostgres = await applyPostgresSettings(variant.postgres);
  const codeRoot = checkout?.dir ?? root;
  const isolated = await isolatedRun("e2e");
  const { directUrl, run } = isolated;
  const port = freePort();
  const serverMetricsPort = freePort();
  const workerMetricsBase = 20_000 + Math.floor(Math.random() * 20_000);
  const supervisorMetricsPort = freePort();
  const server = service(
    "server",
    `${codeRoot}server/main.ts`,
    {
      ...isolated.env,
      ...variant.env,
      PORT: String(port),
      METRICS_PORT: String(serverMetricsPort),
      AUTH_DISABLED: "true",
    },
    `http://127.0.0.1:${port}/ready`,
  );
  const workers = service("workers", `${codeRoot}worker/supervisor.ts`, {
    ...isolated.env,
    ...variant.env,
    WORKER_POOL_SIZE: String(workerCount),
    METRICS_PORT: String(workerMetricsBase),
    SUPERVISOR_METRICS_PORT: String(supervisorMetricsPort),
    LAG_INTERVAL_MS: "1000",
  });
  await Promise.all([server.start(), workers.start()]);
  await Bun.sleep(3_000); // workers joined the group

  // The observer's polling must not be what Postgres spends its CPU on: on a fresh table, before
  // autovacuum's first ANALYZE, the planner scanned the whole day partition 50 times a second
  // (Postgres' CPU grew through each step, to 70% of a core at 8,000 events/s, then fell to 20%
  // once ANALYZE ran). No sequential scans for this bench's own queries: they use the indexes.
  const sql = postgres(directUrl, { max: 2, onnotice: () => {}, connection: { enable_seqscan: "off" } });
  const started = Date.now();
  const samples: Sample[] = [];
  let loadgenPid = 0;
  const sampleCpu = cpuSampler(() => {
    const pg = postgresPid(stack);
    return {
      server: server.pid ? [server.pid] : [],
      workers: childPids(workers.pid as number),
      // Every node of the cluster (one, or three with KAFKA_NODES=3).
      kafka: stack.kafkaNodes.map((_, i) => kafkaNodePid(stack, i + 1) ?? 0).filter(Boolean),
      postgres: pg ? [pg, ...childPids(pg)] : [],
      pgbouncer: [pgbouncerPid(stack) ?? 0].filter(Boolean),
      loadgen: loadgenPid ? [loadgenPid] : [],
    };
  });
  let rowsBefore = 0;
  const sampler = setInterval(async () => {
    const procs = sampleCpu();
    // A worker that does not answer (restarting) counts as nothing this second.
    const w = (
      await Promise.all(
        Array.from({ length: workerCount }, (_, i) => scrapeIfUp(`http://127.0.0.1:${workerMetricsBase + i}/metrics`)),
      )
    ).flatMap((s) => s ?? []);
    const rows = sum(w, "worker_rows_inserted_total");
    samples.push({
      t: (Date.now() - started) / 1000,
      lag: sum(w, "worker_consumer_lag"),
      rows: rows - rowsBefore,
      procs,
    });
    rowsBefore = rows;
  }, 1_000);

  // The observer (bench/observer.ts): a 1% sample of QR codes, e2e = first seen − received_at.
  const observer = startE2eObserver(sql);
  const { e2e, seen } = observer;

  const stepResults: StepResult[] = [];
  let lastHeld: number | null = null;
  let broken = false;
  for (const rate of steps) {
    const out = `/tmp/${run}-${rate}.json`;
    const ackedFile = `/tmp/${run}-${rate}.ids`;
    const startedAt = Date.now();
    const walBefore = await walCounters(sql);
    const proc = Bun.spawn(
      [
        "bun",
        "bench/load.ts",
        "--url",
        `http://127.0.0.1:${port}`,
        "--scenario",
        "batch",
        "--batch",
        String(batch),
        "--rate",
        String(rate / batch),
        "--duration",
        String(stepSeconds),
        "--out",
        out,
        "--acked-out",
        ackedFile,
      ],
      { cwd: root, stdout: "ignore", stderr: "inherit" },
    );
    loadgenPid = proc.pid;
    await proc.exited;
    loadgenPid = 0;
    const endedAt = Date.now();
    const load = (await Bun.file(out).json()) as LoadResult;
    const acked = (await Bun.file(ackedFile).text()).split("\n").filter(Boolean);
    const inStep = samples.filter((x) => x.t * 1000 + started > startedAt && x.t * 1000 + started <= endedAt);
    const loadgenCpuPct = inStep.length
      ? inStep.reduce((a, x) => a + (x.procs.loadgen?.cpu_pct ?? 0), 0) / inStep.length
      : 0;
    const walAfter = await walCounters(sql);
    const wal = {
      bytes: walAfter.bytes - walBefore.bytes,
      records: walAfter.records - walBefore.records,
      fpi: walAfter.fpi - walBefore.fpi,
    };
    stepResults.push({ offered_events_s: rate, load, startedAt, endedAt, acked, loadgenCpuPct, wal });
    // Give the sink a moment to show whether it keeps up at this rate.
    await Bun.sleep(2_000);
    const window = e2e
      .filter((e) => e.at >= startedAt && e.at <= Date.now())
      .map((e) => e.ms)
      .sort((a, b) => a - b);
    const held =
      load.latency_ms.p95 < SLO.httpP95Ms && load.error_rate < SLO.errorRate && pct(window, 95) < SLO.e2eP95Ms;
    console.log(
      `[${variant.name}] step ${rate} ev/s: achieved ${load.events_per_s} ev/s, HTTP p95 ${load.latency_ms.p95} ms, ` +
        `errors ${load.error_rate}, e2e p95 ${pct(window, 95)} ms -> ${held ? "held" : "SLO broken"}`,
    );
    // The capacity is the last rate of the unbroken run of held steps from the first.
    if (!held) broken = true;
    else if (!broken) lastHeld = rate;
    if (broken && !allSteps) break;
  }

  // Drain, then the checks that must be zero.
  const ackedAll = stepResults.flatMap((s) => s.acked);
  let missing = await missingEventIds(sql, ackedAll);
  const drainDeadline = Date.now() + 180_000;
  while (missing.length > 0 && Date.now() < drainDeadline) {
    await Bun.sleep(1_000);
    missing = await missingEventIds(sql, missing);
  }
  // Then until the group has committed everything (committed lag read from the broker by the
  // supervisor): a replay still to come would otherwise escape the counts check.
  const lagDeadline = Date.now() + 60_000;
  let drained = false;
  while (!drained && Date.now() < lagDeadline) {
    const s = (await scrapeIfUp(`http://127.0.0.1:${supervisorMetricsPort}/metrics`)) ?? [];
    drained = s.some((x) => x.name === "consumer_group_lag") && sum(s, "consumer_group_lag") === 0;
    if (!drained) await Bun.sleep(500);
  }
  await Bun.sleep(200); // the observer's next turn sees the last rows
  await observer.stop();
  const check = await storedOnce(sql, ackedAll);
  // The latency percentiles are over the observed events only: every stored event of the sampled
  // QR codes must have been observed, or the percentiles leave out the slowest (the observer only
  // looks 30 s back, so an event that took longer is never seen).
  const [sampled] = await sql<{ n: number }[]>`
    select count(*)::int as n from scan_events where qr_id = any(${SAMPLE_QR_IDS})`;
  const sampleStored = sampled?.n ?? 0;
  clearInterval(sampler);
  await Promise.all([server.stop(), workers.stop()]);
  await sql.end();
  await isolated.dispose();
  checkout?.remove();
  await resetPostgres();

  // Per-step summary.
  const rows = stepResults.map((s) => {
    const window = e2e
      .filter((e) => e.at >= s.startedAt && e.at <= s.endedAt + 2_000)
      .map((e) => e.ms)
      .sort((a, b) => a - b);
    const inStep = samples.filter((x) => x.t * 1000 + started > s.startedAt && x.t * 1000 + started <= s.endedAt);
    const avg = (f: (x: Sample) => number) =>
      inStep.length ? inStep.reduce((a, x) => a + f(x), 0) / inStep.length : 0;
    // µs of CPU per accepted event: (share of a core) × 1e6 µs / events per second.
    const perEvent = (cpuPct: number) =>
      s.load.events_per_s > 0 ? Math.round(((cpuPct / 100) * 1e6) / s.load.events_per_s) : 0;
    const row: Record<string, string | number> = {
      variant: variant.name,
      "offered ev/s": s.offered_events_s,
      "achieved ev/s": s.load.events_per_s,
      "HTTP p50": s.load.latency_ms.p50,
      "HTTP p95": s.load.latency_ms.p95,
      "HTTP p99": s.load.latency_ms.p99,
      "HTTP max": s.load.latency_ms.max,
      errors:
        Object.entries(s.load.statuses)
          .filter(([k]) => k !== "202")
          .map(([k, v]) => `${k}:${v}`)
          .join(" ") || "0",
      "e2e p50": pct(window, 50),
      "e2e p95": pct(window, 95),
      "e2e p99": pct(window, 99),
      "max lag": Math.max(0, ...inStep.map((x) => x.lag)),
    };
    let total = 0;
    for (const p of PROCS) {
      const cpu = avg((x) => x.procs[p]?.cpu_pct ?? 0);
      row[`${p} cpu%`] = Math.round(cpu);
      row[`${p} µs/ev`] = perEvent(cpu);
      row[`${p} MiB`] = Math.round(avg((x) => x.procs[p]?.rss_mib ?? 0));
      total += cpu;
    }
    row["pipeline µs/ev"] = perEvent(total);
    // WAL per accepted event: what the write path costs Postgres' log (and its backups and replicas).
    const events = s.load.events_per_s * s.load.duration_s;
    row["WAL B/ev"] = events > 0 ? Math.round(s.wal.bytes / events) : 0;
    row["FPI/kev"] = events > 0 ? Math.round((s.wal.fpi / events) * 1000) : 0;
    row["loadgen cpu%"] = Math.round(s.loadgenCpuPct);
    // The generator's own figure (its CPU over the run per event it sent, from its summary).
    row["loadgen µs/ev"] = s.load.generator.us_per_event;
    return row;
  });
  const success = stepResults.flatMap((s) =>
    PHASES.map((ph) => ({
      variant: variant.name,
      step: `${s.offered_events_s} ev/s`,
      phase: ph.name,
      "p95 ms": s.load.latency_ms.p95,
      "p95 target": `< ${ph.p95Ms}`,
      p95: s.load.latency_ms.p95 < ph.p95Ms ? "PASS" : "FAIL",
      "error rate": s.load.error_rate,
      errors: s.load.error_rate < ph.errorRate ? "PASS" : "FAIL",
    })),
  );
  // The guarantees, over the whole run (the database cannot attribute a double count to a step).
  const guarantees = [
    {
      variant: variant.name,
      check: "lost: acknowledged (202) but not stored",
      figure: `${missing.length} of ${ackedAll.length}`,
      result: missing.length === 0 ? "PASS" : "FAIL",
    },
    {
      variant: variant.name,
      check: "stored and counted once: rows = sum(scan_counts) = acknowledged + unacknowledged stored, 0 buckets off",
      figure:
        `rows ${check.rows}, sum(scan_counts) ${check.counted}, acknowledged ${check.acknowledged} + ` +
        `unacknowledged stored ${check.unacknowledgedStored}, buckets off ${check.countMismatches}` +
        `${drained ? "" : " (group not drained after 60 s)"}`,
      result: check.failures.length === 0 && drained ? "PASS" : "FAIL",
    },
    {
      variant: variant.name,
      check: "latency sample complete: sampled QR codes' events observed vs stored",
      figure: `${seen.size} of ${sampleStored}`,
      result: seen.size >= sampleStored && sampleStored > 0 ? "PASS" : "FAIL",
    },
  ];
  for (const f of check.failures) console.log(`  [${variant.name}] ${f}`);
  return { variant, started, samples, e2e, stepResults, rows, success, guarantees, lastHeld, check, missing, ackedAll };
}

const results = [];
for (const v of variants) results.push(await runVariant(v));

const allRows = results.flatMap((r) => r.rows);
const guarantees = results.flatMap((r) => r.guarantees);
const guaranteesHold = guarantees.every((g) => g.result === "PASS");
const latencyCols = (r: Record<string, string | number>) =>
  Object.fromEntries(
    Object.entries(r).filter(
      ([k]) => !k.includes("cpu%") && !k.includes("MiB") && !k.includes("/ev") && !k.includes("/kev"),
    ),
  );
const cpuCols = (r: Record<string, string | number>) =>
  Object.fromEntries(
    Object.entries(r).filter(
      ([k]) =>
        k === "variant" ||
        k === "offered ev/s" ||
        k === "achieved ev/s" ||
        k.includes("µs/ev") ||
        k.includes("cpu%") ||
        k.startsWith("WAL") ||
        k.startsWith("FPI"),
    ),
  );
const memCols = (r: Record<string, string | number>) =>
  Object.fromEntries(Object.entries(r).filter(([k]) => k === "variant" || k === "offered ev/s" || k.includes("MiB")));
console.log("\nPer step: latency (ms), errors, lag");
printTable(allRows.map(latencyCols));
console.log(
  "\nPer step: CPU per accepted event (µs of CPU per event; loadgen = the load generator, not counted), " +
    "Postgres WAL bytes per event and full-page images per 1,000 events",
);
printTable(allRows.map(cpuCols));
console.log("\nPer step: memory (RSS, MiB)");
printTable(allRows.map(memCols));
console.log("\nSuccess metrics per step and phase:");
printTable(results.flatMap((r) => r.success));
console.log("\nGuarantees (whole run, per variant):");
printTable(guarantees);
if (results.length > 1) {
  // The lever table: each variant at each offered rate, against the first variant.
  const base = results[0] as (typeof results)[number];
  const levers = results.flatMap((r) =>
    r.rows.map((row): Record<string, string | number> => {
      const b = base.rows.find((x) => x["offered ev/s"] === row["offered ev/s"]);
      const ratio =
        b && Number(b["pipeline µs/ev"]) > 0 ? Number(row["pipeline µs/ev"]) / Number(b["pipeline µs/ev"]) : Number.NaN;
      return {
        variant: r.variant.name,
        lever: r.variant.lever,
        "offered ev/s": row["offered ev/s"] ?? "-",
        "HTTP p95": row["HTTP p95"] ?? "-",
        "e2e p95": row["e2e p95"] ?? "-",
        "pipeline µs/ev": row["pipeline µs/ev"] ?? "-",
        [`vs ${base.variant.name}`]: Number.isNaN(ratio) ? "-" : ratio.toFixed(2),
        "last held": r.lastHeld ?? "none",
      };
    }),
  );
  console.log(`\nLevers (one run; CPU per event against "${base.variant.name}"):`);
  printTable(levers);
}
for (const r of results) {
  console.log(
    `[${r.variant.name}] acknowledged ${r.ackedAll.length}, lost ${r.missing.length}, counted ${r.check.counted} for ` +
      `${r.check.acknowledged - r.check.missing + r.check.unacknowledgedStored} stored events; ` +
      `last offered rate that held the SLO: ${r.lastHeld ?? "none"} events/s`,
  );
}
console.log(`guarantees ${guaranteesHold ? "PASS" : "FAIL"}`);

const json = saveResults("e2e", {
  steps,
  stepSeconds,
  batch,
  workerCount,
  slo: SLO,
  guarantees,
  variants: results.map((r) => ({
    variant: r.variant,
    lastHeld: r.lastHeld,
    acknowledged: r.ackedAll.length,
    lost: r.missing.length,
    check: r.check,
    rows: r.rows,
    success: r.success,
    samples: r.samples,
    stepsDetail: r.stepResults.map(({ acked, ...s }) => s),
  })),
});

// The report: per variant, latency over time, throughput, lag, CPU.
const sections = results.flatMap((r) => {
  const t0 = r.started;
  const markers = r.stepResults.map((s) => ({ x: (s.startedAt - t0) / 1000, label: `${s.offered_events_s}/s` }));
  const axis = { markers, xMax: Math.max(1, ...r.samples.map((x) => x.t)) };
  const httpSeries = ["p50", "p95", "p99"].map((k) => ({
    name: `HTTP ${k}`,
    points: r.stepResults.flatMap((s) =>
      s.load.timeline.map((b) => [(s.startedAt - t0) / 1000 + b.t, b[k as "p50"]] as [number, number]),
    ),
  }));
  const e2eBySecond = new Map<number, number[]>();
  for (const e of r.e2e) {
    const sec = Math.floor((e.at - t0) / 1000);
    e2eBySecond.set(sec, [...(e2eBySecond.get(sec) ?? []), e.ms]);
  }
  const e2eSeries = [50, 95].map((p) => ({
    name: `e2e p${p}`,
    points: [...e2eBySecond.entries()].map(
      ([sec, v]) =>
        [
          sec,
          pct(
            v.sort((a, b) => a - b),
            p,
          ),
        ] as [number, number],
    ),
  }));
  return [
    `<h2>${r.variant.name}${r.variant.lever ? `: ${r.variant.lever}` : ""}</h2>` +
      `<p><b>Last offered rate that held: ${r.lastHeld ?? "none"} events/s.</b> Acknowledged ${r.ackedAll.length}, lost ${r.missing.length}; ` +
      `sum(scan_counts) ${r.check.counted}, ${r.check.countMismatches} buckets off.</p>`,
    lineChart("Latency percentiles over time (log scale)", "ms", [...httpSeries, ...e2eSeries], { ...axis, log: true }),
    lineChart(
      "Throughput",
      "events/s",
      [
        {
          name: "accepted",
          points: r.stepResults.flatMap((s) =>
            s.load.timeline.map(
              (b) => [(s.startedAt - t0) / 1000 + b.t, (b.requests - b.errors) * batch] as [number, number],
            ),
          ),
        },
        { name: "rows stored", points: r.samples.map((x) => [x.t, x.rows] as [number, number]) },
      ],
      axis,
    ),
    lineChart(
      "Consumer lag",
      "messages",
      [{ name: "lag", points: r.samples.map((x) => [x.t, x.lag] as [number, number]) }],
      axis,
    ),
    lineChart(
      "CPU by process (% of one core)",
      "%",
      [...PROCS, "loadgen"].map((p) => ({
        name: p,
        points: r.samples.map((x) => [x.t, x.procs[p]?.cpu_pct ?? 0] as [number, number]),
      })),
      axis,
    ),
  ];
});
const html = page(`End-to-end capacity run, ${new Date().toISOString()}`, [
  `<p>Open-loop load in steps of ${stepSeconds} s (batches of ${batch} events), ${workerCount} workers, one machine. ` +
    `SLO per step: HTTP p95 &lt; ${SLO.httpP95Ms} ms, errors &lt; 1%, end-to-end p95 &lt; ${SLO.e2eP95Ms} ms. ` +
    `<b>Guarantees: ${guaranteesHold ? "PASS" : "FAIL"}.</b></p>`,
  `<h2>Per step: latency (ms) and errors</h2>${table(allRows.map(latencyCols))}`,
  `<h2>Per step: CPU per accepted event (µs) and CPU (% of one core)</h2>${table(allRows.map(cpuCols))}`,
  `<h2>Guarantees</h2>${table(guarantees)}`,
  ...sections,
]);
const htmlFile = json.replace(/\.json$/, ".html");
writeFileSync(htmlFile, html);
console.log(`results: ${json}\nreport:  ${htmlFile}`);
process.exit(guaranteesHold ? 0 : 1);
