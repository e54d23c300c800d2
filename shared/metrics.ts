// Prometheus metrics: one registry per process, served on a port of its own (loopback by default,
// so metrics are never public by accident).
import { createHash, timingSafeEqual } from "node:crypto";
import { Counter, Gauge, Registry } from "prom-client";
import type { MetricsAuth } from "./config.ts";

/**
 * Process metrics that cost microseconds per scrape. prom-client's default collectors are not used:
 * under Bun their heap-space statistics walk the whole heap, blocking the event loop for 100 ms and
 * more per scrape once the heap is large (measured: 110 ms with 2 M live objects).
 */
function registerProcessMetrics(registry: Registry): void {
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes",
    registers: [registry],
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  let last = { user: 0, system: 0 }; // counted from process start
  const cpu = new Counter({
    name: "process_cpu_seconds_total",
    help: "User and system CPU time spent, in seconds",
    labelNames: ["mode"] as const,
    registers: [registry],
    collect() {
      const now = process.cpuUsage();
      cpu.inc({ mode: "user" }, (now.user - last.user) / 1e6);
      cpu.inc({ mode: "system" }, (now.system - last.system) / 1e6);
      last = now;
    },
  });
  new Gauge({ name: "process_start_time_seconds", help: "Start time of the process", registers: [registry] }).set(
    Math.round(Date.now() / 1000 - process.uptime()),
  );
}

export function createRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  registerProcessMetrics(registry);
  return registry;
}

/** A probe's verdict: 200 with `body` when ok, else 503. */
export interface ProbeResult {
  ok: boolean;
  body: Record<string, unknown>;
}

export interface Probes {
  /** Liveness: answered from state kept outside the process's main loop; 503 means restart it. */
  health?: () => ProbeResult;
  /** Readiness: 503 means do not count on it yet (or any more), not restart it. */
  ready?: () => ProbeResult | Promise<ProbeResult>;
}

const digest = (s: string) => createHash("sha256").update(s).digest();

/**
 * A check of a request's Authorization header against the configured credentials (Bearer token
 * and/or Basic user:password), in constant time; null when none is configured (open).
 */
export function metricsAuthCheck(auth: MetricsAuth): ((authorization: string | null) => boolean) | null {
  const accepted: Buffer[] = [];
  if (auth.bearerToken) accepted.push(digest(`Bearer ${auth.bearerToken}`));
  if (auth.basic) accepted.push(digest(`Basic ${Buffer.from(auth.basic).toString("base64")}`));
  if (accepted.length === 0) return null;
  return (authorization) => {
    if (!authorization) return false;
    // The scheme is case-insensitive; the credentials are compared as digests.
    const space = authorization.indexOf(" ");
    const scheme = authorization.slice(0, space).toLowerCase();
    const normalised = `${scheme === "bearer" ? "Bearer" : scheme === "basic" ? "Basic" : scheme}${authorization.slice(space)}`;
    const d = digest(normalised);
    let ok = false;
    for (const a of accepted) ok = timingSafeEqual(a, d) || ok;
    return ok;
  };
}

/**
 * Serves `GET /metrics` from `registry` (behind `auth` when it holds credentials), and
 * `GET /health` and `GET /ready` from the probes given (unauthenticated, like every probe);
 * returns the Bun server.
 */
export function serveMetrics(
  registry: Registry,
  hostname: string,
  port: number,
  probes: Probes = {},
  auth: MetricsAuth = {},
) {
  const answer = ({ ok, body }: ProbeResult) => Response.json(body, { status: ok ? 200 : 503 });
  const authorized = metricsAuthCheck(auth);
  const challenge = auth.basic ? 'Basic realm="metrics"' : 'Bearer realm="metrics"';
  return Bun.serve({
    hostname,
    port,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/metrics") {
        if (authorized && !authorized(req.headers.get("authorization"))) {
          return new Response("unauthorized: this metrics listener needs credentials (see docs/security.md)\n", {
            status: 401,
            headers: { "WWW-Authenticate": challenge },
          });
        }
        return new Response(await registry.metrics(), { headers: { "content-type": registry.contentType } });
      }
      if (path === "/health" && probes.health) return answer(probes.health());
      if (path === "/ready" && probes.ready) return answer(await probes.ready());
      return new Response("not found", { status: 404 });
    },
  });
}

/** One series of a BulkHistogram: per-bucket counts (not cumulative; the last is +Inf), sum and count. */
class BulkSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Record<string, string>,
    readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

interface ExportedValue {
  labels: Record<string, string | number>;
  sharedLabels: Record<string, string>;
  value: number;
  metricName: string;
}

/**
 * A histogram fed by hot paths: `observe()` is a bucket search and three additions, where
 * prom-client's Histogram.observe() (a labelled child's too) validates and hashes labels on every
 * call (≈ 360 ns each; the worker observes every event it stores, the edge every request).
 * Exposed exactly as a prom-client histogram: `_bucket{le}` (cumulative, with +Inf), `_sum`,
 * `_count`, per label set in the order first observed or zeroed. Without `labelNames` it has one
 * series from the start; with them, `labels()` gives a series' observer (keep it: the look-up
 * joins the values), `zero()` makes a series exist at 0.
 */
export class BulkHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #bounds: readonly number[];
  readonly #labelNames: readonly string[];
  #series = new Map<string, BulkSeries>();
  readonly #unlabelled: BulkSeries | null;

  constructor(o: {
    name: string;
    help: string;
    buckets: readonly number[];
    labelNames?: readonly string[];
    registers: readonly Registry[];
  }) {
    this.name = o.name;
    this.help = o.help;
    this.#bounds = [...o.buckets].sort((a, b) => a - b);
    this.#labelNames = o.labelNames ?? [];
    this.#unlabelled = this.#labelNames.length === 0 ? this.#seriesOf({}) : null;
    // Registry.registerMetric takes any object with name, help, type and get(); prom-client's types
    // only name its own classes.
    for (const r of o.registers) r.registerMetric(this as unknown as Parameters<Registry["registerMetric"]>[0]);
  }

  /** Observes into the one series of a histogram without labels. */
  observe(value: number): void {
    if (!this.#unlabelled) throw new Error(`${this.name} has labels (${this.#labelNames.join(", ")}): use labels()`);
    this.#unlabelled.observe(value);
  }

  /** The series of these label values (created at 0 if new), to observe into. */
  labels(labels: Record<string, string>): { observe(value: number): void } {
    return this.#seriesOf(labels);
  }

  /** Makes the series exist at 0 (as prom-client's zero(): an existing one is set back to 0). */
  zero(labels: Record<string, string>): void {
    const key = this.#keyOf(labels);
    this.#series.set(key, new BulkSeries({ ...labels }, this.#bounds));
  }

  #keyOf(labels: Record<string, string>): string {
    const keys = Object.keys(labels);
    for (const k of keys) {
      if (!this.#labelNames.includes(k)) throw new Error(`${this.name} has no label "${k}"`);
    }
    return this.#labelNames.map((n) => `${labels[n] ?? ""}`).join("\u0000");
  }

  #seriesOf(labels: Record<string, string>): BulkSeries {
    const key = this.#keyOf(labels);
    let series = this.#series.get(key);
    if (!series) {
      series = new BulkSeries({ ...labels }, this.#bounds);
      this.#series.set(key, series);
    }
    return series;
  }

  /** What prom-client's Histogram.getForPromString() gives the registry: a series' labels as sharedLabels. */
  getForPromString() {
    const values: ExportedValue[] = [];
    for (const s of this.#series.values()) {
      const shared = s.labels;
      const bucket = `${this.name}_bucket`;
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += s.counts[i] as number;
        values.push({ labels: { le }, sharedLabels: shared, value: cumulative, metricName: bucket });
      });
      values.push({ labels: { le: "+Inf" }, sharedLabels: shared, value: s.count, metricName: bucket });
      values.push({ labels: {}, sharedLabels: shared, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels: shared, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** As prom-client's Histogram.get(): each value's labels are its own followed by its series'. */
  get() {
    const data = this.getForPromString();
    return {
      ...data,
      values: data.values.map(({ labels, sharedLabels, value, metricName }) => ({
        labels: { ...labels, ...sharedLabels },
        value,
        metricName,
      })),
    };
  }

  /** Empties it: a histogram without labels keeps its one series, at 0; one with labels has none. */
  reset(): void {
    this.#series = new Map();
    if (this.#unlabelled) {
      this.#unlabelled.counts.fill(0);
      this.#unlabelled.sum = 0;
      this.#unlabelled.count = 0;
      this.#series.set("", this.#unlabelled);
    }
  }
}

/**
 * Increments of a prom-client Counter kept as plain numbers until the counter is read: its
 * collect(), which prom-client calls before every read, adds them (`flushInto`). Its inc() (a
 * labelled child's too) validates and hashes the labels on every call (≈ 0.2 µs; the edge counts
 * every request), so hot paths count here. Each label set's count keeps the counter's semantics;
 * only when it is added moves, to the next scrape.
 */
export class CounterBuffer<L extends string> {
  readonly #counts = new Map<string, PendingCount<L>>();

  /** The count of these label values (keep it: the look-up joins the values). */
  labels(labels: Partial<Record<L, string>>): { inc(n?: number): void } {
    const key = Object.values(labels).join("\u0000");
    let count = this.#counts.get(key);
    if (!count) {
      count = new PendingCount(labels);
      this.#counts.set(key, count);
    }
    return count;
  }

  /** Adds the pending counts to `counter` (call it from the counter's collect()). */
  flushInto(counter: Counter<L>): void {
    for (const count of this.#counts.values()) {
      // Counted at all, even 0: prom-client's inc(labels, 0) makes the series exist.
      if (!count.counted) continue;
      counter.inc(count.labels, count.n);
      count.n = 0;
      count.counted = false;
    }
  }
}

class PendingCount<L extends string> {
  n = 0;
  counted = false;
  constructor(readonly labels: Partial<Record<L, string>>) {}
  inc(n = 1): void {
    this.n += n;
    this.counted = true;
  }
}
