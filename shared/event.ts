// The scan event: one source of truth for the edge (validation of what scanners send) and the
// worker (validation of what it reads from Kafka). Unknown fields are rejected so typos surface.
//
// The rule: whatever this schema accepts, Postgres stores faithfully through the worker's encoding
// (same instant, same day partition, same string, same JSON). test/integration/event-roundtrip.test.ts proves it with a
// property test through the edge, Kafka and a worker into the real database, against its own model of these rules. So every check below mirrors a
// limit of a Postgres column type, not a taste:
// - timestamps: RFC 3339, real calendar dates, offsets within ±15:59 (timestamptz's limit), and an
//   instant from 1970-01-01 to 9999-12-31 UTC; normalised to UTC with microseconds (the column's
//   precision; further digits are truncated) before anything derives the partition day from them;
// - strings: well-formed Unicode (no lone surrogates) and no U+0000 (text and jsonb store neither);
// - numbers: finite (double precision and jsonb numeric have no Infinity/NaN in JSON);
// - attribute keys: the JavaScript-reserved names are refused, as the object would not keep them.
import { isIP } from "node:net";
import * as v from "valibot";

export const SCHEMA_VERSION = 1;

const MAX_ATTRIBUTES = 32;
const MAX_ATTRIBUTES_JSON_BYTES = 4096;
const RESERVED_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** Text Postgres stores as given: well-formed UTF-16 (so valid UTF-8) and no NUL. */
export function textProblem(s: string): string | null {
  if (s.includes("\u0000")) return "must not contain the NUL character (\\u0000)";
  if (!s.isWellFormed()) return "must be valid Unicode (it contains a lone surrogate)";
  return null;
}
const storableText = v.rawCheck<string>(({ dataset, addIssue }) => {
  if (!dataset.typed) return;
  const problem = textProblem(dataset.value);
  if (problem) addIssue({ message: problem });
});

// YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM), as RFC 3339 section 5.6 (T and Z in either case).
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;
const MIN_INSTANT_MS = Date.UTC(1970, 0, 1);
const MAX_INSTANT_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
const pad = (n: number, width: number) => String(n).padStart(width, "0");

/**
 * Parses an RFC 3339 timestamp into its canonical UTC form `YYYY-MM-DDTHH:MM:SS.ffffffZ`, or
 * returns why it cannot be stored (`{error}`). Digits past the microsecond are truncated, so the
 * instant never moves into the next second (or day) the way rounding would.
 */
export function canonicalTimestamp(s: string): string | { error: string } {
  // Every record the edge writes is already canonical: the worker's re-validation takes this path.
  if (isCanonical(s)) return s;
  const m = RFC3339.exec(s);
  if (!m) return { error: "must be an RFC 3339 timestamp with an offset, e.g. 2026-01-31T12:00:00Z" };
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (month < 1 || month > 12) return { error: "has no such month" };
  if (day < 1 || day > daysIn(year, month)) return { error: "has no such day in that month" };
  if (hour > 23 || minute > 59 || second > 59)
    return { error: "has an hour, minute or second out of range (leap seconds are not accepted)" };
  let offsetMin = 0;
  if (!m[8]) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 15 || om > 59) return { error: "has a UTC offset out of range (at most ±15:59)" };
    offsetMin = (m[9] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  const micros = Number(`${m[7] ?? ""}000000`.slice(0, 6));
  // Date.UTC maps years 0-99 to 1900-1999; those are below the range anyway, so check the year first.
  if (year < 1969) return { error: "is before 1970-01-01T00:00:00Z" };
  const ms = Date.UTC(year, month - 1, day, hour, minute, second) - offsetMin * 60_000 + Math.floor(micros / 1000);
  if (ms < MIN_INSTANT_MS) return { error: "is before 1970-01-01T00:00:00Z" };
  if (ms > MAX_INSTANT_MS) return { error: "is after 9999-12-31T23:59:59.999999Z" };
  const d = new Date(ms);
  return (
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}T` +
    `${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.${pad(micros, 6)}Z`
  );
}

const CANONICAL = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const two = (s: string, i: number) => (s.charCodeAt(i) - 48) * 10 + s.charCodeAt(i + 1) - 48;

/** Already canonical and valid (in UTC, so the range check is the year's). */
function isCanonical(s: string): boolean {
  if (!CANONICAL.test(s)) return false;
  const year = two(s, 0) * 100 + two(s, 2);
  const month = two(s, 5);
  const day = two(s, 8);
  return (
    year >= 1970 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysIn(year, month) &&
    two(s, 11) <= 23 &&
    two(s, 14) <= 59 &&
    two(s, 17) <= 59
  );
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const daysIn = (year: number, month: number) =>
  month === 2 && isLeap(year) ? 29 : (DAYS_IN_MONTH[month - 1] as number);

const isLeap = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;

/** The canonical text of an instant given in milliseconds (microseconds always 000). */
export const timestampOf = (ms: number) => `${new Date(ms).toISOString().slice(0, 23)}000Z`;

/** The UTC day (YYYY-MM-DD) of a canonical timestamp: the scan_events partition it goes to. */
export const dayOf = (canonical: string) => canonical.slice(0, 10);

/** An RFC 3339 timestamp string, output in canonical UTC form (see canonicalTimestamp). */
const Timestamp = v.pipe(
  v.string("must be an RFC 3339 timestamp string"),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const parsed = canonicalTimestamp(dataset.value);
    if (typeof parsed === "string") return parsed;
    addIssue({ message: parsed.error });
    return NEVER;
  }),
);
export const RFC3339Timestamp = Timestamp;

/** An address Postgres' inet stores: IPv4 or IPv6, without an IPv6 zone (fe80::1%eth0). */
export const isStorableIp = (s: string) => isIP(s) !== 0 && !s.includes("%");

const finiteNumber = v.pipe(v.number("must be a number"), v.finite("must be a finite number"));

/**
 * A strict object's message: an unknown key is named, a missing one is "is required" (valibot
 * reports it at the key's path, received undefined), anything else (not an object; an array,
 * whose items would pass as keys) is `what`.
 */
const objectMessage = (what: string) => (issue: v.StrictObjectIssue) => {
  if (Array.isArray(issue.path?.at(-1)?.input)) return what;
  if (issue.expected === "never") return `unknown field ${issue.received}`;
  return issue.received === "undefined" && issue.path?.length ? "is required" : what;
};

const Location = v.strictObject(
  {
    lat: v.pipe(finiteNumber, v.minValue(-90, "must be >= -90"), v.maxValue(90, "must be <= 90")),
    lon: v.pipe(finiteNumber, v.minValue(-180, "must be >= -180"), v.maxValue(180, "must be <= 180")),
    accuracy_m: v.optional(v.pipe(finiteNumber, v.minValue(0, "must be >= 0"))),
  },
  objectMessage("must be an object {lat, lon, accuracy_m?}"),
);

/**
 * A flat object of string, finite number or boolean values. Checked on the object as received,
 * before anything copies it, so the reserved keys (which a copy would drop) are refused by name.
 */
const Attributes = v.pipe(
  v.custom<Record<string, unknown>>(
    (x) => typeof x === "object" && x !== null && !Array.isArray(x),
    "must be a flat object of string, number or boolean values",
  ),
  v.rawCheck<Record<string, unknown>>(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const keys = Object.keys(dataset.value);
    if (keys.length > MAX_ATTRIBUTES) return addIssue({ message: `at most ${MAX_ATTRIBUTES} keys` });
    for (const key of keys) {
      const where = `key ${JSON.stringify(key).slice(0, 80)}`;
      if (RESERVED_KEYS.has(key)) return addIssue({ message: `${where} is reserved; rename it` });
      if (key.length === 0) return addIssue({ message: "keys must not be empty" });
      const keyProblem = textProblem(key);
      if (keyProblem) return addIssue({ message: `${where} ${keyProblem}` });
      const value = dataset.value[key];
      const valueProblem =
        typeof value === "string"
          ? textProblem(value)
          : typeof value === "number"
            ? Number.isFinite(value)
              ? null
              : "must be a finite number"
            : typeof value === "boolean"
              ? null
              : "must be a string, number or boolean";
      if (valueProblem) return addIssue({ message: `value of ${where} ${valueProblem}` });
    }
    if (Buffer.byteLength(JSON.stringify(dataset.value)) > MAX_ATTRIBUTES_JSON_BYTES) {
      addIssue({ message: `at most ${MAX_ATTRIBUTES_JSON_BYTES} bytes as JSON` });
    }
  }),
  v.transform((a) => a as Record<string, string | number | boolean>),
);

/** A QR code's id: also the Kafka key and the read side's path parameter. */
export const QrId = v.pipe(
  v.string("must be a string"),
  v.regex(/^[A-Za-z0-9._:-]{1,128}$/, "must be 1-128 characters of A-Z a-z 0-9 . _ : -"),
);

const eventEntries = {
  // Lower case, as Postgres' uuid type returns it: the Kafka header, the row and the key agree.
  event_id: v.pipe(v.string("must be a UUID string"), v.uuid("must be a UUID"), v.toLowerCase()),
  qr_id: QrId,
  scanned_at: Timestamp,
  scanner_id: v.optional(
    v.pipe(v.string("must be a string"), v.minLength(1), v.maxLength(128, "at most 128 characters"), storableText),
  ),
  location: v.optional(Location),
  user_agent: v.optional(
    v.pipe(v.string("must be a string"), v.maxLength(512, "at most 512 characters"), storableText),
  ),
  attributes: v.optional(Attributes),
};

/** What a scanner sends. */
export const ScanEventSchema = v.strictObject(eventEntries, objectMessage("an event must be a JSON object"));
export type ScanEvent = v.InferOutput<typeof ScanEventSchema>;

/** What the edge writes to Kafka: the event plus what the server adds. */
export const ScanRecordSchema = v.strictObject(
  {
    ...eventEntries,
    received_at: Timestamp,
    client_ip: v.nullable(v.pipe(v.string(), v.check(isStorableIp, "must be an IPv4 or IPv6 address without a zone"))),
    schema_version: v.literal(SCHEMA_VERSION),
  },
  objectMessage("a record must be a JSON object"),
);
export type ScanRecord = v.InferOutput<typeof ScanRecordSchema>;

/**
 * The Kafka record for an accepted event: what the edge writes and the worker reads. A client
 * address Postgres could not store (an IPv6 zone from a proxy's header) is recorded as unknown.
 */
export function toScanRecord(event: ScanEvent, receivedAt: string, clientIp: string | null): ScanRecord {
  return {
    ...event,
    received_at: receivedAt,
    client_ip: clientIp !== null && isStorableIp(clientIp) ? clientIp : null,
    schema_version: SCHEMA_VERSION,
  };
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
