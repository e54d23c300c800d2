// The edge server's Prometheus metrics, and the middleware that records every request in them.
// Every label value is from a closed set, and the series alerts and dashboards read exist from
// the start at 0 (an absent series would read as "no data", not as "no errors").
import { KAFKA_ERRORS, type KafkaProducer } from "bun-rdkafka";
import type { Context, MiddlewareHandler } from "hono";
import { Counter, Gauge, type Registry } from "prom-client";
import { ScanEventSchema } from "../shared/event.ts";
import { BulkHistogram, CounterBuffer } from "../shared/metrics.ts";
import { AUTH_FAILURE_REASONS } from "./principal.ts";

/** The answers each route gives, pre-initialised in http_requests_total. */
export const ROUTE_STATUSES: Record<string, readonly number[]> = {
  "/v1/scans": [202, 204, 400, 401, 403, 405, 413, 415, 429, 500, 503],
  "/v1/qr/:qr_id/stats": [200, 204, 400, 401, 403, 405, 429, 500, 503],
  "/health": [200, 405, 503],
  "/ready": [200, 405, 503],
  unmatched: [404],
};

/** scan_events_total's rejection reasons: the first invalid field, "unknown_field", or "event" (not an object). */
export const REJECTION_REASONS = [...Object.keys(ScanEventSchema.entries), "unknown_field", "event"] as const;

/** The reason label for a rejected event's first error path (client-chosen field names never become labels). */
export function rejectionReason(path: string | undefined): string {
  const field = path?.split(".")[0];
  if (!field || field === "(event)") return "event";
  return field in ScanEventSchema.entries ? field : "unknown_field";
}

/** HTTP latency buckets (seconds); 0.04 and 0.4 are the latency SLO's thresholds (docs/slo.md). */
export const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.04, 0.05, 0.1, 0.25, 0.4, 0.5, 1, 2.5, 10];

/**
 * `queueCapacity` is the producer's queue.buffering.max.messages (librdkafka's default 100000):
 * exported beside the queue depth so "queue near full" is a ratio.
 */
export function createServerMetrics(registry: Registry, producer: () => KafkaProducer | null, queueCapacity = 100_000) {
  // Counted per request: buffered, and added to the counters when they are read (CounterBuffer).
  const requestCounts = new CounterBuffer<"route" | "status">();
  const eventCounts = new CounterBuffer<"outcome" | "reason">();
  const metrics = {
    requests: new Counter({
      name: "http_requests_total",
      help: "HTTP requests by route and status",
      labelNames: ["route", "status"] as const,
      registers: [registry],
      collect() {
        requestCounts.flushInto(this);
      },
    }),
    requestCounts,
    // Observed per request: the bulk histogram keeps that to a few ns (prom-client's: ≈ 0.4 µs).
    duration: new BulkHistogram({
      name: "http_request_duration_seconds",
      help: "HTTP request duration by route",
      labelNames: ["route"] as const,
      buckets: HTTP_BUCKETS,
      registers: [registry],
    }),
    events: new Counter({
      name: "scan_events_total",
      help: "Scan events by outcome (accepted, rejected) and rejection reason (the first invalid field)",
      labelNames: ["outcome", "reason"] as const,
      registers: [registry],
      collect() {
        eventCounts.flushInto(this);
      },
    }),
    eventCounts,
    deliveryLatency: new BulkHistogram({
      name: "kafka_delivery_duration_seconds",
      help: "From handing a request's events to the producer to Kafka acknowledging all of them",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 10],
      registers: [registry],
    }),
    deliveryErrors: new Counter({
      name: "kafka_delivery_errors_total",
      help: "Requests whose events Kafka did not acknowledge, by error code",
      labelNames: ["code"] as const,
      registers: [registry],
    }),
    authFailures: new Counter({
      name: "auth_failures_total",
      help: "Requests refused by authentication (401), authorisation (403: scope, tenant) or for want of JWT keys (503), by reason",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: "rate_limited_total",
      help: "Requests answered 429 by a rate limit, by scope (key: an API key's event rate; ip: an address's failed authentications)",
      labelNames: ["scope"] as const,
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: "kafka_producer_queue_depth",
      help: "Messages in the producer's queue or in flight to the broker",
      registers: [registry],
      collect() {
        this.set(producer()?.queueLength ?? 0);
      },
    }),
  };
  new Gauge({
    name: "kafka_producer_queue_capacity",
    help: "Messages the producer's queue holds at most (queue.buffering.max.messages); past it, 503",
    registers: [registry],
  }).set(queueCapacity);
  for (const [route, statuses] of Object.entries(ROUTE_STATUSES)) {
    for (const status of statuses) metrics.requests.inc({ route, status: String(status) }, 0);
    metrics.duration.zero({ route });
  }
  metrics.events.inc({ outcome: "accepted", reason: "" }, 0);
  for (const scope of ["key", "ip"]) metrics.rateLimited.inc({ scope }, 0);
  for (const code of [...Object.keys(KAFKA_ERRORS), "UNKNOWN"]) metrics.deliveryErrors.inc({ code }, 0);
  for (const reason of AUTH_FAILURE_REASONS) metrics.authFailures.inc({ reason }, 0);
  for (const reason of REJECTION_REASONS) metrics.events.inc({ outcome: "rejected", reason }, 0);
  return metrics;
}

export type ServerMetrics = ReturnType<typeof createServerMetrics>;

/**
 * Counts every request by route and status and times it by route. The route is the matched
 * pattern (e.g. /v1/qr/:qr_id/stats), or "unmatched" for any path no route serves (a 404), so
 * labels stay bounded whatever paths clients send. Labelled children
 * are cached: prom-client hashes the label object on every unbound call.
 */
export function observeRequests({
  requestCounts,
  duration,
}: Pick<ServerMetrics, "requestCounts" | "duration">): MiddlewareHandler {
  const counters = new Map<string, { inc(): void }>();
  const timers = new Map<string, { observe(seconds: number): void }>();
  return async function observeRequests(c, next) {
    const started = performance.now();
    await next();
    const route = routeOf(c);
    const status = c.res.status;
    const key = `${route} ${status}`;
    let counter = counters.get(key);
    if (!counter) {
      counter = requestCounts.labels({ route, status: String(status) });
      counters.set(key, counter);
    }
    counter.inc();
    let timer = timers.get(route);
    if (!timer) {
      timer = duration.labels({ route });
      timers.set(route, timer);
    }
    timer.observe((performance.now() - started) / 1000);
  };
}

/** The request's route for labels and span names: the matched pattern, or "unmatched" (a 404). */
export function routeOf(c: Context): string {
  // With no route matched, routePath is the app-wide middleware's own pattern ("/*").
  const path = c.req.routePath;
  return !path || path === "/*" ? "unmatched" : path;
}
