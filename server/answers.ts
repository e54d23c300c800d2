// The edge's answers as valibot schemas: the one source of the OpenAPI document's answer bodies and
// headers (server/openapi.ts) and of the handlers' answer types, so the document, the code and the
// live test (test/integration/openapi-live.test.ts, which validates real answers against these)
// cannot disagree. The request side's schema is the edge's own (shared/event.ts ScanEventSchema).
import * as v from "valibot";

const count = v.pipe(v.number(), v.integer(), v.minValue(0));
const uuid = v.pipe(v.string(), v.uuid());
const seconds = v.pipe(v.string(), v.regex(/^\d+$/));

/** One problem with one field of one event (or of the stats query). */
export const FieldErrorSchema = v.strictObject({
  path: v.pipe(
    v.string(),
    v.description('Dotted path of the field, e.g. "location.lat"; "(event)" for the event itself.'),
  ),
  message: v.string(),
});

/** An event refused for good: its index in the request body and why. */
export const RejectionSchema = v.strictObject({
  index: v.pipe(count, v.description("Position of the event in the body (0-based: array index or NDJSON event)")),
  errors: v.pipe(v.array(FieldErrorSchema), v.minLength(1)),
});

/** 202 (some accepted) and 400 (none valid): the accepted events are durable, the rejected final. */
export const IngestAnswerSchema = v.strictObject({
  accepted: v.pipe(count, v.description("Events stored durably (Kafka acknowledged every one)")),
  rejected: v.pipe(v.array(RejectionSchema), v.description("Events refused for good; do not resend them as they are")),
  request_id: uuid,
});

/** Every other error answer (server/errors.ts): one message, per-field problems for the stats query. */
export const ErrorAnswerSchema = v.strictObject({
  error: v.pipe(v.string(), v.description("What went wrong and what to do")),
  errors: v.optional(v.array(FieldErrorSchema)),
  request_id: uuid,
});

/** GET /v1/qr/{qr_id}/stats. */
export const StatsAnswerSchema = v.strictObject({
  qr_id: v.string(),
  interval: v.picklist(["minute", "hour", "day"]),
  from: v.pipe(v.string(), v.isoTimestamp()),
  to: v.pipe(v.string(), v.isoTimestamp()),
  total: count,
  buckets: v.array(v.strictObject({ start: v.pipe(v.string(), v.isoTimestamp()), count })),
  minute_counts_from: v.optional(
    v.pipe(
      v.string(),
      v.isoTimestamp(),
      v.description(
        "Where minute counts start once retention pruned older ones (hours and days come from the rollup before it)",
      ),
    ),
  ),
});

/** GET /health and GET /ready: the state in a word or two; `reason` when the producer failed. */
export const ProbeAnswerSchema = v.strictObject({
  status: v.string(),
  reason: v.optional(v.string()),
});

/** The answer headers the document names, each as the edge writes it. */
export const AnswerHeaders = {
  "X-Request-Id": v.pipe(uuid, v.description("The server's id of this request, also the body's request_id")),
  "Retry-After": v.pipe(seconds, v.description("Seconds to wait before sending the same request again")),
  RateLimit: v.pipe(
    v.string(),
    v.regex(/^"(key|ip)";r=\d+;t=\d+$/),
    v.description('Tokens left (r) and seconds until the bucket refills (t), e.g. "key";r=950;t=1'),
  ),
  "RateLimit-Policy": v.pipe(
    v.string(),
    v.regex(/^"(key|ip)";q=\d+;w=\d+$/),
    v.description('The limit: q tokens (events; failed authentications for "ip") refilled in w seconds'),
  ),
  "Max-Batch-Events": v.pipe(
    seconds,
    v.description("The most events this key may send in one request: split the batch and resend (no Retry-After)"),
  ),
  Allow: v.pipe(v.string(), v.description("The methods the path serves")),
} as const;
export type AnswerHeader = keyof typeof AnswerHeaders;

export type FieldError = v.InferOutput<typeof FieldErrorSchema>;
export type IngestAnswer = v.InferOutput<typeof IngestAnswerSchema>;
export type ErrorAnswer = v.InferOutput<typeof ErrorAnswerSchema>;
export type StatsAnswer = v.InferOutput<typeof StatsAnswerSchema>;
export type ProbeAnswer = v.InferOutput<typeof ProbeAnswerSchema>;
