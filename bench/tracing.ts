// What tracing costs: the edge server with tracing off, on at 1% (parent-based trace-id ratio) and
// on at 100%, exporting OTLP/HTTP to a receiver in this process, under the same closed-loop load;
// alternated over several rounds in one run so drift hits every mode alike. Then the worker's
// share, in-process: one batch's spans (worker/batch-trace.ts) for 5,000 sampled messages, sent
// 20 per request (250 sends) and one per request (5,000 sends).
//   bun bench/tracing.ts [--duration 8] [--concurrency 32] [--rounds 2]
// Prints req/s and events/s per mode and round, and each mode's median ratio to "off".
import * as v from "valibot";
import { loadConfig } from "../shared/config.ts";
import { localStack } from "../shared/local-stack.ts";
import { TracingConfigEntries, startTracing } from "../shared/tracing.ts";
import { stopProcess } from "../tools/harness.ts";
import { startKafka } from "../tools/stack/kafka.ts";
import { BatchTrace } from "../worker/batch-trace.ts";
import { median, numArg, printTable, saveResults, startBenchServer } from "./lib.ts";
import { runLoadProcess } from "./load.ts";
import type { LoadResult } from "./load.ts";

const duration = numArg("duration", 8);
const concurrency = numArg("concurrency", 32);
const rounds = numArg("rounds", 2);
const stack = localStack();

// The collector stand-in: accepts OTLP/HTTP and counts what it gets.
let exports = 0;
let exportedBytes = 0;
const receiver = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    exportedBytes += (await req.arrayBuffer()).byteLength;
    exports++;
    return Response.json({});
  },
});
const endpoint = `http://127.0.0.1:${receiver.port}`;

const MODES: Record<string, Record<string, string>> = {
  off: {},
  "on 1%": {
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
    OTEL_TRACES_SAMPLER_ARG: "0.01",
  },
  "on 100%": { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_TRACES_SAMPLER: "parentbased_always_on" },
};

async function measure(env: Record<string, string>): Promise<{ single: LoadResult; batch: LoadResult }> {
  const { proc: server, url } = await startBenchServer(env);
  try {
    await runLoadProcess(url, "single", { duration: 2, concurrency }); // warm-up, discarded
    const single = await runLoadProcess(url, "single", { duration, concurrency });
    const batch = await runLoadProcess(url, "batch", { duration, concurrency, extra: ["--batch", "10"] });
    return { single, batch };
  } finally {
    await stopProcess(server, 15_000);
  }
}

await startKafka(stack);
const rows: Record<string, string | number>[] = [];
const perMode: Record<string, { single: number[]; batch: number[]; p95: number[] }> = {};
for (let round = 1; round <= rounds; round++) {
  const order = round % 2 === 1 ? Object.keys(MODES) : Object.keys(MODES).reverse();
  for (const mode of order) {
    const before = exports;
    const r = await measure(MODES[mode] as Record<string, string>);
    perMode[mode] ??= { single: [], batch: [], p95: [] };
    const m = perMode[mode];
    m.single.push(r.single.rps);
    m.batch.push(r.batch.events_per_s);
    m.p95.push(r.single.latency_ms.p95);
    rows.push({
      round,
      mode,
      "single req/s": r.single.rps,
      "single p95 ms": r.single.latency_ms.p95,
      "10-event batches ev/s": r.batch.events_per_s,
      "batch p95 ms": r.batch.latency_ms.p95,
      errors: r.single.error_rate + r.batch.error_rate,
      "OTLP exports": exports - before,
    });
  }
}
printTable(rows);

// The worker's share: one batch's spans for 5,000 sampled messages, `perSend` messages per request.
const tracing = startTracing(
  "bench-worker",
  loadConfig(v.object(TracingConfigEntries), { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }),
);
const traceparent = (i: number) =>
  new TextEncoder().encode(`00-${i.toString(16).padStart(32, "0")}-${(i + 1).toString(16).padStart(16, "0")}-01`);
function batchMs(perSend: number): number {
  const headers = Array.from({ length: 5_000 }, (_, i) => traceparent(Math.floor(i / perSend) + 1));
  const messages = headers.map((h, offset) => ({
    message: {
      topic: "scans",
      partition: 0,
      offset,
      key: null,
      value: null,
      timestamp: 0,
      headers: { traceparent: h },
    },
  }));
  const batches = 50;
  const started = performance.now();
  for (let n = 0; n < batches; n++) {
    new BatchTrace(tracing, { topic: "scans", group: "bench", batchId: n, parts: [messages] }).end();
  }
  return (performance.now() - started) / batches;
}
const perBatchMs = { "20 per request": batchMs(20), "1 per request": batchMs(1) };
await tracing.shutdown();
receiver.stop(true);

const summary = Object.entries(perMode).map(([mode, m]) => ({
  mode,
  "single req/s (median)": median(m.single),
  "vs off": (median(m.single) / median(perMode.off?.single ?? [1])).toFixed(3),
  "10-event ev/s (median)": median(m.batch),
  "vs off ": (median(m.batch) / median(perMode.off?.batch ?? [1])).toFixed(3),
  "single p95 ms (median)": median(m.p95),
}));
console.log("");
printTable(summary);
for (const [sends, ms] of Object.entries(perBatchMs)) {
  console.log(
    `\nworker: one batch's spans for 5,000 sampled messages, ${sends}: ${ms.toFixed(2)} ms ` +
      `(${((ms * 1000) / 5_000).toFixed(2)} µs per message, only when the message's trace is sampled)`,
  );
}
console.log(`received ${exports} OTLP exports, ${(exportedBytes / 1e6).toFixed(1)} MB`);
console.log(`results: ${saveResults("tracing", { duration, concurrency, rounds, rows, summary, perBatchMs })}`);
