// The edge server's Prometheus metrics.
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
