// The scan event schema (shared/event.ts) against its contract in docs/api.md ("The event",
// "Accepted values"): the RFC 3339 parser's canonical form and each of its refusals, the Postgres
// limits on text, numbers and attributes, each field's message, unknown fields by name, the record
// the edge writes, and the edge's time window. In-process and fast: Stryker runs it per mutant.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import * as v from "valibot";
import {
  type ScanEvent,
  ScanEventSchema,
  ScanRecordSchema,
  canonicalTimestamp,
  canonicalUtc,
  dayOf,
  derivedInstant,
  fastPaths,
  fieldErrors,
  isStorableIp,
  scannedAtWindowError,
  textProblem,
  timestampOf,
  toScanRecord,
  withoutFastPath,
} from "../../shared/event.ts";

const EVENT = { event_id: "0f8fad5b-d9cb-469f-a165-70867728950e", qr_id: "QR-1", scanned_at: "2026-01-31T12:00:00Z" };
const NOT_RFC3339 = "must be an RFC 3339 timestamp with an offset, e.g. 2026-01-31T12:00:00Z";
const NO_MONTH = "has no such month";
const NO_DAY = "has no such day in that month";
const OUT_OF_RANGE = "has an hour, minute or second out of range (leap seconds are not accepted)";
const BAD_OFFSET = "has a UTC offset out of range (at most ±15:59)";
const BEFORE = "is before 1970-01-01T00:00:00Z";
const AFTER = "is after 9999-12-31T23:59:59.999999Z";
const NUL = "must not contain the NUL character (\\u0000)";
const SURROGATE = "must be valid Unicode (it contains a lone surrogate)";

/** The field errors of an invalid value, or the parsed output of a valid one. */
function check(schema: typeof ScanEventSchema | typeof ScanRecordSchema, input: unknown) {
  const r = v.safeParse(schema, input);
  return r.success ? { output: r.output } : { errors: fieldErrors(r.issues) };
}
const errorsOf = (input: unknown) => check(ScanEventSchema, input);
const withField = (field: string, value: unknown) => errorsOf({ ...EVENT, [field]: value });
const refused = (path: string, message: string) => ({ errors: [{ path, message }] });

describe("canonicalTimestamp: accepted values and their canonical UTC form", () => {
  const cases: [string, string][] = [
    ["2026-01-31T12:00:00Z", "2026-01-31T12:00:00.000000Z"],
    ["2026-01-31t12:00:00z", "2026-01-31T12:00:00.000000Z"],
    ["2026-01-31T12:00:00.1Z", "2026-01-31T12:00:00.100000Z"],
    ["2026-01-31T12:00:00.123456789Z", "2026-01-31T12:00:00.123456Z"],
    // Truncated, never rounded: the instant stays in its second, and on its day.
    ["2026-12-31T23:59:59.9999995Z", "2026-12-31T23:59:59.999999Z"],
    ["2026-01-31T12:00:00.5+01:00", "2026-01-31T11:00:00.500000Z"],
    ["2026-01-31T12:00:00+05:30", "2026-01-31T06:30:00.000000Z"],
    ["2026-01-31T12:00:00-05:30", "2026-01-31T17:30:00.000000Z"],
    ["2026-01-01T00:00:00+15:59", "2025-12-31T08:01:00.000000Z"],
    ["2026-01-01T00:00:00-15:59", "2026-01-01T15:59:00.000000Z"],
    ["2026-01-01T00:00:00+15:00", "2025-12-31T09:00:00.000000Z"],
    ["2026-01-01T00:00:00+00:59", "2025-12-31T23:01:00.000000Z"],
    ["2026-01-01T00:00:00-00:00", "2026-01-01T00:00:00.000000Z"],
    // Field boundaries, each alone.
    ["2026-01-01T23:00:00Z", "2026-01-01T23:00:00.000000Z"],
    ["2026-01-01T00:59:00Z", "2026-01-01T00:59:00.000000Z"],
    ["2026-01-01T00:00:59Z", "2026-01-01T00:00:59.000000Z"],
    ["2026-12-01T00:00:00Z", "2026-12-01T00:00:00.000000Z"],
    ["2026-01-31T00:00:00Z", "2026-01-31T00:00:00.000000Z"],
    ["2026-04-30T00:00:00Z", "2026-04-30T00:00:00.000000Z"],
    ["2026-02-28T00:00:00Z", "2026-02-28T00:00:00.000000Z"],
    ["2024-02-29T00:00:00Z", "2024-02-29T00:00:00.000000Z"],
    ["2000-02-29T00:00:00Z", "2000-02-29T00:00:00.000000Z"],
    ["2024-01-31T00:00:00Z", "2024-01-31T00:00:00.000000Z"],
    ["2024-03-31T00:00:00Z", "2024-03-31T00:00:00.000000Z"],
    // The range is the UTC instant's: a 1969 local time that is 1970 in UTC is in.
    ["1969-12-31T23:30:00-01:00", "1970-01-01T00:30:00.000000Z"],
    ["1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000000Z"],
    ["9999-12-31T23:59:59.999999+00:00", "9999-12-31T23:59:59.999999Z"],
    ["9999-12-31T23:59:59.9999999Z", "9999-12-31T23:59:59.999999Z"],
  ];
  for (const [input, canonical] of cases) {
    test(`${input} -> ${canonical}`, () => {
      expect(canonicalTimestamp(input)).toBe(canonical);
      // The canonical form is a fixed point: the worker re-validates what the edge wrote.
      expect(canonicalTimestamp(canonical)).toBe(canonical);
    });
  }

  test("canonical timestamps at the ends of the range are returned as they are", () => {
    for (const s of [
      "1970-01-01T00:00:00.000000Z",
      "9999-12-31T23:59:59.999999Z",
      "2024-02-29T23:59:59.999999Z",
      "2026-12-31T23:59:59.000001Z",
    ])
      expect(canonicalTimestamp(s)).toBe(s);
  });
});

describe("canonicalTimestamp: refusals, each with its reason", () => {
  const cases: [string, string][] = [
    ["2026-01-31 12:00:00Z", NOT_RFC3339],
    ["2026-01-31T12:00:00", NOT_RFC3339],
    ["2026-01-31T12:00:00+0530", NOT_RFC3339],
    ["2026-1-31T12:00:00Z", NOT_RFC3339],
    ["x2026-01-31T12:00:00Z", NOT_RFC3339],
    ["2026-01-31T12:00:00Zx", NOT_RFC3339],
    ["", NOT_RFC3339],
    ["2026-00-10T00:00:00Z", NO_MONTH],
    ["2026-13-10T00:00:00Z", NO_MONTH],
    ["2026-01-00T00:00:00Z", NO_DAY],
    ["2026-01-32T00:00:00Z", NO_DAY],
    ["2026-04-31T00:00:00Z", NO_DAY],
    ["2026-02-29T00:00:00Z", NO_DAY],
    ["2100-02-29T00:00:00Z", NO_DAY],
    ["2026-01-01T24:00:00Z", OUT_OF_RANGE],
    ["2026-01-01T00:60:00Z", OUT_OF_RANGE],
    ["2026-01-01T00:00:60Z", OUT_OF_RANGE],
    ["2026-01-01T00:00:00+16:00", BAD_OFFSET],
    ["2026-01-01T00:00:00-00:60", BAD_OFFSET],
    ["1969-12-31T23:59:59Z", BEFORE],
    // Date.UTC would read year 99 as 1999: the year is checked first.
    ["0099-06-01T00:00:00Z", BEFORE],
    ["1970-01-01T00:00:00+00:01", BEFORE],
    ["9999-12-31T23:59:59.999999-00:01", AFTER],
  ];
  for (const [input, error] of cases) {
    test(`${JSON.stringify(input)}: ${error}`, () => {
      expect(canonicalTimestamp(input)).toEqual({ error });
    });
  }

  test("a timestamp in the canonical shape is still checked field by field", () => {
    const cases: [string, string][] = [
      ["1969-12-31T23:59:59.999999Z", BEFORE],
      ["2026-00-15T12:00:00.000000Z", NO_MONTH],
      ["2026-13-15T12:00:00.000000Z", NO_MONTH],
      ["2026-01-00T12:00:00.000000Z", NO_DAY],
      ["2026-02-29T12:00:00.000000Z", NO_DAY],
      ["2100-02-29T12:00:00.000000Z", NO_DAY],
      ["2026-01-15T24:00:00.000000Z", OUT_OF_RANGE],
      ["2026-01-15T12:60:00.000000Z", OUT_OF_RANGE],
      ["2026-01-15T12:00:60.000000Z", OUT_OF_RANGE],
    ];
    for (const [input, error] of cases)
      expect({ input, out: canonicalTimestamp(input) }).toEqual({ input, out: { error } });
  });

  test("a string that only looks canonical (a non-digit in a digit's place, a tail, a short fraction) is not passed through", () => {
    const c = "2026-01-15T12:00:00.000000Z";
    for (const input of [
      `${c}${c}`,
      `${c}junk`,
      "::::-01-15T12:00:00.000000Z",
      "9-12-10T10:10:10.000000Z",
      "2026-1/-15T12:00:00.000000Z",
      "2026-01-1/T12:00:00.000000Z",
      "2026-01-15T/2:00:00.000000Z",
      "2026-01-15T1/:00:00.000000Z",
      "2026-01-15T12:/0:00.000000Z",
      "2026-01-15T12:0/:00.000000Z",
      "2026-01-15T12:00:/0.000000Z",
      "2026-01-15T12:00:0/.000000Z",
      "2026-01-15T12:00:00.abcdefZ",
    ])
      expect({ input, out: canonicalTimestamp(input) }).toEqual({ input, out: { error: NOT_RFC3339 } });
  });
});

describe("timestamp helpers", () => {
  test("timestampOf gives the canonical text of a millisecond instant; dayOf its UTC day", () => {
    expect(timestampOf(Date.UTC(2026, 0, 31, 23, 59, 58, 123))).toBe("2026-01-31T23:59:58.123000Z");
    expect(timestampOf(0)).toBe("1970-01-01T00:00:00.000000Z");
    expect(dayOf("2026-01-31T23:59:58.123000Z")).toBe("2026-01-31");
  });

  test("the edge's window: up to maxFutureMs ahead and maxAgeMs back, both ends included", () => {
    const now = Date.UTC(2026, 0, 31, 12);
    const minute = 60_000;
    const hour = 3_600_000;
    const window = (t: number) => scannedAtWindowError(t, now, 168 * hour, 5 * minute);
    expect(window(now)).toBeNull();
    expect(window(now + 5 * minute)).toBeNull();
    expect(window(now + 5 * minute + 1)).toBe("is more than 5 minutes in the future");
    expect(window(now - 168 * hour)).toBeNull();
    expect(window(now - 168 * hour - 1)).toBe("is older than the accepted window of 168 hours");
    expect(scannedAtWindowError(now + 2 * hour, now, 24 * hour, 90 * minute)).toBe(
      "is more than 90 minutes in the future",
    );
    expect(scannedAtWindowError(now - 25 * hour, now, 24 * hour, 90 * minute)).toBe(
      "is older than the accepted window of 24 hours",
    );
  });
});

describe("derivedInstant: the scan's instant on the edge's clock", () => {
  const received = Date.UTC(2026, 0, 31, 12, 0, 0, 500);
  const day = 24 * 3_600_000;

  test("without sent_at: scanned_at as given, text and instant", () => {
    expect(derivedInstant({ scanned_at: "2026-01-31T11:59:00.123456Z" }, received, day)).toEqual({
      ms: Date.UTC(2026, 0, 31, 11, 59, 0, 123),
      text: "2026-01-31T11:59:00.123456Z",
    });
  });

  test("scanned_at moved by received_at - sent_at, its microseconds kept, either way", () => {
    // A device 2 hours fast: it scanned at its 13:59:00.123456, sent at its 14:00:00.000.
    const fast = { scanned_at: "2026-01-31T13:59:00.123456Z", sent_at: "2026-01-31T14:00:00.000000Z" };
    expect(derivedInstant(fast, received, day)).toEqual({
      ms: Date.UTC(2026, 0, 31, 11, 59, 0, 623),
      text: "2026-01-31T11:59:00.623456Z",
    });
    // 3 hours slow, across midnight backwards on the device.
    const slow = { scanned_at: "2026-01-31T08:59:59.999999Z", sent_at: "2026-01-31T09:00:00.500000Z" };
    expect(derivedInstant(slow, received, day)).toEqual({
      ms: Date.UTC(2026, 0, 31, 11, 59, 59, 999),
      text: "2026-01-31T11:59:59.999999Z",
    });
  });

  test("an offset up to the bound is corrected, past it refused on sent_at, saying which way", () => {
    const at = (offsetMs: number) => ({
      scanned_at: timestampOf(received + offsetMs - 1_000),
      sent_at: timestampOf(received + offsetMs),
    });
    expect(derivedInstant(at(day), received, day)).toHaveProperty("ms", received - 1_000);
    expect(derivedInstant(at(-day), received, day)).toHaveProperty("ms", received - 1_000);
    expect(derivedInstant(at(day + 1), received, day)).toEqual({
      error: {
        path: "sent_at",
        message:
          "says the device clock is 24.0 hours ahead of the server's, more than the 24 hours the edge corrects: set the device's clock",
      },
    });
    expect(derivedInstant(at(-2 * day), received, day)).toEqual({
      error: {
        path: "sent_at",
        message:
          "says the device clock is 48.0 hours behind the server's, more than the 24 hours the edge corrects: set the device's clock",
      },
    });
  });

  test("a correction that leaves the storable range is refused on scanned_at", () => {
    const early = { scanned_at: "1970-01-01T00:00:00.000000Z", sent_at: "1970-01-01T01:00:00.000000Z" };
    expect(derivedInstant(early, Date.UTC(1970, 0, 1), day)).toEqual({
      error: { path: "scanned_at", message: "corrected by the device clock's offset, is out of range" },
    });
    expect(derivedInstant(early, Date.UTC(1970, 0, 1, 1), day)).toHaveProperty("ms", 0);
    const last = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
    const late = { scanned_at: "9999-12-31T23:59:59.999000Z", sent_at: "9999-12-31T23:59:59.999000Z" };
    expect(derivedInstant(late, last, day)).toHaveProperty("ms", last);
    expect(derivedInstant(late, last + 1, day)).toEqual({
      error: { path: "scanned_at", message: "corrected by the device clock's offset, is out of range" },
    });
  });
});

describe("text Postgres can store", () => {
  test("NUL and lone surrogates are refused with their reason; other Unicode is fine", () => {
    expect(textProblem("a\u0000b")).toBe(NUL);
    expect(textProblem("a\ud800b")).toBe(SURROGATE);
    expect(textProblem("b\udc00")).toBe(SURROGATE);
    expect(textProblem("gate 7 – 🚪 \u00e9")).toBeNull();
    expect(textProblem("")).toBeNull();
  });

  test("scanner_id and user_agent refuse NUL and lone surrogates, by field", () => {
    expect(withField("scanner_id", "gate\u00007")).toEqual(refused("scanner_id", NUL));
    expect(withField("user_agent", "ua\ud800")).toEqual(refused("user_agent", SURROGATE));
    expect(withField("scanner_id", "gate 🚪")).toEqual({
      output: { ...EVENT, scanned_at: "2026-01-31T12:00:00.000000Z", scanner_id: "gate 🚪" },
    });
  });

  test("isStorableIp: IPv4 and IPv6 without a zone", () => {
    expect(isStorableIp("10.0.0.1")).toBe(true);
    expect(isStorableIp("2001:db8::1")).toBe(true);
    expect(isStorableIp("fe80::1%eth0")).toBe(false);
    expect(isStorableIp("gate-7")).toBe(false);
    expect(isStorableIp("")).toBe(false);
  });
});

describe("ScanEventSchema: each field's refusal names the field", () => {
  test("a minimal event is accepted, event_id lower-cased and scanned_at canonical", () => {
    expect(errorsOf({ ...EVENT, event_id: EVENT.event_id.toUpperCase() })).toEqual({
      output: { ...EVENT, scanned_at: "2026-01-31T12:00:00.000000Z" },
    });
  });

  test("event_id, qr_id, scanned_at", () => {
    expect(withField("event_id", 7)).toEqual(refused("event_id", "must be a UUID string"));
    expect(withField("event_id", "not-a-uuid")).toEqual(refused("event_id", "must be a UUID"));
    expect(withField("qr_id", 7)).toEqual(refused("qr_id", "must be a string"));
    for (const bad of ["QR 3", "", "x".repeat(129), "QR/1"])
      expect(withField("qr_id", bad)).toEqual(refused("qr_id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -"));
    expect(withField("qr_id", `aZ09._:-${"x".repeat(120)}`)).toHaveProperty("output");
    expect(withField("scanned_at", 1769860800000)).toEqual(
      refused("scanned_at", "must be an RFC 3339 timestamp string"),
    );
    expect(withField("scanned_at", "2026-11-25 10:00")).toEqual(refused("scanned_at", NOT_RFC3339));
    expect(withField("scanned_at", "2026-02-30T10:00:00Z")).toEqual(refused("scanned_at", NO_DAY));
  });

  test("scanner_id and user_agent lengths", () => {
    expect(withField("scanner_id", 7)).toEqual(refused("scanner_id", "must be a string"));
    expect(withField("scanner_id", "x".repeat(129))).toEqual(refused("scanner_id", "at most 128 characters"));
    expect(withField("scanner_id", "x".repeat(128))).toHaveProperty("output");
    expect(withField("scanner_id", "")).toHaveProperty("errors.0.path", "scanner_id");
    expect(withField("user_agent", 7)).toEqual(refused("user_agent", "must be a string"));
    expect(withField("user_agent", "x".repeat(513))).toEqual(refused("user_agent", "at most 512 characters"));
    expect(withField("user_agent", "x".repeat(512))).toHaveProperty("output");
  });

  test("location: finite numbers within ±90 / ±180 / >= 0, no other field", () => {
    const at = (location: unknown) => withField("location", location);
    expect(at({ lat: -90, lon: -180 })).toHaveProperty("output.location", { lat: -90, lon: -180 });
    expect(at({ lat: 90, lon: 180, accuracy_m: 0 })).toHaveProperty("output.location", {
      lat: 90,
      lon: 180,
      accuracy_m: 0,
    });
    expect(at({ lat: -90.5, lon: 0 })).toEqual(refused("location.lat", "must be >= -90"));
    expect(at({ lat: 90.5, lon: 0 })).toEqual(refused("location.lat", "must be <= 90"));
    expect(at({ lat: 0, lon: -180.5 })).toEqual(refused("location.lon", "must be >= -180"));
    expect(at({ lat: 0, lon: 180.5 })).toEqual(refused("location.lon", "must be <= 180"));
    expect(at({ lat: 0, lon: 0, accuracy_m: -1 })).toEqual(refused("location.accuracy_m", "must be >= 0"));
    expect(at({ lat: "52", lon: 0 })).toEqual(refused("location.lat", "must be a number"));
    expect(at({ lat: Number.POSITIVE_INFINITY, lon: 0 })).toHaveProperty("errors.0", {
      path: "location.lat",
      message: "must be a finite number",
    });
    expect(at({ lat: 0, lon: 0, alt: 3 })).toEqual(refused("location.alt", 'unknown field "alt"'));
    expect(at("52.52,13.40")).toEqual(refused("location", "must be an object {lat, lon, accuracy_m?}"));
    expect(at(null)).toEqual(refused("location", "must be an object {lat, lon, accuracy_m?}"));
    expect(at({ lon: 13.4 })).toEqual(refused("location.lat", "is required"));
    // An array ([lat, lon]) is not a location: every message says what a location is.
    const pair = at([52.5, 13.4]) as { errors: { message: string }[] };
    expect(new Set(pair.errors.map((e) => e.message))).toEqual(new Set(["must be an object {lat, lon, accuracy_m?}"]));
  });

  test("unknown fields are refused by name; a non-object is not an event", () => {
    expect(withField("colour", "red")).toEqual(refused("colour", 'unknown field "colour"'));
    expect(errorsOf("an event")).toEqual(refused("(event)", "an event must be a JSON object"));
    expect(errorsOf(null)).toEqual(refused("(event)", "an event must be a JSON object"));
    // A missing field is refused at its path as required, not as "not an object".
    const { event_id: _, ...noId } = EVENT;
    expect(errorsOf(noId)).toEqual(refused("event_id", "is required"));
    const { qr_id: _q, scanned_at: _s, ...neither } = EVENT;
    expect(errorsOf(neither)).toEqual({
      errors: [
        { path: "qr_id", message: "is required" },
        { path: "scanned_at", message: "is required" },
      ],
    });
    // An array is not an event, whatever its items: no item is taken for a field.
    expect((errorsOf([EVENT]) as { errors: { message: string }[] }).errors.map((e) => e.message)).toEqual(
      expect.arrayContaining(["an event must be a JSON object"]),
    );
    expect(JSON.stringify(errorsOf([EVENT]))).not.toContain("unknown field");
  });
});

describe("attributes", () => {
  const attrs = (a: unknown) => withField("attributes", a);
  const FLAT = "must be a flat object of string, number or boolean values";

  test("string, finite number and boolean values are kept as they are", () => {
    const a = { s: "x", n: -1.5, z: 0, t: true, f: false, e: "" };
    expect(attrs(a)).toHaveProperty("output.attributes", a);
  });

  test("anything but a plain object is refused, once", () => {
    for (const bad of [null, [1], "a=b", 5, true])
      expect({ bad, r: attrs(bad) }).toEqual({ bad, r: refused("attributes", FLAT) });
  });

  test("at most 32 keys", () => {
    const keys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));
    expect(attrs(keys(32))).toHaveProperty("output");
    expect(attrs(keys(33))).toEqual(refused("attributes", "at most 32 keys"));
  });

  test("the reserved names are refused by name, as received (a copy would drop them)", () => {
    for (const key of ["__proto__", "constructor", "prototype"]) {
      const received = JSON.parse(`{"ok": 1, "${key}": 1}`);
      expect(attrs(received)).toEqual(refused("attributes", `key "${key}" is reserved; rename it`));
    }
  });

  test("keys: not empty, storable text; the key is quoted in the message, cut at 80 characters", () => {
    expect(attrs({ "": 1 })).toEqual(refused("attributes", "keys must not be empty"));
    expect(attrs({ "a\u0000": 1 })).toEqual(refused("attributes", `key "a\\u0000" ${NUL}`));
    expect(attrs({ "b\ud800": 1 })).toEqual(refused("attributes", `key "b\\ud800" ${SURROGATE}`));
    const long = "k".repeat(100);
    expect(attrs({ [long]: { nested: 1 } })).toEqual(
      refused("attributes", `value of key "${"k".repeat(79)} must be a string, number or boolean`),
    );
  });

  test("values: storable text, finite numbers, booleans; nothing nested or null", () => {
    expect(attrs({ k: "v\u0000" })).toEqual(refused("attributes", `value of key "k" ${NUL}`));
    expect(attrs({ k: "v\udc00" })).toEqual(refused("attributes", `value of key "k" ${SURROGATE}`));
    expect(attrs({ k: Number.NaN })).toEqual(refused("attributes", 'value of key "k" must be a finite number'));
    expect(attrs({ k: Number.NEGATIVE_INFINITY })).toEqual(
      refused("attributes", 'value of key "k" must be a finite number'),
    );
    for (const bad of [null, { a: 1 }, [1], undefined])
      expect({ bad, r: attrs({ ok: true, k: bad }) }).toEqual({
        bad,
        r: refused("attributes", 'value of key "k" must be a string, number or boolean'),
      });
  });

  test("at most 4096 bytes as JSON (bytes, not characters)", () => {
    // {"k":"…"} is 8 bytes around the value.
    expect(attrs({ k: "x".repeat(4088) })).toHaveProperty("output");
    expect(attrs({ k: "x".repeat(4089) })).toEqual(refused("attributes", "at most 4096 bytes as JSON"));
    expect(attrs({ k: "é".repeat(2045) })).toEqual(refused("attributes", "at most 4096 bytes as JSON"));
  });
});

describe("the record the edge writes", () => {
  const event = { ...EVENT, scanned_at: "2026-01-31T12:00:00.000000Z" } as ScanEvent;
  const received = "2026-01-31T12:00:01.000000Z";

  test("toScanRecord adds derived_at, received_at, a storable client_ip or null, and the edge's schema version", () => {
    expect(toScanRecord(event, received, "10.0.0.7")).toEqual({
      ...event,
      derived_at: event.scanned_at,
      received_at: received,
      client_ip: "10.0.0.7",
      schema_version: 2,
    });
    // The device's sent_at is kept, the client's own schema_version is not (the record's is the edge's).
    const sent = { ...event, sent_at: "2026-01-31T10:00:00.500000Z", schema_version: 1 } as ScanEvent;
    expect(toScanRecord(sent, received, null, "2026-01-31T14:00:00.000000Z")).toEqual({
      ...event,
      sent_at: sent.sent_at,
      derived_at: "2026-01-31T14:00:00.000000Z",
      received_at: received,
      client_ip: null,
      schema_version: 2,
    });
    expect(toScanRecord(event, received, null).client_ip).toBeNull();
    expect(toScanRecord(event, received, "fe80::1%eth0").client_ip).toBeNull();
    expect(toScanRecord(event, received, "unknown").client_ip).toBeNull();
  });

  test("ScanRecordSchema accepts the record and refuses what the edge never writes, by field", () => {
    const record = toScanRecord(event, received, "2001:db8::1");
    expect(check(ScanRecordSchema, record)).toEqual({ output: record });
    expect(check(ScanRecordSchema, { ...record, client_ip: null })).toHaveProperty("output.client_ip", null);
    expect(check(ScanRecordSchema, { ...record, client_ip: "fe80::1%eth0" })).toEqual(
      refused("client_ip", "must be an IPv4 or IPv6 address without a zone"),
    );
    expect(check(ScanRecordSchema, { ...record, received_at: "yesterday" })).toEqual(
      refused("received_at", NOT_RFC3339),
    );
    expect(check(ScanRecordSchema, { ...record, schema_version: 3 })).toHaveProperty("errors.0.path", "schema_version");
    // A version 1 record (an older edge's): no derived_at, read as it is.
    const { derived_at: _, ...v1 } = { ...record, schema_version: 1 as const };
    expect(check(ScanRecordSchema, v1)).toEqual({ output: v1 });
    expect(check(ScanRecordSchema, { ...record, extra: 1 })).toEqual(refused("extra", 'unknown field "extra"'));
    expect(check(ScanRecordSchema, JSON.stringify(record))).toEqual(
      refused("(event)", "a record must be a JSON object"),
    );
  });
});

describe("the fast paths give the schemas' answers", () => {
  test("canonicalUtc: Z forms with 0-6 fraction digits, made canonical", () => {
    const cases: [string, string][] = [
      ["2026-01-31T12:00:00Z", "2026-01-31T12:00:00.000000Z"],
      ["2026-01-31T12:00:00.1Z", "2026-01-31T12:00:00.100000Z"],
      ["2026-01-31T12:00:00.12Z", "2026-01-31T12:00:00.120000Z"],
      ["2026-01-31T12:00:00.123Z", "2026-01-31T12:00:00.123000Z"],
      ["2026-01-31T12:00:00.12345Z", "2026-01-31T12:00:00.123450Z"],
      ["2026-01-31T12:00:00.123456Z", "2026-01-31T12:00:00.123456Z"],
      ["1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000000Z"],
      ["9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999000Z"],
      ["2024-02-29T23:59:59Z", "2024-02-29T23:59:59.000000Z"],
      ["2000-02-29T00:00:00Z", "2000-02-29T00:00:00.000000Z"],
      ["2026-04-30T00:00:00Z", "2026-04-30T00:00:00.000000Z"],
      ["2026-12-31T00:00:00Z", "2026-12-31T00:00:00.000000Z"],
    ];
    for (const [input, out] of cases) {
      expect({ input, out: canonicalUtc(input) }).toEqual({ input, out });
      expect({ input, out: canonicalTimestamp(input) }).toEqual({ input, out });
    }
  });

  test("canonicalUtc leaves everything else to the general path", () => {
    for (const input of [
      "2026-01-31T12:00:00.1234567Z", // a digit to truncate
      "2026-01-31T12:00:00.Z",
      "2026-01-31T12:00:00.",
      "2026-01-31T12:00:00",
      "2026-01-31t12:00:00Z",
      "2026-01-31T12:00:00z",
      "2026-01-31T12:00:00+00:00",
      "2026-01-31 12:00:00Z",
      "2026/01-31T12:00:00Z",
      "2026-01/31T12:00:00Z",
      "2026-01-31T12.00:00Z",
      "2026-01-31T12:00.00Z",
      "2026-01-31T12:00:00,1Z",
      "2026-01-31T12:00:00.1aZ",
      "2026-01-31T12:00:00.a1Z",
      "2026-01-31T12:00:00.12345aZ",
      "a026-01-31T12:00:00Z",
      "202a-01-31T12:00:00Z",
      "2026-a1-31T12:00:00Z",
      "2026-0a-31T12:00:00Z",
      "2026-01-a1T12:00:00Z",
      "2026-01-3aT12:00:00Z",
      "2026-01-31Ta2:00:00Z",
      "2026-01-31T1a:00:00Z",
      "2026-01-31T12:a0:00Z",
      "2026-01-31T12:0a:00Z",
      "2026-01-31T12:00:a0Z",
      "2026-01-31T12:00:0aZ",
      "2026-01-31T12:00:00ZZ",
      "1969-12-31T23:59:59Z",
      "2026-00-15T12:00:00Z",
      "2026-13-15T12:00:00Z",
      "2026-01-00T12:00:00Z",
      "2026-01-32T12:00:00Z",
      "2026-02-29T12:00:00Z",
      "2026-04-31T12:00:00Z",
      "2100-02-29T12:00:00Z",
      "2026-01-15T24:00:00Z",
      "2026-01-15T12:60:00Z",
      "2026-01-15T12:00:60Z",
    ])
      expect({ input, out: canonicalUtc(input) }).toEqual({ input, out: null });
  });

  test("canonicalUtc agrees with the general path on generated Z timestamps", () => {
    const digits = (n: number) => fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: n, maxLength: n });
    const text = fc
      .tuple(
        fc.integer({ min: 1960, max: 9999 }),
        fc.integer({ min: 0, max: 13 }),
        fc.integer({ min: 0, max: 32 }),
        fc.integer({ min: 0, max: 24 }),
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 0, max: 8 }).chain((n) => digits(n)),
      )
      .map(([y, mo, d, h, mi, s, f]) => {
        const p = (n: number) => String(n).padStart(2, "0");
        return `${y}-${p(mo)}-${p(d)}T${p(h)}:${p(mi)}:${p(s)}${f ? `.${f}` : ""}Z`;
      });
    fc.assert(
      fc.property(text, (s) => {
        // Through the general path alone: an offset of +00:00 makes it skip the fast one. Up to
        // six fraction digits (27 characters), the fast path takes every timestamp it accepts.
        const general = canonicalTimestamp(`${s.slice(0, -1)}+00:00`);
        expect(canonicalUtc(s)).toBe(typeof general === "string" && s.length <= 27 ? general : null);
      }),
      { numRuns: 400 },
    );
  });

  const EVENT_FULL = {
    event_id: "0F8FAD5B-D9CB-469F-A165-70867728950E",
    qr_id: "QR-1",
    scanned_at: "2026-01-31T12:00:00.123Z",
    scanner_id: "s",
    location: { lat: -90, lon: 180, accuracy_m: 0 },
    user_agent: "",
    attributes: { a: "x", b: 1, c: true },
  };
  const RECORD = {
    ...EVENT_FULL,
    event_id: EVENT_FULL.event_id.toLowerCase(),
    scanned_at: "2026-01-31T12:00:00.123000Z",
    received_at: "2026-01-31T12:00:01.000000Z",
    client_ip: "10.0.0.1",
    schema_version: 1,
  };

  test("withoutFastPath gives each schema as it is without the fast path", () => {
    for (const schema of [ScanEventSchema, ScanRecordSchema]) {
      const plain = withoutFastPath(schema);
      expect(plain).not.toBe(schema);
      expect(plain["~run"]).not.toBe(schema["~run"]);
      expect(plain.entries).toBe(schema.entries);
    }
  });

  test("a valid event or record takes the fast path, with the schema's output, fields in its order", () => {
    const valid: unknown[] = [
      EVENT,
      EVENT_FULL,
      { ...EVENT_FULL, sent_at: "2026-01-31T12:00:05+02:00", schema_version: 2 },
      { schema_version: 1, ...EVENT },
      { ...EVENT_FULL, location: { lon: -180, lat: 90 } },
      { attributes: {}, user_agent: "u".repeat(512), scanner_id: "s".repeat(128), ...EVENT },
    ];
    for (const input of valid) {
      const fast = fastPaths.event(input);
      const full = v.safeParse(withoutFastPath(ScanEventSchema), input);
      expect(full.success).toBe(true);
      expect(JSON.stringify(fast)).toBe(JSON.stringify(full.output));
    }
    for (const input of [
      RECORD,
      { ...RECORD, client_ip: null },
      { ...RECORD, client_ip: "::1" },
      { ...RECORD, sent_at: "2026-01-31T10:00:00Z", derived_at: "2026-01-31T12:00:00.123Z", schema_version: 2 },
    ]) {
      const fast = fastPaths.record(input);
      const full = v.safeParse(withoutFastPath(ScanRecordSchema), input);
      expect(full.success).toBe(true);
      expect(JSON.stringify(fast)).toBe(JSON.stringify(full.output));
    }
    // The attributes object is the one received, as the schema's output has it.
    expect(fastPaths.event(EVENT_FULL)?.attributes).toBe(EVENT_FULL.attributes);
  });

  test("anything the fast path is unsure of goes to the schema", () => {
    const events: unknown[] = [
      undefined,
      null,
      "x",
      [],
      [EVENT],
      Object.assign(Object.create(null), EVENT),
      { ...EVENT, extra: 1 },
      { ...EVENT, scanner_id: undefined },
      { ...EVENT, received_at: RECORD.received_at },
      { ...EVENT, event_id: 1 },
      { ...EVENT, event_id: "not-a-uuid" },
      { ...EVENT, qr_id: 1 },
      { ...EVENT, qr_id: "" },
      { ...EVENT, qr_id: "a b" },
      { ...EVENT, scanned_at: 1 },
      { ...EVENT, scanned_at: "2026-02-30T00:00:00Z" },
      { event_id: EVENT.event_id, qr_id: EVENT.qr_id },
      { ...EVENT, scanner_id: "" },
      { ...EVENT, scanner_id: "s".repeat(129) },
      { ...EVENT, scanner_id: 1 },
      { ...EVENT, scanner_id: ["x"] },
      { ...EVENT, scanner_id: "a\u0000" },
      { ...EVENT, user_agent: "u".repeat(513) },
      { ...EVENT, user_agent: "\ud800" },
      { ...EVENT, location: null },
      { ...EVENT, location: [1, 2] },
      { ...EVENT, location: { lat: 0 } },
      { ...EVENT, location: { lat: 0, lon: 0, x: 1 } },
      { ...EVENT, location: { lat: 0, lon: 0, accuracy_m: -1 } },
      { ...EVENT, location: { lat: 0, lon: 0, accuracy_m: Number.POSITIVE_INFINITY } },
      { ...EVENT, location: { lat: 0, lon: 0, accuracy_m: undefined } },
      { ...EVENT, location: { lat: 90.5, lon: 0 } },
      { ...EVENT, location: { lat: -90.5, lon: 0 } },
      { ...EVENT, location: { lat: 0, lon: 180.5 } },
      { ...EVENT, location: { lat: 0, lon: -180.5 } },
      { ...EVENT, location: { lat: Number.NaN, lon: 0 } },
      { ...EVENT, location: { lat: "0", lon: 0 } },
      { ...EVENT, attributes: null },
      { ...EVENT, attributes: [] },
      { ...EVENT, attributes: { a: {} } },
      { ...EVENT, attributes: "x" },
      { ...EVENT, sent_at: 1 },
      { ...EVENT, sent_at: "2026-02-30T00:00:00Z" },
      { ...EVENT, sent_at: undefined },
      { ...EVENT, schema_version: 3 },
      { ...EVENT, schema_version: "2" },
      { ...EVENT, derived_at: RECORD.received_at },
    ];
    for (const input of events) {
      expect({ input, fast: fastPaths.event(input) }).toEqual({ input, fast: undefined });
      expect({ input, answer: check(ScanEventSchema, input) }).toEqual({
        input,
        answer: check(withoutFastPath(ScanEventSchema), input),
      });
    }
    const records: unknown[] = [
      null,
      "x",
      [RECORD],
      EVENT_FULL,
      { ...RECORD, client_ip: undefined },
      { ...RECORD, client_ip: 1 },
      { ...RECORD, client_ip: "fe80::1%eth0" },
      { ...RECORD, client_ip: "x" },
      { ...RECORD, received_at: 1 },
      { ...RECORD, received_at: "2026-01-31T12:00:01+25:00" },
      { ...RECORD, schema_version: 3 },
      { ...RECORD, schema_version: "1" },
      { ...RECORD, derived_at: "yesterday" },
      { ...RECORD, sent_at: 1 },
      { ...RECORD, derived_at: undefined },
      { ...RECORD, extra: 1 },
      { ...RECORD, qr_id: "" },
    ];
    for (const input of records) {
      expect({ input, fast: fastPaths.record(input) }).toEqual({ input, fast: undefined });
      expect({ input, answer: check(ScanRecordSchema, input) }).toEqual({
        input,
        answer: check(withoutFastPath(ScanRecordSchema), input),
      });
    }
  });

  test("generated events and records: the same answer with and without the fast path", () => {
    const text = fc.oneof(
      fc.string({ maxLength: 4 }),
      fc.constantFrom("", "s", "\u0000", "\ud800", "x".repeat(128), "x".repeat(129), "x".repeat(512), "x".repeat(513)),
    );
    const num = fc.oneof(
      fc.double(),
      fc.constantFrom(-180, -90, 0, 90, 180, -180.5, 90.5, Number.NaN, Number.POSITIVE_INFINITY),
    );
    const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 3 });
    const event = fc.record(
      {
        event_id: fc.oneof(fc.uuid(), fc.constant("0F8FAD5B-D9CB-469F-A165-70867728950E"), text, fc.constant(1)),
        qr_id: fc.oneof(fc.constantFrom("QR-1", "a:b.c_d-e", "q".repeat(128), "q".repeat(129), "a b"), text),
        scanned_at: fc.oneof(
          fc.constantFrom(
            "2026-01-31T12:00:00Z",
            "2026-01-31T12:00:00.123Z",
            "2026-01-31T12:00:00.123456Z",
            "2026-01-31T12:00:00.1234567Z",
            "2026-01-31T12:00:00+01:00",
            "2026-02-30T12:00:00Z",
            "1969-12-31T23:59:59Z",
          ),
          fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
          text,
        ),
        scanner_id: maybe(fc.oneof(text, num)),
        location: maybe(
          fc.oneof(
            fc.record({ lat: num, lon: num, accuracy_m: maybe(num) }, { requiredKeys: ["lat", "lon"] }),
            fc.record({ lat: num, lon: num, x: num }, { requiredKeys: [] }),
            fc.constantFrom(null, [], "x"),
          ),
        ),
        user_agent: maybe(fc.oneof(text, num)),
        attributes: maybe(
          fc.oneof(
            fc.dictionary(text, fc.oneof(text, num, fc.boolean(), fc.constant(null)), { maxKeys: 3 }),
            fc.constantFrom(null, [], "x"),
          ),
        ),
        sent_at: maybe(fc.oneof(fc.constantFrom("2026-01-31T12:00:05Z", "2026-01-31T13:00:05+01:00", "x"), text)),
        schema_version: maybe(fc.constantFrom(1, 2, 3, "2")),
        extra: maybe(num),
      },
      { requiredKeys: [] },
    );
    const record = fc.record({
      event,
      received_at: fc.oneof(fc.constantFrom("2026-01-31T12:00:01.000000Z", "2026-01-31T12:00:01Z"), text),
      client_ip: fc.constantFrom(null, "10.0.0.1", "::1", "fe80::1%eth0", "x", 1, undefined),
      schema_version: fc.constantFrom(1, 2, 3, "1", undefined),
      derived_at: maybe(fc.oneof(fc.constantFrom("2026-01-31T12:00:01.000000Z", "2026-01-31T12:00:01Z"), text)),
    });
    const same = (schema: typeof ScanEventSchema | typeof ScanRecordSchema, input: unknown) => {
      // Through JSON, as the edge and the worker get them (no undefined, plain objects).
      const json = JSON.parse(JSON.stringify(input));
      const a = v.safeParse(schema, json);
      const b = v.safeParse(withoutFastPath(schema), json);
      expect(a.success).toBe(b.success);
      if (a.success) expect(JSON.stringify(a.output)).toBe(JSON.stringify(b.output));
      else expect(fieldErrors(a.issues ?? [])).toEqual(fieldErrors(b.issues ?? []));
    };
    fc.assert(
      fc.property(event, (e) => same(ScanEventSchema, e)),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(record, ({ event: e, ...r }) => same(ScanRecordSchema, { ...e, ...r })),
      { numRuns: 300 },
    );
  });
});
