// Load generator for POST /v1/scans, for capacity planners. Runs as its own process; works against
// a local or remote deployment.
//
//   bun bench/load.ts --url http://127.0.0.1:8080 [--scenario single|batch|ndjson] [--batch 100]
//                     [--concurrency 64] [--duration 10] [--rate 0] [--api-key KEY] [--out file.json]
//
// Closed loop (default): `concurrency` workers send back to back; measures the maximum rate.
// Open loop (--rate R requests/s): requests are due at fixed times and latency is measured from
// when each was due, not when it was sent, so a stalled server cannot hide its queueing
// (coordinated omission). Prints a summary and, with --out, writes it as JSON.
import { writeFileSync } from "node:fs";
import { arg, numArg } from "./lib.ts";

export type Scenario = "single" | "batch" | "ndjson";

export interface LoadOptions {
  url: string;
  scenario: Scenario;
  batch: number;
  concurrency: number;
  durationS: number;
  /** Requests per second for an open-loop run; 0 means closed loop. */
  rate: number;
  apiKey?: string;
}

export interface LoadResult {
  scenario: Scenario;
  mode: "closed" | "open";
  offered_rps: number | null;
  requests: number;
  events: number;
  rps: number;
  events_per_s: number;
  error_rate: number;
  statuses: Record<string, number>;
  latency_ms: { p50: number; p95: number; p99: number; max: number };
  duration_s: number;
}

const runId = Math.floor(Math.random() * 0xffff)
  .toString(16)
  .padStart(4, "0");
let counter = 0;

/** A unique, valid event: cheap to make so the generator spends its CPU on sending. */
function event(now: string): string {
  const n = counter++;
  const id = `${runId}${n.toString(16).padStart(12, "0")}`.slice(-12);
  const qr = `QR-${(n * 7919) % 5000}`;
  return `{"event_id":"00000000-${runId}-4000-8000-${id}","qr_id":"${qr}","scanned_at":"${now}","scanner_id":"bench"}`;
}

function body(scenario: Scenario, batch: number): { body: string; events: number; contentType: string } {
  const now = new Date().toISOString();
  if (scenario === "single") return { body: event(now), events: 1, contentType: "application/json" };
  const events = Array.from({ length: batch }, () => event(now));
  if (scenario === "ndjson") return { body: events.join("\n"), events: batch, contentType: "application/x-ndjson" };
  return { body: `[${events.join(",")}]`, events: batch, contentType: "application/json" };
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const target = `${o.url.replace(/\/$/, "")}/v1/scans`;
  const headers: Record<string, string> = {};
  if (o.apiKey) headers.authorization = `Bearer ${o.apiKey}`;
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let events = 0;
  const statuses: Record<string, number> = {};
  const record = (ms: number, status: string, n: number) => {
    if (count === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[count++] = ms;
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (status === "202") events += n;
  };
  const send = async (dueAt: number) => {
    const b = body(o.scenario, o.batch);
    let status = "error";
    try {
      const res = await fetch(target, {
        method: "POST",
        body: b.body,
        headers: { ...headers, "content-type": b.contentType },
      });
      await res.arrayBuffer();
      status = String(res.status);
    } catch {
      status = "error"; // connection refused/reset: counted, not thrown
    }
    record(performance.now() - dueAt, status, b.events);
  };

  const started = performance.now();
  const endAt = started + o.durationS * 1000;
  if (o.rate > 0) {
    const interval = 1000 / o.rate;
    const inflight = new Set<Promise<void>>();
    let next = started;
    while (next < endAt) {
      const now = performance.now();
      while (next <= now && next < endAt) {
        const p = send(next);
        inflight.add(p);
        p.finally(() => inflight.delete(p));
        next += interval;
      }
      await Bun.sleep(Math.max(0, Math.min(1, next - performance.now())));
    }
    await Promise.all(inflight);
  } else {
    const worker = async () => {
      while (performance.now() < endAt) await send(performance.now());
    };
    await Promise.all(Array.from({ length: o.concurrency }, worker));
  }
  const seconds = (performance.now() - started) / 1000;
  const sorted = latencies.subarray(0, count).sort();
  const errors = count - (statuses["202"] ?? 0);
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    scenario: o.scenario,
    mode: o.rate > 0 ? "open" : "closed",
    offered_rps: o.rate > 0 ? o.rate : null,
    requests: count,
    events,
    rps: Math.round(count / seconds),
    events_per_s: Math.round(events / seconds),
    error_rate: count ? round(errors / count) : 0,
    statuses,
    latency_ms: {
      p50: round(percentile(sorted, 50)),
      p95: round(percentile(sorted, 95)),
      p99: round(percentile(sorted, 99)),
      max: round(sorted[count - 1] ?? Number.NaN),
    },
    duration_s: round(seconds),
  };
}

if (import.meta.main) {
  const scenario = arg("scenario", "single") as Scenario;
  if (!["single", "batch", "ndjson"].includes(scenario)) throw new Error("--scenario must be single, batch or ndjson");
  const result = await runLoad({
    url: arg("url", "http://127.0.0.1:8080"),
    scenario,
    batch: numArg("batch", 100),
    concurrency: numArg("concurrency", 64),
    durationS: numArg("duration", 10),
    rate: numArg("rate", 0),
    apiKey: arg("api-key", process.env.API_KEY ?? "") || undefined,
  });
  const out = arg("out", "");
  if (out) writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result));
}
