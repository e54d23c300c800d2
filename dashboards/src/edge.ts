// The edge (POST /v1/scans): requests/s, latency against the SLO thresholds, errors by status,
// events accepted and rejected by reason, and the Kafka producer behind it (server/metrics.ts).
import {
  BY_PROCESS,
  PROCESS_LEGEND,
  newDashboard,
  quantile,
  rate,
  row,
  shareUnder,
  stat,
  timeseries,
} from "./panels.ts";

const SCANS = 'route="/v1/scans"';

export function edgeDashboard() {
  return newDashboard(
    "qrscan-edge",
    "qrscan-ingest / Edge",
    "POST /v1/scans: traffic, latency against the SLO thresholds (40 ms aim, 400 ms SLO), errors, accepted and rejected events, the Kafka producer.",
  )
    .withRow(row("Traffic and errors"))
    .withPanel(
      stat({
        title: "Scan requests/s",
        description: "POST /v1/scans answered per second, any status.",
        unit: "reqps",
        queries: [{ expr: `sum(${rate(`http_requests_total{${SCANS}}`)})`, legend: "requests/s" }],
      }),
    )
    .withPanel(
      stat({
        title: "p95 latency (SLO 400 ms)",
        description: "95th percentile of POST /v1/scans duration. SLO: 95% within 400 ms; our aim: within 40 ms.",
        unit: "s",
        thresholdLines: [0.04, 0.4],
        queries: [{ expr: quantile(0.95, "http_request_duration_seconds", SCANS), legend: "p95" }],
      }),
    )
    .withPanel(
      stat({
        title: "5xx ratio (alert > 1%)",
        description: "Share of POST /v1/scans answered 5xx (EdgeErrorRatioHigh pages above 1% for 5 min).",
        unit: "percentunit",
        thresholdLines: [0.005, 0.01],
        queries: [
          {
            expr: `sum(${rate(`http_requests_total{${SCANS}, status=~"5.."}`)}) / sum(${rate(`http_requests_total{${SCANS}}`)})`,
            legend: "5xx ratio",
          },
        ],
      }),
    )
    .withPanel(
      stat({
        title: "Events accepted/s",
        description: "Scan events the edge accepted and handed to Kafka, per second.",
        unit: "ops",
        queries: [{ expr: `sum(${rate('scan_events_total{outcome="accepted"}')})`, legend: "accepted/s" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Requests/s by route and status",
        description: "http_requests_total by route (the matched pattern, or unmatched) and status.",
        unit: "reqps",
        stacked: true,
        queries: [{ expr: `sum by (route, status) (${rate("http_requests_total")})`, legend: "{{route}} {{status}}" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Scan errors/s by status",
        description:
          "POST /v1/scans answered 4xx (the client's mistake: 400 invalid, 401 auth, 413 too large, 415 media type) or 5xx (503 back-pressure or Kafka unavailable, 500 a bug or Kafka refusing the events).",
        unit: "reqps",
        queries: [
          {
            expr: `sum by (status) (${rate(`http_requests_total{${SCANS}, status=~"[45].."}`)})`,
            legend: "{{status}}",
          },
        ],
      }),
    )
    .withPanel(
      timeseries({
        title: "Rate-limited requests/s by scope",
        description:
          "429s (rate_limited_total): key = an API key over its event rate; ip = an address over its failed-authentication limit (alert AuthAddressRateLimited, runbook rate-limited-address.md). A 4xx, so the error-ratio panels and alerts do not see them.",
        unit: "reqps",
        queries: [{ expr: `sum by (scope) (${rate("rate_limited_total")})`, legend: "{{scope}}" }],
      }),
    )
    .withRow(row("Latency"))
    .withPanel(
      timeseries({
        title: "Scan request latency percentiles",
        description:
          "http_request_duration_seconds for POST /v1/scans. Dashed lines: our aim (40 ms) and the latency SLO (400 ms, docs/slo.md).",
        unit: "s",
        thresholdLines: [0.04, 0.4],
        queries: [0.5, 0.95, 0.99].map((q) => ({
          expr: quantile(q, "http_request_duration_seconds", SCANS),
          legend: `p${q * 100}`,
        })),
      }),
    )
    .withPanel(
      timeseries({
        title: "Share of scan requests within 40 ms and 400 ms",
        description:
          "From the le=0.04 and le=0.4 buckets: the latency SLO wants 95% within 400 ms (dashed line); our aim is 95% within 40 ms.",
        unit: "percentunit",
        max: 1,
        thresholdLines: [0.95],
        queries: [
          { expr: shareUnder("http_request_duration_seconds", "0.04", SCANS), legend: "within 40 ms" },
          { expr: shareUnder("http_request_duration_seconds", "0.4", SCANS), legend: "within 400 ms (SLO)" },
        ],
      }),
    )
    .withRow(row("Events"))
    .withPanel(
      timeseries({
        title: "Events accepted and rejected/s",
        description:
          "scan_events_total by outcome: an event is rejected when a field is invalid; the others are accepted.",
        unit: "ops",
        queries: [{ expr: `sum by (outcome) (${rate("scan_events_total")})`, legend: "{{outcome}}" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Events rejected/s by reason",
        description:
          "The first invalid field of each rejected event; unknown_field for a field the schema does not have, event for a non-object.",
        unit: "ops",
        stacked: true,
        queries: [{ expr: `sum by (reason) (${rate('scan_events_total{outcome="rejected"}')})`, legend: "{{reason}}" }],
      }),
    )
    .withRow(row("Kafka producer"))
    .withPanel(
      timeseries({
        title: "Kafka delivery latency",
        description: "From handing a request's events to the producer to Kafka acknowledging all of them.",
        unit: "s",
        width: 8,
        queries: [0.5, 0.95, 0.99].map((q) => ({
          expr: quantile(q, "kafka_delivery_duration_seconds"),
          legend: `p${q * 100}`,
        })),
      }),
    )
    .withPanel(
      timeseries({
        title: "Kafka delivery errors/s by code",
        description:
          "Requests whose events Kafka did not acknowledge, by librdkafka error code (the edge answers 5xx).",
        unit: "reqps",
        width: 8,
        queries: [{ expr: `sum by (code) (${rate("kafka_delivery_errors_total")})`, legend: "{{code}}" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Producer queue fill",
        description:
          "kafka_producer_queue_depth / kafka_producer_queue_capacity per server: past 100% the edge answers 503 (ProducerQueueNearFull pages above 80%).",
        unit: "percentunit",
        width: 8,
        min: 0,
        thresholdLines: [0.8],
        queries: [
          {
            expr: `max by (${BY_PROCESS}) (kafka_producer_queue_depth) / max by (${BY_PROCESS}) (kafka_producer_queue_capacity)`,
            legend: PROCESS_LEGEND,
          },
        ],
      }),
    );
}
