// End-to-end capacity bench across simulated hosts: bench/e2e.ts's open-loop steps, run on the
// whole pipeline with each component in a network namespace of its own (bench/hosts/netns.ts) and
// a delay between zones, with zero delay and with the zoned delay, on the SAME topology and
// processes, in one run: at each offered rate one step of each, back to back (runInterleaved). Side by side per offered rate: HTTP p50/p95, end-to-end p50/p95
// (accept → row visible on the primary), CPU µs per accepted event per process, errors; before each
// variant the measured TCP round trips between zones (so the table shows the delay landed). Then
// the guarantees as PASS/FAIL (no 202 lost; stored and counted once, sql/checks.ts storedOnce) and
// exit 1 when one fails. Saves JSON under bench/results/.
//
// Topology (10.233.33.0/24): zone A = load generator, edge, workers, kafka-1; zone B = kafka-2,
// Postgres primary + pgbouncer beside it; zone C = kafka-3, the synchronous standby. Kafka is the
// project's 3-node KRaft cluster (tools/stack/kafka.ts, rf=3, min.insync.replicas=2): every 202
// waits for a follower in another zone whichever broker leads. The primary's commits wait for the
// standby a zone away (synchronous_commit=on), as in the HA cluster. The bench's own control
// process (the observer polling the primary, metrics scrapes) sits in an undelayed namespace.
// Round trips default to 0.5 ms within a zone and 2 ms across. Needs root (namespaces); on a kernel
// without sch_netem the delays come from bench/hosts/delay-switch.c (its CPU is reported as "switch").
//
//   sudo bun bench/e2e-hosts.ts [--steps 1000,2000,4000] [--step-seconds 10] [--batch 10]
//                               [--workers 2] [--intra-rtt-ms 0.5] [--cross-rtt-ms 2] [--warmup-seconds 5]
//                               [--engine auto|netem|tap] [--workers-zone A|B]
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KafkaAdmin } from "bun-rdkafka";
import postgres from "postgres";
import { localStack, topicReplication } from "../shared/local-stack.ts";
import { sum } from "../shared/prometheus-text.ts";
import { missingEventIds, storedOnce } from "../sql/checks.ts";
import { createThrowawayDatabase, scrapeIfUp, spawnProcess, spawnUntilReady, stopProcess } from "../tools/harness.ts";
import { childPids } from "../tools/pipeline.ts";
import { kafkaNodePid, startKafka, stopKafka } from "../tools/stack/kafka.ts";
import {
  type Built,
  type Delay,
  type DelayEngine,
  type Topology,
  ZERO_DELAY,
  createTopology,
  destroyTopology,
  inNs,
  planTopology,
  requireRoot,
  setDelay,
  switchDrops,
} from "./hosts/netns.ts";
import { startPostgresPair } from "./hosts/postgres-pair.ts";
import { measureRtt } from "./hosts/rtt.ts";
import { arg, numArg, printTable, saveResults } from "./lib.ts";
import type { LoadResult } from "./load.ts";
import { startE2eObserver } from "./observer.ts";
import { cpuSampler } from "./proc-stats.ts";

const PREFIX = "qzm-";
const SUBNET = "10.233.33";
/** The two Postgres clusters' files (fresh each run, deleted at teardown): the `postgres` user reaches /var/tmp. */
const PG_DIR = `/var/tmp/${PREFIX}pg`;
const root = new URL("..", import.meta.url).pathname;
const SELF = new URL(import.meta.url).pathname;

const steps = arg("steps", "1000,2000,4000").split(",").map(Number);
const stepSeconds = numArg("step-seconds", 10);
const batch = numArg("batch", 10);
/** Per variant, before its steps: load at the first rate, not reported. */
const warmupSeconds = numArg("warmup-seconds", 5);
const workerCount = numArg("workers", 2);
const zoned: Delay = { intraRttMs: numArg("intra-rtt-ms", 0.5), crossRttMs: numArg("cross-rtt-ms", 2) };
const engine = arg("engine", "auto") as DelayEngine | "auto";
/** The workers' zone: A (beside the edge and kafka-1, the default) or B (beside the primary). */
const workersZone = arg("workers-zone", "A");

/** The simulated hosts, in address order (.10 upwards); ctl is the bench itself, undelayed. */
function plan(): Topology {
  return planTopology(PREFIX, SUBNET, [
    { name: "ctl", zone: null },
    { name: "lg", zone: "A" },
    { name: "edge", zone: "A" },
    { name: "wrk", zone: workersZone },
    { name: "k1", zone: "A" },
    { name: "k2", zone: "B" },
    { name: "pg1", zone: "B" },
    { name: "k3", zone: "C" },
    { name: "pg2", zone: "C" },
  ]);
}
/** One pair of hosts per zone pair for the round-trip matrix. */
const RTT_PAIRS: [string, string, string][] = [
  ["A-A", "lg", "edge"],
  ["A-B", "edge", "k2"],
  ["A-C", "edge", "k3"],
  ["B-B", "k2", "pg1"],
  ["B-C", "pg1", "pg2"],
  ["C-C", "k3", "pg2"],
];

// Ports inside the namespaces (each has its own; these stay in this bench's 33xxx range anyway).
const PORTS = {
  edge: 33_080,
  edgeMetrics: 33_081,
  supervisor: 33_099,
  workerBase: 33_100,
  pg: 33_432,
  pgbouncer: 33_433,
  rtt: 33_300,
};

const pct = (sorted: number[], p: number) =>
  sorted.length
    ? (sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number)
    : Number.NaN;

// ---------------------------------------------------------------------------------------------
// Outside: build the namespaces, run the bench inside the control namespace, always tear down.

async function outside(): Promise<number> {
  try {
    requireRoot("bench/e2e-hosts.ts");
  } catch (error) {
    console.error((error as Error).message);
    return 2;
  }
  const t = plan();
  // One teardown, awaited by whoever asks (the signal handler and the finally below).
  let tearingDown: Promise<void> | null = null;
  const teardown = () => {
    tearingDown ??= (async () => {
      const gone = await destroyTopology(PREFIX);
      rmSync(`/tmp/${PREFIX}topology.json`, { force: true });
      rmSync(PG_DIR, { recursive: true, force: true });
      console.log(
        `teardown: deleted ${gone.length} namespaces (${gone.join(" ")}); processes still in them killed by pid`,
      );
    })();
    return tearingDown;
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, async () => {
      console.error(`${sig}: tearing down`);
      await teardown();
      process.exit(130);
    });
  }
  try {
    const built = await createTopology(t, engine);
    console.log(`topology: ${Object.keys(t.hosts).length} namespaces on ${SUBNET}.0/24, delay engine ${built.engine}`);
    const file = `/tmp/${PREFIX}topology.json`;
    writeFileSync(file, JSON.stringify({ t, built }));
    const inner = Bun.spawn([...inNs(t.hosts.ctl?.ns ?? ""), "bun", SELF, "--inside", file, ...process.argv.slice(2)], {
      cwd: root,
      stdio: ["inherit", "inherit", "inherit"],
    });
    return await inner.exited;
  } finally {
    await teardown();
  }
}

// ---------------------------------------------------------------------------------------------
// Inside (the control namespace): the stack on the hosts, then the variants.

interface StepResult {
  variant: string;
  /** Median TCP round trips lg→edge (A-A) and edge→kafka-2 (A-B) measured during the step, ms. */
  rttUnderLoad: { aa: number; ab: number } | null;
  rate: number;
  load: LoadResult;
  startedAt: number;
  endedAt: number;
  acked: string[];
}
type Procs = Record<string, { cpu_pct: number; rss_mib: number }>;
const PROCS = ["server", "workers", "kafka", "postgres", "standby", "pgbouncer", "switch"] as const;

async function inside(file: string): Promise<number> {
  const { t, built } = JSON.parse(readFileSync(file, "utf8")) as { t: Topology; built: Built };
  const h = (name: string) => {
    const host = t.hosts[name];
    if (!host) throw new Error(`no host ${name}`);
    return host;
  };
  // The stack's names and ports, in a directory of its own, with every address a host's.
  const mainDir = process.env.STACK_DIR ?? join(root, ".stack");
  const dir = join(mainDir, "hosts");
  rmSync(dir, { recursive: true, force: true });
  for (const [from, to] of [
    ["kafka/libs", "kafka/libs"],
    ["monitoring/jmx-exporter", "monitoring/jmx-exporter"],
  ] as const) {
    // The jars the stack already fetched (else startKafka fetches them with Maven).
    if (existsSync(join(mainDir, from))) {
      mkdirSync(join(dir, to, ".."), { recursive: true });
      symlinkSync(join(mainDir, from), join(dir, to));
    }
  }
  const base = localStack({
    ...process.env,
    STACK_DIR: dir,
    KAFKA_NODES: "3",
    STACK_PG_PORT: String(PORTS.pg),
    STACK_PGBOUNCER_PORT: String(PORTS.pgbouncer),
  });
  const pgHost = (url: string) => url.replace("127.0.0.1", h("pg1").addr);
  const stack = {
    ...base,
    brokers: base.kafkaNodes.map((n) => `${h(`k${n.id}`).addr}:${n.port}`).join(","),
    databaseUrl: pgHost(base.databaseUrl),
    directDatabaseUrl: pgHost(base.directDatabaseUrl),
    adminDatabaseUrl: pgHost(base.adminDatabaseUrl),
    edgeDatabaseUrl: pgHost(base.edgeDatabaseUrl),
    workerDatabaseUrl: pgHost(base.workerDatabaseUrl),
    keysDatabaseUrl: pgHost(base.keysDatabaseUrl),
  };
  const stops: (() => Promise<unknown>)[] = [];
  const stopAll = async () => {
    while (stops.length)
      await stops
        .pop()?.()
        .catch((e) => console.error(`stop: ${(e as Error).message}`));
  };
  process.on("SIGINT", () => {}); // the outside tears down; finish what runs
  try {
    const t0 = Date.now();
    stops.push(() => stopKafka(stack));
    await startKafka(stack, { host: (n) => h(`k${n.id}`).addr, commandPrefix: (n) => inNs(h(`k${n.id}`).ns) });
    const pg = await startPostgresPair({
      dir: PG_DIR,
      primary: h("pg1"),
      standby: h("pg2"),
      subnet: SUBNET,
      port: PORTS.pg,
      pgbouncerPort: PORTS.pgbouncer,
      stack,
    });
    stops.push(() => pg.stop());
    console.log(
      `stack on the hosts up in ${Math.round((Date.now() - t0) / 1000)} s: 3 brokers, primary + synchronous standby, pgbouncer`,
    );

    const variants: { name: string; delay: Delay }[] = [
      { name: "zero delay", delay: ZERO_DELAY },
      { name: `zoned ${zoned.intraRttMs}/${zoned.crossRttMs} ms`, delay: zoned },
    ];
    const rtts: { variant: string; rtt: Record<string, number> }[] = [];
    for (const v of variants) {
      await setDelay(t, built, v.delay);
      const rtt: Record<string, number> = {};
      for (const [pair, a, b] of RTT_PAIRS) rtt[pair] = (await measureRtt(t, a, b, PORTS.rtt, 30)).median_ms;
      console.log(
        `[${v.name}] TCP round trips (median ms): ${Object.entries(rtt)
          .map(([k, x]) => `${k} ${x}`)
          .join(", ")}`,
      );
      rtts.push({ variant: v.name, rtt });
    }
    const dropsBefore = await switchDrops(t, built);
    const result = await runInterleaved(variants, t, built, stack, pg);
    const dropsAfter = await switchDrops(t, built);
    // Over the steps only: at start, frames flooded to TAP devices not yet up are refused.
    const drops =
      dropsBefore && dropsAfter
        ? {
            dropped: dropsAfter.dropped - dropsBefore.dropped,
            writeFailed: dropsAfter.writeFailed - dropsBefore.writeFailed,
          }
        : null;
    if (drops !== null) {
      console.log(
        `delay switch, over the steps: ${drops.dropped} frames lost to a full delay queue, ${drops.writeFailed} refused by a full TAP device`,
      );
    }

    // Side by side per rate.
    const side = result.rows;
    console.log("\nTCP round trips between zones (median ms, measured before each variant):");
    printTable(rtts.map((r) => ({ variant: r.variant, ...r.rtt })));
    console.log(
      "\nPer offered rate, side by side: latency (ms), errors; RTT = TCP round trips measured during the step",
    );
    printTable(side.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !k.includes("µs/ev")))));
    console.log(
      "\nPer offered rate: CPU per accepted event (µs); switch = the delay switch (the simulation's, not the product's)",
    );
    printTable(
      side.map((r) =>
        Object.fromEntries(
          Object.entries(r).filter(([k]) => ["variant", "offered ev/s"].includes(k) || k.includes("µs/ev")),
        ),
      ),
    );
    const guarantees = result.guarantees;
    console.log("\nGuarantees (the whole run; lost also per variant):");
    printTable(guarantees);
    const hold = guarantees.every((g) => g.result === "PASS");
    console.log(`guarantees ${hold ? "PASS" : "FAIL"}`);
    const json = saveResults("e2e-hosts", {
      steps,
      stepSeconds,
      batch,
      workerCount,
      delayEngine: built.engine,
      switchDrops: drops,
      zoned,
      topology: t,
      guarantees,
      rtts,
      rows: result.rows,
      check: result.check,
      samples: result.samples,
      stepsDetail: result.stepResults.map(({ acked, ...s }) => s),
    });
    console.log(`results: ${json}`);
    return hold ? 0 : 1;
  } finally {
    await stopAll();
  }
}

/**
 * One database, topic, edge and worker pool for the whole run; the steps interleave the variants at
 * each rate (zero delay, then zoned, at 1,000; then both at 2,000…), the delay switched between
 * steps once the group has caught up. Side by side figures then come from adjacent minutes of the
 * same warm processes: on a shared box the drift over a whole variant was larger than the effect.
 */
async function runInterleaved(
  variants: { name: string; delay: Delay }[],
  t: Topology,
  built: Built,
  stack: ReturnType<typeof localStack>,
  pg: { primaryPid: number; standbyPid: number; pgbouncerPid: number },
) {
  const host = (n: string) => t.hosts[n] as NonNullable<(typeof t.hosts)[string]>;
  const db = await createThrowawayDatabase("e2ehosts", { stack });
  const run = db.name;
  const topic = `${run}-scans`;
  const kafkaAdmin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
  const replication = topicReplication(3);
  await kafkaAdmin.createTopics([
    { name: topic, partitions: 12, replicationFactor: replication.replicationFactor, config: replication.config },
    {
      name: `${topic}-dlq`,
      partitions: 1,
      replicationFactor: replication.replicationFactor,
      config: replication.config,
    },
  ]);
  const env = {
    KAFKA_BROKERS: stack.brokers,
    SCANS_TOPIC: topic,
    DEAD_LETTER_TOPIC: `${topic}-dlq`,
    DATABASE_URL: db.url,
    CONSUMER_GROUP: `${run}-sink`,
    DEAD_LETTER_GROUP: `${run}-dlq`,
    LOG_LEVEL: "error",
  };
  const logs = join(stack.dir, "logs");
  const edge = host("edge");
  const wrk = host("wrk");
  const server = await spawnUntilReady({
    name: "server",
    readyUrl: `http://${edge.addr}:${PORTS.edge}/ready`,
    cmd: [...inNs(edge.ns), "bun", "server/main.ts"],
    env: {
      ...env,
      HOST: edge.addr,
      PORT: String(PORTS.edge),
      METRICS_HOST: edge.addr,
      METRICS_PORT: String(PORTS.edgeMetrics),
      AUTH_DISABLED: "true",
      // The load generator connects straight to it: no proxy in front.
      CLIENTS_CONNECT_DIRECTLY: "true",
    },
    output: { file: join(logs, "server.log") },
    readyTimeoutMs: 60_000,
  });
  const workers = spawnProcess({
    cmd: [...inNs(wrk.ns), "bun", "worker/supervisor.ts"],
    env: {
      ...env,
      WORKER_POOL_SIZE: String(workerCount),
      METRICS_HOST: wrk.addr,
      METRICS_PORT: String(PORTS.workerBase),
      SUPERVISOR_METRICS_PORT: String(PORTS.supervisor),
      LAG_INTERVAL_MS: "1000",
    },
    output: { file: join(logs, "workers.log") },
  });
  await Bun.sleep(5_000); // workers joined the group

  const sql = postgres(db.directUrl, { max: 2, onnotice: () => {}, connection: { enable_seqscan: "off" } });
  const started = Date.now();
  const samples: { t: number; lag: number; procs: Procs }[] = [];
  let loadgenPid = 0;
  const withChildren = (pid: number) => [pid, ...childPids(pid)];
  const sampleCpu = cpuSampler(() => ({
    server: server.pid ? [server.pid] : [],
    workers: childPids(workers.pid),
    kafka: stack.kafkaNodes.map((n) => kafkaNodePid(stack, n.id) ?? 0).filter(Boolean),
    postgres: withChildren(pg.primaryPid),
    standby: withChildren(pg.standbyPid),
    pgbouncer: [pg.pgbouncerPid],
    switch: built.switchPid ? [built.switchPid] : [],
    loadgen: loadgenPid ? [loadgenPid] : [],
  }));
  const sampler = setInterval(async () => {
    const procs = sampleCpu();
    const w = (
      await Promise.all(
        Array.from({ length: workerCount }, (_, i) => scrapeIfUp(`http://${wrk.addr}:${PORTS.workerBase + i}/metrics`)),
      )
    ).flatMap((s) => s ?? []);
    samples.push({ t: (Date.now() - started) / 1000, lag: sum(w, "worker_consumer_lag"), procs });
  }, 1_000);

  // The observer (bench/observer.ts), polling the primary from the undelayed control namespace.
  const observer = startE2eObserver(sql);
  const { e2e } = observer;

  const stepResults: StepResult[] = [];
  const lg = host("lg");
  /** Until the group has committed everything (the supervisor's committed lag), bounded. */
  const drainedWithin = async (ms: number) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const s = (await scrapeIfUp(`http://${wrk.addr}:${PORTS.supervisor}/metrics`)) ?? [];
      if (s.some((x) => x.name === "consumer_group_lag") && sum(s, "consumer_group_lag") === 0) return true;
      if (Date.now() > deadline) return false;
      await Bun.sleep(500);
    }
  };
  const first = variants[0] as { name: string; delay: Delay };
  // A warm-up at the first rate, not reported (its events are checked with the rest): the brokers'
  // JIT and the fresh database would otherwise make the first step the slowest.
  const schedule = [
    ...(warmupSeconds > 0 ? [{ v: first, rate: -(steps[0] ?? 1000) }] : []),
    ...steps.flatMap((rate) => variants.map((v) => ({ v, rate }))),
  ];
  for (const { v, rate } of schedule) {
    await setDelay(t, built, v.delay);
    const seconds = rate < 0 ? warmupSeconds : stepSeconds;
    const out = `/tmp/${run}-${v.delay.crossRttMs}-${Math.abs(rate)}.json`;
    const ackedFile = `${out}.ids`;
    const startedAt = Date.now();
    const proc = Bun.spawn(
      [
        ...inNs(lg.ns),
        "bun",
        "bench/load.ts",
        "--url",
        `http://${edge.addr}:${PORTS.edge}`,
        "--scenario",
        "batch",
        "--batch",
        String(batch),
        "--rate",
        String(Math.abs(rate) / batch),
        "--duration",
        String(seconds),
        "--out",
        out,
        "--acked-out",
        ackedFile,
      ],
      { cwd: root, stdout: "ignore", stderr: "inherit" },
    );
    loadgenPid = proc.pid;
    // Round trips while the step runs: the delay as the pipeline's packets meet it on a busy box
    // (the matrix above is measured at rest). Two pairs, A-A and A-B, a few seconds in.
    const loaded =
      rate > 0 && seconds >= 4
        ? Bun.sleep(3_000).then(async () => ({
            aa: (await measureRtt(t, "lg", "edge", PORTS.rtt, 20)).median_ms,
            ab: (await measureRtt(t, "edge", "k2", PORTS.rtt + 1, 20)).median_ms,
          }))
        : Promise.resolve(null);
    await proc.exited;
    const rttUnderLoad = await loaded;
    loadgenPid = 0;
    const endedAt = Date.now();
    const load = (await Bun.file(out).json()) as LoadResult;
    const acked = (await Bun.file(ackedFile).text()).split("\n").filter(Boolean);
    rmSync(out, { force: true });
    rmSync(ackedFile, { force: true });
    stepResults.push({ variant: v.name, rate, load, startedAt, endedAt, acked, rttUnderLoad });
    await Bun.sleep(2_000);
    const window = e2e
      .filter((e) => e.at >= startedAt)
      .map((e) => e.ms)
      .sort((a, b) => a - b);
    console.log(
      `[${v.name}] ${rate < 0 ? "warm-up" : "step"} ${Math.abs(rate)} ev/s: achieved ${load.events_per_s} ev/s, ` +
        `HTTP p95 ${load.latency_ms.p95} ms, errors ${load.error_rate}, e2e p95 ${pct(window, 95)} ms`,
    );
    // The next step starts from an empty backlog, whichever variant left it.
    if (!(await drainedWithin(30_000))) console.log(`[${v.name}] the group had not caught up 30 s after the step`);
  }

  // Drain, then the checks that must be zero (as bench/e2e.ts).
  const ackedAll = stepResults.flatMap((s) => s.acked);
  let missing = await missingEventIds(sql, ackedAll);
  const drainDeadline = Date.now() + 180_000;
  while (missing.length > 0 && Date.now() < drainDeadline) {
    await Bun.sleep(1_000);
    missing = await missingEventIds(sql, missing);
  }
  const lagDeadline = Date.now() + 60_000;
  let drained = false;
  while (!drained && Date.now() < lagDeadline) {
    const s = (await scrapeIfUp(`http://${wrk.addr}:${PORTS.supervisor}/metrics`)) ?? [];
    drained = s.some((x) => x.name === "consumer_group_lag") && sum(s, "consumer_group_lag") === 0;
    if (!drained) await Bun.sleep(500);
  }
  await Bun.sleep(200);
  await observer.stop();
  const check = await storedOnce(sql, ackedAll);
  clearInterval(sampler);
  await Promise.all([stopProcess(server), stopProcess(workers)]);
  await sql.end();
  await kafkaAdmin.deleteTopics([topic, `${topic}-dlq`]);
  kafkaAdmin.close();
  await db.drop();

  const rows = stepResults
    .filter((s) => s.rate > 0)
    .map((s) => {
      const window = e2e
        .filter((e) => e.at >= s.startedAt && e.at <= s.endedAt + 2_000)
        .map((e) => e.ms)
        .sort((a, b) => a - b);
      const inStep = samples.filter((x) => x.t * 1000 + started > s.startedAt && x.t * 1000 + started <= s.endedAt);
      const avg = (p: string) =>
        inStep.length ? inStep.reduce((a, x) => a + (x.procs[p]?.cpu_pct ?? 0), 0) / inStep.length : 0;
      const perEvent = (cpuPct: number) =>
        s.load.events_per_s > 0 ? Math.round(((cpuPct / 100) * 1e6) / s.load.events_per_s) : 0;
      const row: Record<string, string | number> = {
        variant: s.variant,
        "offered ev/s": s.rate,
        "achieved ev/s": s.load.events_per_s,
        "HTTP p50": s.load.latency_ms.p50,
        "HTTP p95": s.load.latency_ms.p95,
        "HTTP p99": s.load.latency_ms.p99,
        errors:
          Object.entries(s.load.statuses)
            .filter(([k]) => k !== "202")
            .map(([k, v]) => `${k}:${v}`)
            .join(" ") || "0",
        "e2e p50": pct(window, 50),
        "e2e p95": pct(window, 95),
        "max lag": Math.max(0, ...inStep.map((x) => x.lag)),
        "RTT A-A": s.rttUnderLoad?.aa ?? "-",
        "RTT A-B": s.rttUnderLoad?.ab ?? "-",
      };
      let product = 0;
      for (const p of PROCS) {
        const cpu = avg(p);
        row[`${p} µs/ev`] = perEvent(cpu);
        if (p !== "switch") product += cpu;
      }
      row["pipeline µs/ev"] = perEvent(product);
      row["loadgen µs/ev"] = s.load.generator.us_per_event;
      return row;
    });
  const missingSet = new Set(missing);
  const guarantees = [
    ...variants.map((v) => {
      const acked = stepResults.filter((s) => s.variant === v.name).flatMap((s) => s.acked);
      const lost = acked.filter((id) => missingSet.has(id)).length;
      return {
        variant: v.name,
        check: "lost: acknowledged (202) but not stored",
        figure: `${lost} of ${acked.length}`,
        result: lost === 0 && acked.length > 0 ? "PASS" : "FAIL",
      };
    }),
    {
      variant: "all",
      check: "stored and counted once (storedOnce)",
      figure:
        `rows ${check.rows}, sum(scan_counts) ${check.counted}, acknowledged ${check.acknowledged} + ` +
        `unacknowledged stored ${check.unacknowledgedStored}, buckets off ${check.countMismatches}` +
        `${drained ? "" : " (group not drained after 60 s)"}`,
      result: check.failures.length === 0 && drained ? "PASS" : "FAIL",
    },
  ];
  for (const f of check.failures) console.log(`  ${f}`);
  return { rows, guarantees, samples, stepResults, acknowledged: ackedAll.length, lost: missing.length, check };
}

const insideFile = arg("inside", "");
process.exit(insideFile ? await inside(insideFile) : await outside());
