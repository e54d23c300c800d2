// The scan event: one source of truth for the edge (validation of what scanners send) and the
// worker (validation of what it reads from Kafka). Unknown fields are rejected so typos surface.
import * as v from "valibot";

export const SCHEMA_VERSION = 1;

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/i;
const MAX_ATTRIBUTES = 32;
const MAX_ATTRIBUTES_JSON_BYTES = 4096;

// Postgres text and jsonb cannot store U+0000: refuse it at the edge rather than fail a COPY later.
const NO_NUL = "must not contain the NUL character (\\u0000)";
const noNul = v.check((s: string) => !s.includes("\u0000"), NO_NUL);

const Timestamp = v.pipe(
  v.string("must be an RFC 3339 timestamp string"),
  v.regex(RFC3339, "must be an RFC 3339 timestamp with an offset, e.g. 2026-01-31T12:00:00Z"),
  v.check((s) => !Number.isNaN(Date.parse(s)), "is not a valid date"),
);

const Location = v.strictObject(
  {
    lat: v.pipe(v.number("must be a number"), v.minValue(-90, "must be >= -90"), v.maxValue(90, "must be <= 90")),
    lon: v.pipe(v.number("must be a number"), v.minValue(-180, "must be >= -180"), v.maxValue(180, "must be <= 180")),
    accuracy_m: v.optional(v.pipe(v.number("must be a number"), v.minValue(0, "must be >= 0"))),
  },
  "must be an object {lat, lon, accuracy_m?}",
);

const Attributes = v.pipe(
  v.record(
    v.string(),
    v.union(
      [v.pipe(v.string(), noNul), v.pipe(v.number(), v.finite()), v.boolean()],
      "values must be string, number or boolean",
    ),
    "must be a flat object of string, number or boolean values",
  ),
  v.check((a) => Object.keys(a).length <= MAX_ATTRIBUTES, `at most ${MAX_ATTRIBUTES} keys`),
  v.check((a) => Object.keys(a).every((k) => k.length > 0 && !k.includes("\u0000")), `keys ${NO_NUL} and not be empty`),
  v.check(
    (a) => Buffer.byteLength(JSON.stringify(a)) <= MAX_ATTRIBUTES_JSON_BYTES,
    `at most ${MAX_ATTRIBUTES_JSON_BYTES} bytes as JSON`,
  ),
);

/** A QR code's id: also the Kafka key and the read side's path parameter. */
export const QrId = v.pipe(
  v.string("must be a string"),
  v.regex(/^[A-Za-z0-9._:-]{1,128}$/, "must be 1-128 characters of A-Z a-z 0-9 . _ : -"),
);

export const RFC3339Timestamp = Timestamp;

const eventEntries = {
  event_id: v.pipe(v.string("must be a UUID string"), v.uuid("must be a UUID")),
  qr_id: QrId,
  scanned_at: Timestamp,
  scanner_id: v.optional(
    v.pipe(v.string("must be a string"), v.minLength(1), v.maxLength(128, "at most 128 characters"), noNul),
  ),
  location: v.optional(Location),
  user_agent: v.optional(v.pipe(v.string("must be a string"), v.maxLength(512, "at most 512 characters"), noNul)),
  attributes: v.optional(Attributes),
};

/** What a scanner sends. */
export const ScanEventSchema = v.strictObject(eventEntries, "an event must be a JSON object");
export type ScanEvent = v.InferOutput<typeof ScanEventSchema>;

/** What the edge writes to Kafka: the event plus what the server adds. */
export const ScanRecordSchema = v.strictObject({
  ...eventEntries,
  received_at: Timestamp,
  client_ip: v.nullable(v.pipe(v.string(), v.ip())),
  schema_version: v.literal(SCHEMA_VERSION),
});
export type ScanRecord = v.InferOutput<typeof ScanRecordSchema>;

/** The Kafka record for an accepted event: what the edge writes and the worker reads. */
export function toScanRecord(event: ScanEvent, receivedAt: string, clientIp: string | null): ScanRecord {
  return { ...event, received_at: receivedAt, client_ip: clientIp, schema_version: SCHEMA_VERSION };
}

export interface FieldError {
  path: string;
  message: string;
}

export function fieldErrors(issues: readonly v.BaseIssue<unknown>[]): FieldError[] {
  return issues.map((issue) => ({
    path: issue.path?.map((p) => String(p.key)).join(".") || "(event)",
    message: issue.message,
  }));
}

/** The edge's time window: not more than `maxFutureMs` ahead of now, not older than `maxAgeMs`. */
export function scannedAtWindowError(scannedAt: string, now: number, maxAgeMs: number, maxFutureMs: number) {
  const t = Date.parse(scannedAt);
  if (t > now + maxFutureMs) return `is more than ${Math.round(maxFutureMs / 60_000)} minutes in the future`;
  if (t < now - maxAgeMs) return `is older than the accepted window of ${Math.round(maxAgeMs / 3_600_000)} hours`;
  return null;
}
