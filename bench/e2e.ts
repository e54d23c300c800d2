// End-to-end capacity bench: open-loop load at fixed offered rates, stepped up until the SLO breaks.
// Per step: offered vs achieved, HTTP p50/p95/p99/max and errors by status, end-to-end latency
// (accept → row visible in Postgres), consumer lag, CPU and RSS of every process. At the end, the
// guarantees as PASS/FAIL rows: no acknowledged event lost; every event stored and counted once
// (sql/checks.ts storedOnce); the latency sample complete (every stored event of the sampled QR
// codes observed). Exits 1 when one fails. Saves JSON and a self-contained HTML report.
//   bun bench/e2e.ts [--steps 1000,2000,4000,8000,16000] [--step-seconds 10] [--batch 10] [--workers 2]
// SLO for a step to hold: HTTP p95 < 400 ms, error rate < 1%, end-to-end p95 < 400 ms.
import { writeFileSync } from "node:fs";
import postgres from "postgres";
import { scrapeIfUp } from "../scripts/harness.ts";
import { childPids, isolatedRun, service } from "../scripts/pipeline.ts";
import { up } from "../scripts/stack.ts";
import { kafkaPid } from "../scripts/stack/kafka.ts";
import { pgbouncerPid, postgresPid } from "../scripts/stack/postgres.ts";
import { freePort } from "../scripts/stack/processes.ts";
import { localStack } from "../shared/local-stack.ts";
import { sum } from "../shared/prometheus-text.ts";
import { missingEventIds, storedOnce } from "../sql/checks.ts";
import { arg, numArg, printTable, saveResults } from "./lib.ts";
import type { LoadResult } from "./load.ts";
import { cpuSampler } from "./proc-stats.ts";
import { lineChart, page, table } from "./report.ts";

const steps = arg("steps", "1000,2000,4000,8000,16000").split(",").map(Number);
const stepSeconds = numArg("step-seconds", 10);
const batch = numArg("batch", 10);
const workerCount = numArg("workers", 2);
const SLO = { httpP95Ms: 400, errorRate: 0.01, e2eP95Ms: 400 };
/** The roadmap's bar and our own aim (an order of magnitude under it), checked per step. */
const PHASES = [
  { name: "roadmap bar", p95Ms: 400, errorRate: 0.01 },
  { name: "our aim", p95Ms: 40, errorRate: 0.001 },
];

const stack = localStack();
const root = new URL("..", import.meta.url).pathname;
const pct = (sorted: number[], p: number) =>
  sorted.length
    ? (sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number)
    : Number.NaN;

await up();
const isolated = await isolatedRun("e2e");
const { directUrl, run } = isolated;
const port = freePort();
const serverMetricsPort = freePort();
const workerMetricsBase = 20_000 + Math.floor(Math.random() * 20_000);
const supervisorMetricsPort = freePort();
const server = service(
  "server",
  "server/main.ts",
  { ...isolated.env, PORT: String(port), METRICS_PORT: String(serverMetricsPort), AUTH_DISABLED: "true" },
  `http://127.0.0.1:${port}/ready`,
);
const workers = service("workers", "worker/supervisor.ts", {
  ...isolated.env,
  WORKER_POOL_SIZE: String(workerCount),
  METRICS_PORT: String(workerMetricsBase),
  SUPERVISOR_METRICS_PORT: String(supervisorMetricsPort),
  LAG_INTERVAL_MS: "1000",
});
await Promise.all([server.start(), workers.start()]);
await Bun.sleep(3_000); // workers joined the group

const sql = postgres(directUrl, { max: 2, onnotice: () => {} });
const started = Date.now();
const samples: {
  t: number;
  lag: number;
  rows: number;
  procs: Record<string, { cpu_pct: number; rss_mib: number }>;
}[] = [];
const sampleCpu = cpuSampler(() => {
  const pg = postgresPid(stack);
  const workerPids = childPids(workers.pid as number);
  return {
    server: server.pid ? [server.pid] : [],
    workers: workerPids,
    kafka: [kafkaPid(stack) ?? 0].filter(Boolean),
    postgres: pg ? [pg, ...childPids(pg)] : [],
    pgbouncer: [pgbouncerPid(stack) ?? 0].filter(Boolean),
  };
});
let rowsBefore = 0;
const sampler = setInterval(async () => {
  // A worker that does not answer (restarting) counts as nothing this second.
  const w = (
    await Promise.all(
      Array.from({ length: workerCount }, (_, i) => scrapeIfUp(`http://127.0.0.1:${workerMetricsBase + i}/metrics`)),
    )
  ).flatMap((samples) => samples ?? []);
  const rows = sum(w, "worker_rows_inserted_total");
  samples.push({
    t: (Date.now() - started) / 1000,
    lag: sum(w, "worker_consumer_lag"),
    rows: rows - rowsBefore,
    procs: sampleCpu(),
  });
  rowsBefore = rows;
}, 1_000);

// The observer: rows become "visible" when first seen (polled every 20 ms); e2e = seen − received_at.
// It watches a fixed 1% sample of QR codes through the (qr_id, scanned_at) index: scanning all
// recent rows 50 times a second would load the very database whose latency it measures.
const sampleQrIds = Array.from({ length: 50 }, (_, i) => `QR-${i * 100}`);
const e2e: { at: number; ms: number }[] = [];
const seen = new Set<string>();
let observing = true;
const observer = (async () => {
  while (observing) {
    const rows = await sql<{ event_id: string; received_at: Date }[]>`
      select event_id::text, received_at from scan_events
      where qr_id = any(${sampleQrIds}) and scanned_at > now() - interval '30 seconds'`;
    const now = Date.now();
    for (const r of rows) {
      if (seen.has(r.event_id)) continue;
      seen.add(r.event_id);
      e2e.push({ at: now, ms: now - r.received_at.getTime() });
    }
    await Bun.sleep(20);
  }
})();

interface StepResult {
  offered_events_s: number;
  load: LoadResult;
  startedAt: number;
  endedAt: number;
  acked: string[];
}
const stepResults: StepResult[] = [];
let lastHeld: number | null = null;
for (const rate of steps) {
  const out = `/tmp/${run}-${rate}.json`;
  const ackedFile = `/tmp/${run}-${rate}.ids`;
  const startedAt = Date.now();
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
  await proc.exited;
  const endedAt = Date.now();
  const load = (await Bun.file(out).json()) as LoadResult;
  const acked = (await Bun.file(ackedFile).text()).split("\n").filter(Boolean);
  stepResults.push({ offered_events_s: rate, load, startedAt, endedAt, acked });
  // Give the sink a moment to show whether it keeps up at this rate.
  await Bun.sleep(2_000);
  const window = e2e
    .filter((e) => e.at >= startedAt && e.at <= Date.now())
    .map((e) => e.ms)
    .sort((a, b) => a - b);
  const held = load.latency_ms.p95 < SLO.httpP95Ms && load.error_rate < SLO.errorRate && pct(window, 95) < SLO.e2eP95Ms;
  console.log(
    `step ${rate} ev/s: achieved ${load.events_per_s} ev/s, HTTP p95 ${load.latency_ms.p95} ms, errors ${load.error_rate}, ` +
      `e2e p95 ${pct(window, 95)} ms -> ${held ? "held" : "SLO broken"}`,
  );
  if (!held) break;
  lastHeld = rate;
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
observing = false;
await observer;
const check = await storedOnce(sql, ackedAll);
// The latency percentiles are over the observed events only: every stored event of the sampled
// QR codes must have been observed, or the percentiles leave out the slowest (the observer only
// looks 30 s back, so an event that took longer is never seen).
const [sampled] = await sql<{ n: number }[]>`
  select count(*)::int as n from scan_events where qr_id = any(${sampleQrIds})`;
const sampleStored = sampled?.n ?? 0;
clearInterval(sampler);
await Promise.all([server.stop(), workers.stop()]);
await sql.end();
await isolated.dispose();

// Per-step summary.
const procNames = ["server", "workers", "kafka", "postgres", "pgbouncer"];
const rows = stepResults.map((s) => {
  const window = e2e
    .filter((e) => e.at >= s.startedAt && e.at <= s.endedAt + 2_000)
    .map((e) => e.ms)
    .sort((a, b) => a - b);
  const inStep = samples.filter((x) => x.t * 1000 + started >= s.startedAt && x.t * 1000 + started <= s.endedAt);
  const avg = (f: (x: (typeof samples)[number]) => number) =>
    inStep.length ? Math.round(inStep.reduce((a, x) => a + f(x), 0) / inStep.length) : 0;
  const row: Record<string, string | number> = {
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
  for (const p of procNames) {
    row[`${p} cpu%`] = avg((x) => x.procs[p]?.cpu_pct ?? 0);
    row[`${p} MiB`] = avg((x) => x.procs[p]?.rss_mib ?? 0);
  }
  return row;
});
const success = stepResults.flatMap((s) =>
  PHASES.map((ph) => ({
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
    check: "lost: acknowledged (202) but not stored",
    figure: `${missing.length} of ${ackedAll.length}`,
    result: missing.length === 0 ? "PASS" : "FAIL",
  },
  {
    check: "stored and counted once: rows = sum(scan_counts) = acknowledged + unacknowledged stored, 0 buckets off",
    figure:
      `rows ${check.rows}, sum(scan_counts) ${check.counted}, acknowledged ${check.acknowledged} + ` +
      `unacknowledged stored ${check.unacknowledgedStored}, buckets off ${check.countMismatches}` +
      `${drained ? "" : " (group not drained after 60 s)"}`,
    result: check.failures.length === 0 && drained ? "PASS" : "FAIL",
  },
  {
    check: "latency sample complete: sampled QR codes' events observed vs stored",
    figure: `${seen.size} of ${sampleStored}`,
    result: seen.size >= sampleStored && sampleStored > 0 ? "PASS" : "FAIL",
  },
];
const guaranteesHold = guarantees.every((g) => g.result === "PASS");
console.log("\nPer step (latencies in ms):");
printTable(rows);
console.log("\nSuccess metrics per step and phase:");
printTable(success);
console.log("\nGuarantees (whole run):");
printTable(guarantees);
for (const f of check.failures) console.log(`  ${f}`);
console.log(
  `\nacknowledged ${ackedAll.length}, lost ${missing.length}, counted ${check.counted} for ` +
    `${check.acknowledged - check.missing + check.unacknowledgedStored} stored events; ` +
    `last offered rate that held the SLO: ${lastHeld ?? "none"} events/s; guarantees ${guaranteesHold ? "PASS" : "FAIL"}`,
);

const result = {
  steps,
  stepSeconds,
  batch,
  workerCount,
  slo: SLO,
  lastHeld,
  acknowledged: ackedAll.length,
  lost: missing.length,
  check,
  latencySample: { observed: seen.size, stored: sampleStored },
  guarantees,
  rows,
  success,
  samples,
  stepsDetail: stepResults.map(({ acked, ...s }) => s),
};
const json = saveResults("e2e", result);

// The report: latency over time, throughput, lag, CPU.
const t0 = started;
const markers = stepResults.map((s) => ({ x: (s.startedAt - t0) / 1000, label: `${s.offered_events_s}/s` }));
const axis = { markers, xMax: Math.max(1, ...samples.map((x) => x.t)) };
const pick = (r: Record<string, string | number>, keep: (k: string) => boolean) =>
  Object.fromEntries(Object.entries(r).filter(([k]) => keep(k)));
const httpSeries = ["p50", "p95", "p99"].map((k) => ({
  name: `HTTP ${k}`,
  points: stepResults.flatMap((s) =>
    s.load.timeline.map((b) => [(s.startedAt - t0) / 1000 + b.t, b[k as "p50"]] as [number, number]),
  ),
}));
const e2eBySecond = new Map<number, number[]>();
for (const e of e2e) {
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
const html = page(`End-to-end capacity run, ${new Date().toISOString()}`, [
  `<p>Open-loop load in steps of ${stepSeconds} s (batches of ${batch} events), ${workerCount} workers, one machine. ` +
    `SLO per step: HTTP p95 &lt; ${SLO.httpP95Ms} ms, errors &lt; 1%, end-to-end p95 &lt; ${SLO.e2eP95Ms} ms. ` +
    `<b>Last offered rate that held: ${lastHeld ?? "none"} events/s.</b> Acknowledged ${ackedAll.length}, lost ${missing.length}; ` +
    `sum(scan_counts) ${check.counted} for ${check.acknowledged - check.missing + check.unacknowledgedStored} stored events, ` +
    `${check.countMismatches} buckets off. <b>Guarantees: ${guaranteesHold ? "PASS" : "FAIL"}.</b></p>`,
  lineChart("Latency percentiles over time (log scale)", "ms", [...httpSeries, ...e2eSeries], { ...axis, log: true }),
  lineChart(
    "Throughput",
    "events/s",
    [
      {
        name: "accepted",
        points: stepResults.flatMap((s) =>
          s.load.timeline.map(
            (b) => [(s.startedAt - t0) / 1000 + b.t, (b.requests - b.errors) * batch] as [number, number],
          ),
        ),
      },
      { name: "rows stored", points: samples.map((x) => [x.t, x.rows] as [number, number]) },
    ],
    axis,
  ),
  lineChart(
    "Consumer lag",
    "messages",
    [{ name: "lag", points: samples.map((x) => [x.t, x.lag] as [number, number]) }],
    axis,
  ),
  lineChart(
    "CPU by process (% of one core)",
    "%",
    procNames.map((p) => ({
      name: p,
      points: samples.map((x) => [x.t, x.procs[p]?.cpu_pct ?? 0] as [number, number]),
    })),
    axis,
  ),
  `<h2>Per step: latency (ms) and errors</h2>${table(rows.map((r) => pick(r, (k) => !k.includes("cpu%") && !k.includes("MiB"))))}`,
  `<h2>Per step: CPU (% of one core) and memory</h2>${table(rows.map((r) => pick(r, (k) => k === "offered ev/s" || k.includes("cpu%") || k.includes("MiB"))))}`,
  `<h2>Guarantees (whole run)</h2>${table(guarantees)}`,
  `<h2>Success metrics per step and phase</h2>${table(success)}`,
]);
const htmlFile = json.replace(/\.json$/, ".html");
writeFileSync(htmlFile, html);
console.log(`results: ${json}\nreport:  ${htmlFile}`);
process.exit(guaranteesHold ? 0 : 1);
