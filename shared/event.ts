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
// The pattern v.uuid() checks with, for the fast path below.
import { UUID_REGEX } from "valibot";

/**
 * The contract's version. 2 added `sent_at` (the device's clock when it sent the event), from which
 * the edge derives the scan's instant on its own clock (`derived_at`). A client may say which version
 * it was written for (`schema_version` in the event, 1 when absent); the Kafka record always carries
 * the edge's, and the worker still reads version 1 records (written by an older edge).
 */
export const SCHEMA_VERSION = 2;
export const SCHEMA_VERSIONS = [1, 2] as const;

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
  // Every record the edge writes is already canonical (the worker's re-validation takes this
  // path), and most scanners send UTC: neither needs the regex or a Date.
  const utc = canonicalUtc(s);
  if (utc !== null) return utc;
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

const isDigit = (s: string, i: number) => {
  const c = s.charCodeAt(i);
  return c >= 48 && c <= 57;
};
const two = (s: string, i: number) => (s.charCodeAt(i) - 48) * 10 + s.charCodeAt(i + 1) - 48;

/**
 * The canonical form of `YYYY-MM-DDTHH:MM:SS[.f]Z` with 1-6 fraction digits (or none), upper-case
 * T and Z, a real date and a year from 1970: what canonicalTimestamp's general path makes of it
 * (in UTC, with no digit to truncate, the text only gains zeros). Null for anything else, which
 * takes the general path (and gets its error).
 */
export function canonicalUtc(s: string): string | null {
  const len = s.length;
  if (len < 20 || len > 27 || len === 21 || s.charCodeAt(len - 1) !== 90 /* Z */) return null;
  if (
    s.charCodeAt(4) !== 45 /* - */ ||
    s.charCodeAt(7) !== 45 ||
    s.charCodeAt(10) !== 84 /* T */ ||
    s.charCodeAt(13) !== 58 /* : */ ||
    s.charCodeAt(16) !== 58
  ) {
    return null;
  }
  for (const i of DATE_TIME_DIGITS) if (!isDigit(s, i)) return null;
  if (len > 20) {
    if (s.charCodeAt(19) !== 46 /* . */) return null;
    for (let i = 20; i < len - 1; i++) if (!isDigit(s, i)) return null;
  }
  const year = two(s, 0) * 100 + two(s, 2);
  const month = two(s, 5);
  const day = two(s, 8);
  const valid =
    year >= 1970 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysIn(year, month) &&
    two(s, 11) <= 23 &&
    two(s, 14) <= 59 &&
    two(s, 17) <= 59;
  if (!valid) return null;
  if (len === 27) return s;
  return `${s.slice(0, 19)}.${len === 20 ? "000000" : s.slice(20, len - 1).padEnd(6, "0")}Z`;
}
const DATE_TIME_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];

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

/** Why a flat attributes object cannot be stored as given, or null (checked before anything copies it). */
function attributesProblem(a: Record<string, unknown>): string | null {
  const keys = Object.keys(a);
  if (keys.length > MAX_ATTRIBUTES) return `at most ${MAX_ATTRIBUTES} keys`;
  for (const key of keys) {
    const where = `key ${JSON.stringify(key).slice(0, 80)}`;
    if (RESERVED_KEYS.has(key)) return `${where} is reserved; rename it`;
    if (key.length === 0) return "keys must not be empty";
    const keyProblem = textProblem(key);
    if (keyProblem) return `${where} ${keyProblem}`;
    const value = a[key];
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
    if (valueProblem) return `value of ${where} ${valueProblem}`;
  }
  if (Buffer.byteLength(JSON.stringify(a)) > MAX_ATTRIBUTES_JSON_BYTES) {
    return `at most ${MAX_ATTRIBUTES_JSON_BYTES} bytes as JSON`;
  }
  return null;
}

const isFlatObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);

/**
 * A flat object of string, finite number or boolean values. Checked on the object as received,
 * before anything copies it, so the reserved keys (which a copy would drop) are refused by name.
 */
const Attributes = v.pipe(
  v.custom<Record<string, unknown>>(isFlatObject, "must be a flat object of string, number or boolean values"),
  v.rawCheck<Record<string, unknown>>(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const problem = attributesProblem(dataset.value);
    if (problem) addIssue({ message: problem });
  }),
  v.transform((a) => a as Record<string, string | number | boolean>),
);

/** A QR code's id: also the Kafka key and the read side's path parameter. */
const QR_ID = /^[A-Za-z0-9._:-]{1,128}$/;
export const QrId = v.pipe(
  v.string("must be a string"),
  v.regex(QR_ID, "must be 1-128 characters of A-Z a-z 0-9 . _ : -"),
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

/** Each schema with a fast path (withFastPath, below) as it is without it. */
const schemaOnly = new WeakMap<object, v.GenericSchema>();

const versionField = v.picklist(SCHEMA_VERSIONS, `must be one of ${SCHEMA_VERSIONS.join(", ")}`);

const scanEvent = v.strictObject(
  {
    ...eventEntries,
    // The device's clock when it sent this request (set again on each retry): with received_at it
    // measures the device clock's offset (see derivedInstant).
    sent_at: v.optional(Timestamp),
    schema_version: v.optional(versionField),
  },
  objectMessage("an event must be a JSON object"),
);
export type ScanEvent = v.InferOutput<typeof scanEvent>;
/** What a scanner sends. */
export const ScanEventSchema: typeof scanEvent = withFastPath(scanEvent, (input) => fastPaths.event(input));

/** What the edge writes to Kafka: the event plus what the server adds. */
const scanRecord = v.strictObject(
  {
    ...eventEntries,
    sent_at: v.optional(Timestamp),
    // The scan's instant on the edge's clock (absent from version 1 records: scanned_at, then).
    derived_at: v.optional(Timestamp),
    received_at: Timestamp,
    client_ip: v.nullable(v.pipe(v.string(), v.check(isStorableIp, "must be an IPv4 or IPv6 address without a zone"))),
    schema_version: versionField,
  },
  objectMessage("a record must be a JSON object"),
);
export type ScanRecord = v.InferOutput<typeof scanRecord>;
export const ScanRecordSchema: typeof scanRecord = withFastPath(scanRecord, (input) => fastPaths.record(input));

// The fast path. Validating through the schemas above cost 1.5-2 µs per event (the edge validates
// each event, the worker each record again); the same rules in plain code cost a fraction of
// that. It only ever accepts: whatever it is unsure of (any problem, an unknown or undefined
// field, an object not made by JSON.parse) goes through the schema, which makes the same output or
// the errors. test/unit/event-schema.test.ts checks both ways agree on generated events.

/**
 * `schema` with `fast` tried first: `fast` returns the output the schema would for an input it
 * accepts, or undefined for the schema to decide. Every user of the schema (v.safeParse, nesting)
 * goes through it.
 */
function withFastPath<S extends v.GenericSchema>(schema: S, fast: (input: unknown) => v.InferOutput<S> | undefined): S {
  const full = schema["~run"];
  schemaOnly.set(schema, { ...schema, "~run": full });
  (schema as { "~run": S["~run"] })["~run"] = function run(this: S, dataset, config) {
    const output = fast(dataset.value);
    if (output === undefined) return full.call(this, dataset, config);
    const done = dataset as unknown as v.SuccessDataset<v.InferOutput<S>>;
    done.typed = true;
    done.value = output;
    return done;
  };
  return schema;
}

/** The schema without its fast path (for the tests that hold the two to the same answers). */
export function withoutFastPath<S extends v.GenericSchema>(schema: S): S {
  return (schemaOnly.get(schema) as S | undefined) ?? schema;
}

/** The fast paths alone: an output, or undefined where the schema decides (for the tests). */
export const fastPaths = {
  event: (input: unknown) => fastEvent(input),
  record: (input: unknown) => fastRecord(input),
};

/** A plain object (JSON.parse makes only these): `in` and `for...in` see its own keys alone. */
const isPlainObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && Object.getPrototypeOf(x) === Object.prototype;

function keyCount(o: Record<string, unknown>): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}

const optionalText = (x: unknown, min: number, max: number): x is string =>
  typeof x === "string" && x.length >= min && x.length <= max && textProblem(x) === null;

const inRange = (x: unknown, min: number, max: number): x is number =>
  typeof x === "number" && Number.isFinite(x) && x >= min && x <= max;

/** The fields events and records share; `known` counts those present. Undefined: ask the schema. */
type Common = Omit<ScanEvent, "sent_at" | "schema_version">;
function fastCommon(input: Record<string, unknown>): { common: Common; known: number } | undefined {
  const { event_id, qr_id, scanned_at, scanner_id, location, user_agent, attributes } = input;
  if (typeof event_id !== "string" || !UUID_REGEX.test(event_id)) return undefined;
  if (typeof qr_id !== "string" || !QR_ID.test(qr_id)) return undefined;
  if (typeof scanned_at !== "string") return undefined;
  const scannedAt = canonicalTimestamp(scanned_at);
  if (typeof scannedAt !== "string") return undefined;
  const common: Common = { event_id: event_id.toLowerCase(), qr_id, scanned_at: scannedAt };
  let known = 3;
  if (scanner_id !== undefined) {
    if (!optionalText(scanner_id, 1, 128)) return undefined;
    common.scanner_id = scanner_id;
    known++;
  }
  if (location !== undefined) {
    if (!isPlainObject(location)) return undefined;
    const { lat, lon, accuracy_m } = location;
    if (!inRange(lat, -90, 90) || !inRange(lon, -180, 180)) return undefined;
    common.location = { lat, lon };
    if (accuracy_m !== undefined) {
      if (!inRange(accuracy_m, 0, Number.POSITIVE_INFINITY)) return undefined;
      common.location.accuracy_m = accuracy_m;
    }
    if (keyCount(location) !== (accuracy_m === undefined ? 2 : 3)) return undefined;
    known++;
  }
  if (user_agent !== undefined) {
    if (!optionalText(user_agent, 0, 512)) return undefined;
    common.user_agent = user_agent;
    known++;
  }
  if (attributes !== undefined) {
    if (!isFlatObject(attributes) || attributesProblem(attributes) !== null) return undefined;
    common.attributes = attributes as Record<string, string | number | boolean>;
    known++;
  }
  return { common, known };
}

/** An optional timestamp field: its canonical text, null when absent, undefined when the schema must decide. */
function fastOptionalTimestamp(x: unknown): string | null | undefined {
  if (x === undefined) return null;
  if (typeof x !== "string") return undefined;
  const t = canonicalTimestamp(x);
  return typeof t === "string" ? t : undefined;
}

const isVersion = (x: unknown): x is (typeof SCHEMA_VERSIONS)[number] => x === 1 || x === 2;

function fastEvent(input: unknown): ScanEvent | undefined {
  if (!isPlainObject(input)) return undefined;
  const shared = fastCommon(input);
  if (shared === undefined) return undefined;
  const event: ScanEvent = shared.common;
  let known = shared.known;
  const sentAt = fastOptionalTimestamp(input.sent_at);
  if (sentAt === undefined) return undefined;
  if (sentAt !== null) {
    event.sent_at = sentAt;
    known++;
  }
  const { schema_version } = input;
  if (schema_version !== undefined) {
    if (!isVersion(schema_version)) return undefined;
    event.schema_version = schema_version;
    known++;
  }
  // Anything else (an unknown field, one present but undefined) is the schema's to name.
  return keyCount(input) === known ? event : undefined;
}

function fastRecord(input: unknown): ScanRecord | undefined {
  if (!isPlainObject(input)) return undefined;
  const shared = fastCommon(input);
  if (shared === undefined) return undefined;
  const { received_at, client_ip, schema_version } = input;
  if (typeof received_at !== "string" || !isVersion(schema_version)) return undefined;
  const receivedAt = canonicalTimestamp(received_at);
  if (typeof receivedAt !== "string") return undefined;
  if (client_ip !== null && (typeof client_ip !== "string" || !isStorableIp(client_ip))) return undefined;
  const sentAt = fastOptionalTimestamp(input.sent_at);
  const derivedAt = fastOptionalTimestamp(input.derived_at);
  if (sentAt === undefined || derivedAt === undefined) return undefined;
  // In the schema's order: the shared fields, sent_at, derived_at, then what the edge adds.
  const record = shared.common as ScanRecord;
  let known = shared.known + 3;
  if (sentAt !== null) {
    record.sent_at = sentAt;
    known++;
  }
  if (derivedAt !== null) {
    record.derived_at = derivedAt;
    known++;
  }
  record.received_at = receivedAt;
  record.client_ip = client_ip;
  record.schema_version = schema_version;
  return keyCount(input) === known ? record : undefined;
}

/**
 * The Kafka record for an accepted event: what the edge writes and the worker reads. A client
 * address Postgres could not store (an IPv6 zone from a proxy's header) is recorded as unknown.
 * `derivedAt`: the scan's instant on the edge's clock (derivedInstant); the client's own
 * schema_version is not kept (the record's is the edge's).
 */
export function toScanRecord(
  event: ScanEvent,
  receivedAt: string,
  clientIp: string | null,
  derivedAt: string = event.scanned_at,
): ScanRecord {
  // One object per event (the edge's hot path): the client's schema_version, if any, is
  // overwritten by the edge's below.
  return {
    ...event,
    derived_at: derivedAt,
    received_at: receivedAt,
    client_ip: clientIp !== null && isStorableIp(clientIp) ? clientIp : null,
    schema_version: SCHEMA_VERSION,
  };
}

/**
 * The scan's instant on the edge's clock: scanned_at moved by the device clock's offset, measured
 * as received_at - sent_at (so it also holds the request's transit time, milliseconds on a working
 * network). Without sent_at, scanned_at as given. An offset larger than `maxSkewMs` means a clock
 * nobody set (a gun back from a week without battery): refused, as no correction can be trusted.
 * Returns the derived instant in ms and its canonical text (scanned_at's microseconds kept), or why not.
 */
export function derivedInstant(
  event: Pick<ScanEvent, "scanned_at" | "sent_at">,
  receivedMs: number,
  maxSkewMs: number,
): { ms: number; text: string } | { error: FieldError } {
  const scannedMs = Date.parse(event.scanned_at);
  if (event.sent_at === undefined) return { ms: scannedMs, text: event.scanned_at };
  const offset = receivedMs - Date.parse(event.sent_at);
  if (Math.abs(offset) > maxSkewMs) {
    const hours = (Math.abs(offset) / 3_600_000).toFixed(1);
    const way = offset < 0 ? "ahead of" : "behind";
    return {
      error: {
        path: "sent_at",
        message: `says the device clock is ${hours} hours ${way} the server's, more than the ${Math.round(maxSkewMs / 3_600_000)} hours the edge corrects: set the device's clock`,
      },
    };
  }
  const ms = scannedMs + offset;
  if (ms < MIN_INSTANT_MS || ms > MAX_INSTANT_MS) {
    return { error: { path: "scanned_at", message: "corrected by the device clock's offset, is out of range" } };
  }
  return { ms, text: `${timestampOf(ms).slice(0, 23)}${event.scanned_at.slice(23, 26)}Z` };
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

/**
 * The edge's time window for a scan's instant (derivedInstant's ms): not more than `maxFutureMs`
 * ahead of now, not older than `maxAgeMs`.
 */
export function scannedAtWindowError(at: number, now: number, maxAgeMs: number, maxFutureMs: number) {
  if (at > now + maxFutureMs) return `is more than ${Math.round(maxFutureMs / 60_000)} minutes in the future`;
  if (at < now - maxAgeMs) return `is older than the accepted window of ${Math.round(maxAgeMs / 3_600_000)} hours`;
  return null;
}
