// Load generator for POST /v1/scans, for capacity planners. Runs as its own process; works against
// a local or remote deployment.
//
//   bun bench/load.ts --url http://127.0.0.1:8080 [--scenario single|batch|ndjson] [--batch 100]
//                     [--concurrency 64] [--duration 10] [--rate 0] [--api-key KEY] [--origin URL]
//                     [--out file.json]
//                     [--acked-out ids.txt]   (event ids answered 202, one per line)
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
  /** Sent as the Origin header (exercises the CORS path). */
  origin?: string;
  /** Collects the event ids of every 202 (all events the generator makes are valid). */
  acknowledged?: string[];
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
  /** Per second of the run (by when requests were due): requests, non-202s, latency percentiles. */
  timeline: { t: number; requests: number; errors: number; p50: number; p95: number; p99: number }[];
}

const runId = Math.floor(Math.random() * 0xffff)
  .toString(16)
  .padStart(4, "0");
let counter = 0;

/** A unique, valid event: cheap to make so the generator spends its CPU on sending. */
function eventId(): string {
  const n = counter++;
  return `00000000-${runId}-4000-8000-${`${runId}${n.toString(16).padStart(12, "0")}`.slice(-12)}`;
}

function event(id: string, now: string): string {
  const qr = `QR-${(Number.parseInt(id.slice(-8), 16) * 7919) % 5000}`;
  return `{"event_id":"${id}","qr_id":"${qr}","scanned_at":"${now}","scanner_id":"bench"}`;
}

function body(scenario: Scenario, batch: number): { body: string; ids: string[]; contentType: string } {
  const now = new Date().toISOString();
  const ids = Array.from({ length: scenario === "single" ? 1 : batch }, eventId);
  const events = ids.map((id) => event(id, now));
  if (scenario === "single") return { body: events[0] as string, ids, contentType: "application/json" };
  if (scenario === "ndjson") return { body: events.join("\n"), ids, contentType: "application/x-ndjson" };
  return { body: `[${events.join(",")}]`, ids, contentType: "application/json" };
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const started = performance.now();
  const target = `${o.url.replace(/\/$/, "")}/v1/scans`;
  const headers: Record<string, string> = {};
  if (o.apiKey) headers.authorization = `Bearer ${o.apiKey}`;
  // As a browser page on that origin would send it (the server's CORS path).
  if (o.origin) headers.origin = o.origin;
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let events = 0;
  const statuses: Record<string, number> = {};
  const secondsTimeline: { requests: number; errors: number; latencies: number[] }[] = [];
  const record = (ms: number, status: string, ids: string[], dueAt: number) => {
    const second = Math.max(0, Math.floor((dueAt - started) / 1000));
    while (secondsTimeline.length <= second) secondsTimeline.push({ requests: 0, errors: 0, latencies: [] });
    const bucket = secondsTimeline[second] as { requests: number; errors: number; latencies: number[] };
    bucket.requests++;
    bucket.latencies.push(ms);
    if (status !== "202") bucket.errors++;
    if (count === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[count++] = ms;
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (status === "202") {
      events += ids.length;
      if (o.acknowledged) for (const id of ids) o.acknowledged.push(id);
    }
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
    record(performance.now() - dueAt, status, b.ids, dueAt);
  };

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
    timeline: secondsTimeline.map((b, t) => {
      const s = Float64Array.from(b.latencies).sort();
      return {
        t,
        requests: b.requests,
        errors: b.errors,
        p50: round(percentile(s, 50)),
        p95: round(percentile(s, 95)),
        p99: round(percentile(s, 99)),
      };
    }),
  };
}

/**
 * Runs the load generator (bench/load.ts) in its own process, so its CPU is not the measured
 * process's, and returns its result line.
 */
export async function runLoadProcess(
  url: string,
  scenario: string,
  { duration, concurrency, extra = [] }: { duration: number; concurrency: number; extra?: string[] },
): Promise<LoadResult> {
  const proc = Bun.spawn(
    [
      "bun",
      "bench/load.ts",
      "--url",
      url,
      "--scenario",
      scenario,
      "--duration",
      String(duration),
      "--concurrency",
      String(concurrency),
      ...extra,
    ],
    { cwd: new URL("..", import.meta.url).pathname, stdout: "pipe", stderr: "inherit" },
  );
  const out = await new Response(proc.stdout).text();
  if ((await proc.exited) !== 0) throw new Error(`load generator failed for ${scenario}`);
  return JSON.parse(out.trim().split("\n").at(-1) as string) as LoadResult;
}

if (import.meta.main) {
  const scenario = arg("scenario", "single") as Scenario;
  if (!["single", "batch", "ndjson"].includes(scenario)) throw new Error("--scenario must be single, batch or ndjson");
  const ackedOut = arg("acked-out", "");
  const acknowledged: string[] = [];
  const result = await runLoad({
    // Collected only when asked for: a long closed-loop run would otherwise hold millions of ids.
    acknowledged: ackedOut ? acknowledged : undefined,
    url: arg("url", "http://127.0.0.1:8080"),
    scenario,
    batch: numArg("batch", 100),
    concurrency: numArg("concurrency", 64),
    durationS: numArg("duration", 10),
    rate: numArg("rate", 0),
    apiKey: arg("api-key", process.env.API_KEY ?? "") || undefined,
    origin: arg("origin", "") || undefined,
  });
  const out = arg("out", "");
  if (out) writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  if (ackedOut) writeFileSync(ackedOut, acknowledged.join("\n"));
  console.log(JSON.stringify(result));
}
