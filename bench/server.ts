// Edge server bench: the load generator (its own process) against a bare Bun.serve (the ceiling on
// this machine) and against the real server with Kafka behind it, in one run.
//   bun bench/server.ts [--duration 10] [--concurrency 64] [--security-rounds 3]
//                       [--search-seconds 5] [--lingers 5,1,0] [--low-rate 1000] [--high-rate 16000]
// Targets: single-event requests >= 50% of the bare ceiling; batched ingest >= 100,000 events/s;
// p99 < 25 ms at half the max single-event rate (open loop); with API-key auth, rate limits and
// CORS on, single-event req/s within 5% of the same server with them off (two servers, loaded in
// turn, alternating which goes first, `--security-rounds` times, 0 to skip; the medians are compared).
// The open-loop ceiling: for the bare server and the edge, the highest single-event request rate
// that holds p99 < 25 ms without errors (searched with `--search-seconds` runs, 0 to skip), and its
// ratio beside the closed-loop one. With `--lingers`, the edge again per producer linger.ms
// (KAFKA_LINGER_MS): single events at `--low-rate` requests/s (latency, and the server's and the
// broker's CPU per request, which a loaded box does not blur the way it does a p99), its open-loop
// ceiling, and the broker's and server's CPU per event under 10-event batches at `--high-rate`
// events/s (a lower linger must not cost the broker at high load).
import { newSecret } from "../shared/api-keys.ts";
import { localStack } from "../shared/local-stack.ts";
import { spawnUntilReady, stopProcess } from "../tools/harness.ts";
import { kafkaNodePid, startKafka } from "../tools/stack/kafka.ts";
import { freePort } from "../tools/stack/processes.ts";
import { arg, median, numArg, printTable, saveResults, startBenchServer } from "./lib.ts";
import { runLoadProcess } from "./load.ts";
import type { LoadResult } from "./load.ts";
import { cpuWindow } from "./proc-stats.ts";

const duration = numArg("duration", 10);
const concurrency = numArg("concurrency", 64);
const securityRounds = numArg("security-rounds", 3);
const searchSeconds = numArg("search-seconds", 5);
const lingers = arg("lingers", "").split(",").filter(Boolean).map(Number);
const lowRate = numArg("low-rate", 1_000);
const highRate = numArg("high-rate", 16_000);
const stack = localStack();
/** The open-loop search's bar: what the single-event p99 target asks. */
const P99_TARGET_MS = 25;

const load = (url: string, scenario: string, extra: string[] = []) =>
  runLoadProcess(url, scenario, { duration, concurrency, extra });

interface Probe {
  rate: number;
  rps: number;
  p99: number;
  errors: number;
  held: boolean;
  generator_us_per_event: number;
}

/**
 * The highest single-event open-loop rate (requests/s) that holds p99 < 25 ms with no errors and
 * the offered rate achieved: from half the closed-loop rate, up (or down) by 1.3× until it breaks
 * (or holds), then bisected to within 8%. Each probe is a fresh run of `searchSeconds`.
 */
async function openLoopCeiling(url: string, closedRps: number): Promise<{ rate: number; probes: Probe[] }> {
  const probes: Probe[] = [];
  if (searchSeconds <= 0) return { rate: Number.NaN, probes };
  const probe = async (rate: number) => {
    const r = await load(url, "single", ["--rate", String(rate), "--duration", String(searchSeconds)]);
    const held = r.latency_ms.p99 < P99_TARGET_MS && r.error_rate === 0 && r.rps >= rate * 0.97;
    console.log(
      `  ${url} single, open loop @${rate}/s: ${r.rps} req/s, p99 ${r.latency_ms.p99} ms, errors ${r.error_rate}: ${held ? "held" : "broke"}`,
    );
    probes.push({
      rate,
      rps: r.rps,
      p99: r.latency_ms.p99,
      errors: r.error_rate,
      held,
      generator_us_per_event: r.generator.us_per_event,
    });
    return held;
  };
  let lo = 0;
  let hi = 0;
  let rate = Math.max(50, Math.round(closedRps / 2));
  for (let i = 0; i < 8 && (lo === 0 || hi === 0); i++) {
    if (await probe(rate)) lo = rate;
    else hi = rate;
    if (lo === 0 || hi === 0) rate = Math.round(lo ? rate * 1.3 : rate / 1.3);
  }
  for (let i = 0; i < 4 && lo > 0 && hi > 0 && hi / lo > 1.08; i++) {
    const mid = Math.round(Math.sqrt(lo * hi));
    if (await probe(mid)) lo = mid;
    else hi = mid;
  }
  return { rate: lo, probes };
}
const ceilings: Record<string, { rate: number; probes: Probe[] }> = {};

await startKafka(stack);
const results: Record<string, LoadResult> = {};

const barePort = freePort();
const bare = await spawnUntilReady({
  name: "bare server",
  cmd: ["bun", "bench/bare-server.ts"],
  env: { PORT: String(barePort) },
  output: "ignore",
  readyUrl: `http://127.0.0.1:${barePort}/`,
});
try {
  await load(`http://127.0.0.1:${barePort}`, "single", ["--duration", "3"]);
  results.bare_single = await load(`http://127.0.0.1:${barePort}`, "single");
  ceilings.bare = await openLoopCeiling(`http://127.0.0.1:${barePort}`, results.bare_single.rps);
} finally {
  await stopProcess(bare, 15_000);
}

const { proc: server, url } = await startBenchServer();
try {
  // Warm-up (JIT, producer id, connections): run and discarded.
  await load(url, "single", ["--duration", "3"]);
  results.single = await load(url, "single");
  results.batch_100 = await load(url, "batch", ["--batch", "100"]);
  results.ndjson_100 = await load(url, "ndjson", ["--batch", "100"]);
  const halfRate = Math.max(1, Math.round(results.single.rps / 2));
  results.single_open_half_max = await load(url, "single", ["--rate", String(halfRate)]);
  ceilings.edge = await openLoopCeiling(url, results.single.rps);
} finally {
  await stopProcess(server, 15_000);
}

// The linger lever: per producer linger.ms, the edge's open-loop ceiling, and the broker's and the
// server's CPU per event under 10-event batches at a high rate (CPU time from /proc over the run).
const lingerRows: Record<string, string | number>[] = [];
for (const linger of lingers) {
  const edge = await startBenchServer({ KAFKA_LINGER_MS: String(linger) });
  try {
    await load(edge.url, "single", ["--duration", "3"]);
    const cpu = cpuWindow(() => ({
      broker: stack.kafkaNodes.map((_, i) => kafkaNodePid(stack, i + 1) ?? 0).filter(Boolean),
      server: edge.proc.pid ? [edge.proc.pid] : [],
    }));
    /** The run's CPU (server, broker) per event it sent, in µs. */
    const measured = async (scenario: string, extra: string[]) => {
      cpu.start();
      const r = await load(edge.url, scenario, extra);
      const used = cpu.stop();
      const sent = r.requests * (scenario === "single" ? 1 : 10);
      const us = (s: number | undefined) => (sent > 0 ? Math.round(((s ?? 0) * 1e6) / sent) : 0);
      return { r, server: us(used.server), broker: us(used.broker) };
    };
    const low = await measured("single", ["--rate", String(lowRate)]);
    const high = await measured("batch", ["--batch", "10", "--rate", String(highRate / 10)]);
    const closed = await load(edge.url, "single");
    const ceiling = await openLoopCeiling(edge.url, closed.rps);
    ceilings[`edge_linger_${linger}`] = ceiling;
    lingerRows.push({
      "linger ms": linger,
      [`single @${lowRate}/s p50`]: low.r.latency_ms.p50,
      p99: low.r.latency_ms.p99,
      "server µs/req": low.server,
      "broker µs/req": low.broker,
      "single closed req/s": closed.rps,
      "single open req/s (p99 < 25 ms)": ceiling.rate,
      [`@${highRate} ev/s: p99`]: high.r.latency_ms.p99,
      "server µs/ev": high.server,
      "broker µs/ev": high.broker,
    });
  } finally {
    await stopProcess(edge.proc, 15_000);
  }
}

// Security on vs off: the same server, with auth (a static key), both rate limits (limits high
// enough never to refuse, so their bookkeeping is what is measured) and CORS (every request from
// an allowed origin), against AUTH_DISABLED and no limits or CORS.
const KEY = newSecret(); // a static key of the generated shape, the only one the edge accepts
const ORIGIN = "https://scanner.example";
const security = { on: [] as number[], off: [] as number[] };
if (securityRounds > 0) {
  const on = await startBenchServer({
    AUTH_DISABLED: "false",
    API_KEY_SHA256: new Bun.CryptoHasher("sha256").update(KEY).digest("hex"),
    RATE_LIMIT_EVENTS_PER_SECOND: "1000000000",
    RATE_LIMIT_BURST: "1000000000",
    AUTH_FAILURES_PER_MINUTE: "60",
    CORS_ORIGINS: ORIGIN,
  });
  const off = await startBenchServer({ RATE_LIMIT_EVENTS_PER_SECOND: "0", AUTH_FAILURES_PER_MINUTE: "0" });
  try {
    const onArgs = ["--api-key", KEY, "--origin", ORIGIN];
    await load(on.url, "single", ["--duration", "3", ...onArgs]);
    await load(off.url, "single", ["--duration", "3"]);
    for (let round = 0; round < securityRounds; round++) {
      const order = round % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const);
      for (const which of order) {
        const r = which === "on" ? await load(on.url, "single", onArgs) : await load(off.url, "single");
        if (r.error_rate > 0)
          throw new Error(`security ${which}: error rate ${r.error_rate} (statuses should all be 202)`);
        security[which].push(r.rps);
        results[`security_${which}_${round + 1}`] = r;
      }
    }
  } finally {
    await stopProcess(on.proc, 15_000);
    await stopProcess(off.proc, 15_000);
  }
}

printTable(
  Object.entries(results).map(([name, r]) => ({
    run: name,
    mode: r.offered_rps ? `open @${r.offered_rps}/s` : `closed x${concurrency}`,
    "req/s": r.rps,
    "events/s": r.events_per_s,
    "p50 ms": r.latency_ms.p50,
    "p95 ms": r.latency_ms.p95,
    "p99 ms": r.latency_ms.p99,
    "max ms": r.latency_ms.max,
    errors: r.error_rate,
    "loadgen µs/ev": r.generator.us_per_event,
  })),
);
console.log("\nOpen-loop search, single events (p99 < 25 ms, no errors, offered rate achieved):");
printTable(
  Object.entries(ceilings).flatMap(([target, c]) =>
    c.probes.map((p) => ({
      target,
      "offered req/s": p.rate,
      "req/s": p.rps,
      "p99 ms": p.p99,
      errors: p.errors,
      held: p.held ? "yes" : "no",
      "loadgen µs/ev": p.generator_us_per_event,
    })),
  ),
);
if (lingerRows.length > 0) {
  console.log("\nProducer linger.ms (KAFKA_LINGER_MS), one server each:");
  printTable(lingerRows);
}
const ratio = (results.single?.rps ?? 0) / (results.bare_single?.rps ?? 1);
const batched = Math.max(results.batch_100?.events_per_s ?? 0, results.ndjson_100?.events_per_s ?? 0);
const p99 = results.single_open_half_max?.latency_ms.p99 ?? Number.NaN;
console.log(
  `\nsingle-event req/s vs bare Bun.serve: ${ratio.toFixed(2)} (target >= 0.50) ${ratio >= 0.5 ? "PASS" : "FAIL"}`,
);
console.log(`batched events/s: ${batched} (target >= 100000) ${batched >= 100_000 ? "PASS" : "FAIL"}`);
console.log(`p99 at half max rate: ${p99} ms (target < 25) ${p99 < 25 ? "PASS" : "FAIL"}`);
const openRatio = (ceilings.edge?.rate ?? 0) / (ceilings.bare?.rate || 1);
console.log(
  `single-event open loop, highest req/s with p99 < 25 ms: edge ${ceilings.edge?.rate}, bare ${ceilings.bare?.rate}: ` +
    `${openRatio.toFixed(2)} of bare (closed loop: ${ratio.toFixed(2)})`,
);
const securityRatio = median(security.on) / median(security.off);
if (securityRounds > 0) {
  console.log(
    `auth+limits+CORS on vs off, median single-event req/s: ${securityRatio.toFixed(3)} (target >= 0.95) ${securityRatio >= 0.95 ? "PASS" : "FAIL"}`,
  );
}
console.log(
  `results: ${saveResults("server", {
    duration,
    concurrency,
    ratio,
    batched,
    p99_half_max: p99,
    security_ratio: securityRatio,
    open_loop_ratio: openRatio,
    ceilings,
    lingers: lingerRows,
    results,
  })}`,
);
