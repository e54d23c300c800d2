// Edge server bench: the load generator (its own process) against a bare Bun.serve (the ceiling on
// this machine) and against the real server with Kafka behind it, in one run.
//   bun bench/server.ts [--duration 10] [--concurrency 64] [--security-rounds 3]
// Targets: single-event requests >= 50% of the bare ceiling; batched ingest >= 100,000 events/s;
// p99 < 25 ms at half the max single-event rate (open loop); with API-key auth, rate limits and
// CORS on, single-event req/s within 5% of the same server with them off (two servers, loaded in
// turn, alternating which goes first, `--security-rounds` times; the medians are compared).
import { newSecret } from "../shared/api-keys.ts";
import { localStack } from "../shared/local-stack.ts";
import { spawnUntilReady, stopProcess } from "../tools/harness.ts";
import { startKafka } from "../tools/stack/kafka.ts";
import { freePort } from "../tools/stack/processes.ts";
import { median, numArg, printTable, saveResults, startBenchServer } from "./lib.ts";
import { runLoadProcess } from "./load.ts";
import type { LoadResult } from "./load.ts";

const duration = numArg("duration", 10);
const concurrency = numArg("concurrency", 64);
const securityRounds = numArg("security-rounds", 3);
const stack = localStack();

const load = (url: string, scenario: string, extra: string[] = []) =>
  runLoadProcess(url, scenario, { duration, concurrency, extra });

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
} finally {
  await stopProcess(server, 15_000);
}

// Security on vs off: the same server, with auth (a static key), both rate limits (limits high
// enough never to refuse, so their bookkeeping is what is measured) and CORS (every request from
// an allowed origin), against AUTH_DISABLED and no limits or CORS.
const KEY = newSecret(); // a static key of the generated shape, the only one the edge accepts
const ORIGIN = "https://scanner.example";
const on = await startBenchServer({
  AUTH_DISABLED: "false",
  API_KEY_SHA256: new Bun.CryptoHasher("sha256").update(KEY).digest("hex"),
  RATE_LIMIT_EVENTS_PER_SECOND: "1000000000",
  RATE_LIMIT_BURST: "1000000000",
  AUTH_FAILURES_PER_MINUTE: "60",
  CORS_ORIGINS: ORIGIN,
});
const off = await startBenchServer({ RATE_LIMIT_EVENTS_PER_SECOND: "0", AUTH_FAILURES_PER_MINUTE: "0" });
const security = { on: [] as number[], off: [] as number[] };
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
  })),
);
const ratio = (results.single?.rps ?? 0) / (results.bare_single?.rps ?? 1);
const batched = Math.max(results.batch_100?.events_per_s ?? 0, results.ndjson_100?.events_per_s ?? 0);
const p99 = results.single_open_half_max?.latency_ms.p99 ?? Number.NaN;
console.log(
  `\nsingle-event req/s vs bare Bun.serve: ${ratio.toFixed(2)} (target >= 0.50) ${ratio >= 0.5 ? "PASS" : "FAIL"}`,
);
console.log(`batched events/s: ${batched} (target >= 100000) ${batched >= 100_000 ? "PASS" : "FAIL"}`);
console.log(`p99 at half max rate: ${p99} ms (target < 25) ${p99 < 25 ? "PASS" : "FAIL"}`);
const securityRatio = median(security.on) / median(security.off);
console.log(
  `auth+limits+CORS on vs off, median single-event req/s: ${securityRatio.toFixed(3)} (target >= 0.95) ${securityRatio >= 0.95 ? "PASS" : "FAIL"}`,
);
console.log(
  `results: ${saveResults("server", {
    duration,
    concurrency,
    ratio,
    batched,
    p99_half_max: p99,
    security_ratio: securityRatio,
    results,
  })}`,
);
