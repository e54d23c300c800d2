// The edge server's Prometheus metrics, and the middleware that records every request in them.
import type { MiddlewareHandler } from "hono";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { KafkaProducer } from "../shared/kafka/index.ts";

export function createServerMetrics(registry: Registry, producer: () => KafkaProducer | null) {
  return {
    requests: new Counter({
      name: "http_requests_total",
      help: "HTTP requests by route and status",
      labelNames: ["route", "status"] as const,
      registers: [registry],
    }),
    duration: new Histogram({
      name: "http_request_duration_seconds",
      help: "HTTP request duration by route",
      labelNames: ["route"] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    }),
    events: new Counter({
      name: "scan_events_total",
      help: "Scan events by outcome (accepted, rejected) and rejection reason (the first invalid field)",
      labelNames: ["outcome", "reason"] as const,
      registers: [registry],
    }),
    deliveryLatency: new Histogram({
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
    queueDepth: new Gauge({
      name: "kafka_producer_queue_depth",
      help: "Messages in the producer's queue or in flight to the broker",
      registers: [registry],
      collect() {
        this.set(producer()?.queueLength ?? 0);
      },
    }),
  };
}

export type ServerMetrics = ReturnType<typeof createServerMetrics>;

/**
 * Counts every request by route and status and times it by route. The route is the matched
 * pattern (e.g. /v1/qr/:qr_id/stats), or "unmatched" for any path no route serves (a 404), so
 * labels stay bounded whatever paths clients send. Labelled children
 * are cached: prom-client hashes the label object on every unbound call.
 */
export function observeRequests({
  requests,
  duration,
}: Pick<ServerMetrics, "requests" | "duration">): MiddlewareHandler {
  const counters = new Map<string, { inc(): void }>();
  const timers = new Map<string, { observe(seconds: number): void }>();
  return async function observeRequests(c, next) {
    const started = performance.now();
    await next();
    // With no route matched, routePath is the app-wide middleware's own pattern ("/*").
    const path = c.req.routePath;
    const route = !path || path === "/*" ? "unmatched" : path;
    const status = c.res.status;
    const key = `${route} ${status}`;
    let counter = counters.get(key);
    if (!counter) {
      counter = requests.labels({ route, status: String(status) });
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
