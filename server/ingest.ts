// POST /v1/scans: validate each event, add what the server knows, hand the accepted ones to Kafka
// and answer 202 only once Kafka acknowledged every one of them (acks=all, idempotent producer).
import { ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { KafkaError, type KafkaProducer, type ProducerMessage } from "bun-rdkafka";
import type { Context } from "hono";
import * as v from "valibot";
import { inTenant } from "../shared/api-keys.ts";
import {
  type FieldError,
  SCHEMA_VERSION,
  ScanEventSchema,
  derivedInstant,
  fieldErrors,
  scannedAtWindowError,
  timestampOf,
  toScanRecord,
} from "../shared/event.ts";
import { TRACING_OFF, type Tracing } from "../shared/tracing.ts";
import type { IngestAnswer } from "./answers.ts";
import { readEvents } from "./body.ts";
import { ApiError } from "./errors.ts";
import { type ServerMetrics, rejectionReason } from "./metrics.ts";

export interface IngestOptions {
  producer: KafkaProducer;
  metrics: ServerMetrics;
  topic: string;
  /** Which field keys the Kafka record (KAFKA_PARTITION_KEY); "none" or a missing field: no key. */
  partitionKey?: "qr_id" | "scanner_id" | "none";
  maxBodyBytes: number;
  maxEventsPerRequest: number;
  /** The accepted window of a scan's instant (derived_at), back and ahead of now. */
  maxAgeMs: number;
  maxFutureMs: number;
  /** The largest device clock offset (received_at - sent_at) the edge corrects (CLOCK_SKEW_MAX_HOURS). */
  maxClockSkewMs: number;
  retryAfterSeconds: number;
  clientIp: (c: Context) => string | null;
  /** The 403 for an event whose qr_id is outside the principal's tenant (server/auth.ts). */
  tenantDenied: (c: Context, qrId: string, index: number) => Error;
  /** Called with the request's event count once the body is parsed (the rate limit's charge); may throw a 429. */
  onEvents?: (c: Context, events: number) => void;
  /** Off: no spans, and the client's traceparent goes into the Kafka headers unchanged. */
  tracing?: Tracing;
  /**
   * Called once per request whose events Kafka did not take for a retriable reason (answered 503).
   * A non-retriable error is thrown instead, and app.onError logs it and answers 500.
   */
  onRetriableDeliveryError?: (error: KafkaError, c: Context) => void;
}

export interface Rejection {
  index: number;
  errors: FieldError[];
}

export function ingestHandler(o: IngestOptions) {
  const tracing = o.tracing ?? TRACING_OFF;
  const retryAfter = { "Retry-After": String(o.retryAfterSeconds) };
  const unavailable = (message: string) => new ApiError(503, message, { headers: retryAfter });

  // librdkafka's fatal state: no send can succeed until a restart (/health fails meanwhile). It was
  // logged once when raised, so the requests it refuses are not logged again.
  const producerFailed = (fatal: KafkaError) =>
    new ApiError(
      500,
      `events not stored: the Kafka producer failed permanently (${fatal.message}); this server must be restarted`,
    );

  const accepted = o.metrics.eventCounts.labels({ outcome: "accepted", reason: "" });
  const deliveryLatency = o.metrics.deliveryLatency;
  const schemaVersion = String(SCHEMA_VERSION);

  // The request's SERVER span is traceRequests' (server/tracing.ts); the send gets a PRODUCER
  // span, whose context goes into every message's traceparent header. With tracing off, the
  // client's traceparent is forwarded unchanged and no span is made.
  const partitionKey = o.partitionKey ?? "none";
  return async function ingest(c: Context): Promise<Response> {
    const fatal = o.producer.fatalError;
    if (fatal) throw producerFailed(fatal);
    // Fail fast while the broker is unreachable: no unbounded waiting, the client retries.
    if (!o.producer.connected) throw unavailable("Kafka is unavailable; retry later");

    const raw = await readEvents(c.req.raw, { maxBytes: o.maxBodyBytes, maxEvents: o.maxEventsPerRequest });
    o.onEvents?.(c, raw.length);

    const now = Date.now();
    // Canonical already, so the worker's validation of it takes the fast path.
    const receivedAt = timestampOf(now);
    const clientIp = o.clientIp(c);
    const traceparent = tracing.enabled ? undefined : c.req.header("traceparent");
    // Every message carries the request's id, so a worker's lines about it name the request.
    const request_id: string = c.get("requestId");
    // A tenant's key may only send its own QR ids: one such event refuses the whole request (403),
    // before anything is sent, so a batch is never half accepted for a permission problem.
    const qrPrefix = c.get("principal")?.qrPrefix ?? null;
    const messages: ProducerMessage[] = [];
    const rejected: Rejection[] = [];
    for (let index = 0; index < raw.length; index++) {
      const result = v.safeParse(ScanEventSchema, raw[index]);
      let errors: FieldError[] | null = null;
      let derivedAt = "";
      if (!result.success) errors = fieldErrors(result.issues);
      else {
        const derived = derivedInstant(result.output, now, o.maxClockSkewMs);
        if ("error" in derived) errors = [derived.error];
        else {
          const window = scannedAtWindowError(derived.ms, now, o.maxAgeMs, o.maxFutureMs);
          if (window) errors = [{ path: "scanned_at", message: window }];
          derivedAt = derived.text;
        }
      }
      if (errors) {
        rejected.push({ index, errors });
        o.metrics.events.inc({ outcome: "rejected", reason: rejectionReason(errors[0]?.path) });
        continue;
      }
      const event = (result as v.SafeParseResult<typeof ScanEventSchema> & { success: true }).output;
      if (qrPrefix !== null && !inTenant(event.qr_id, qrPrefix)) {
        throw o.tenantDenied(c, event.qr_id, index);
      }
      const headers: Record<string, string> = {
        event_id: event.event_id,
        schema_version: schemaVersion,
        request_id,
      };
      if (traceparent) headers.traceparent = traceparent;
      messages.push({
        topic: o.topic,
        key: partitionKey === "qr_id" ? event.qr_id : partitionKey === "none" ? undefined : event.scanner_id,
        value: JSON.stringify(toScanRecord(event, receivedAt, clientIp, derivedAt)),
        headers,
      });
    }

    // The answers' shape is server/answers.ts's, the OpenAPI document's.
    if (messages.length === 0) return c.json({ accepted: 0, rejected, request_id } satisfies IngestAnswer, 400);

    const span = tracing.enabled ? startSendSpan(c, messages) : null;
    const started = performance.now();
    try {
      await o.producer.send(messages);
    } catch (error) {
      span?.recordException(error as Error);
      span?.setStatus({ code: SpanStatusCode.ERROR });
      o.metrics.deliveryErrors.inc({ code: error instanceof KafkaError ? error.code : "UNKNOWN" });
      if (error instanceof KafkaError && error.retriable) {
        o.onRetriableDeliveryError?.(error, c);
        // Some events may have been stored: the client retries with the same event_ids and the
        // worker's unique key makes the replay a no-op.
        throw unavailable(`events not stored (${error.code}); retry the whole request`);
      }
      if (error === o.producer.fatalError) throw producerFailed(error as KafkaError);
      // Non-retriable (UNKNOWN_TOPIC, FATAL, CONFIG, a broker's permanent refusal...): a retry
      // cannot succeed. app.onError logs it once and answers 500 with the request id.
      throw error;
    } finally {
      span?.end();
    }
    deliveryLatency.observe((performance.now() - started) / 1000);
    accepted.inc(messages.length);
    return c.json({ accepted: messages.length, rejected, request_id } satisfies IngestAnswer, 202);
  };

  /** The PRODUCER span of one request's send, child of its SERVER span; the messages carry its context. */
  function startSendSpan(c: Context, messages: ProducerMessage[]): Span {
    const server = c.get("span");
    const span = tracing.tracer.startSpan(
      `send ${o.topic}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          "messaging.system": "kafka",
          "messaging.operation.type": "send",
          "messaging.operation.name": "send",
          "messaging.destination.name": o.topic,
          "messaging.batch.message_count": messages.length,
        },
      },
      server ? trace.setSpan(ROOT_CONTEXT, server) : ROOT_CONTEXT,
    );
    const traceparent = tracing.traceparent(span);
    if (traceparent) for (const m of messages) (m.headers as Record<string, string>).traceparent = traceparent;
    return span;
  }
}
