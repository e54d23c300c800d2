// Accepted ⇒ storable, proven differentially: adversarial values for every field go through the
// edge's validation; each event the edge accepts goes the way a 202'd event goes (the Kafka record
// the edge writes, the worker's own decode and sink code, the real Postgres behind pgbouncer) and
// is read back. It must be stored, as the same instant in the same day partition, the same
// strings and the same JSON. Seeded and reproducible: PROPERTY_SEED and PROPERTY_RUNS override.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import * as v from "valibot";
import {
  type ScanEvent,
  ScanEventSchema,
  canonicalTimestamp,
  dayOf,
  fieldErrors,
  toScanRecord,
} from "../../shared/event.ts";
import { decode, isPoison } from "../../shared/scan-events.ts";
import { createDb } from "../../worker/db.ts";
import { ScanSink } from "../../worker/sink.ts";
import { createDatabase } from "../helpers/fixtures.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

const SEED = Number(process.env.PROPERTY_SEED ?? 20261125);
const RUNS = Number(process.env.PROPERTY_RUNS ?? 5_000);

// ---- generators -------------------------------------------------------------------------------

/** UTF-16 code units that trip encoders: NUL, lone surrogates, escapes, separators, BOM, emoji. */
const SPECIAL_UNITS = [
  "\u0000",
  "\ud800",
  "\udfff",
  "\t",
  "\n",
  "\r",
  "\\",
  '"',
  "é",
  "😀",
  "\u2028",
  "\ufeff",
  "\u007f",
];
const unit = fc.oneof(
  { weight: 6, arbitrary: fc.string({ minLength: 1, maxLength: 1 }) },
  { weight: 2, arbitrary: fc.constantFrom(...SPECIAL_UNITS) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0x10000, max: 0x10ffff }).map((c) => String.fromCodePoint(c)) },
);
/** Mostly well-formed text (any code point, escapes, emoji), sometimes with a hostile unit in it. */
const text = (maxLength: number) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.string({ unit: "grapheme", maxLength }) },
    { weight: 1, arbitrary: fc.string({ unit, maxLength }) },
  );

const number = fc.oneof(
  { weight: 1, arbitrary: fc.double() },
  { weight: 6, arbitrary: fc.double({ min: -90, max: 90, noNaN: true }) },
  { weight: 1, arbitrary: fc.integer() },
  fc.constantFrom(
    -0,
    0,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    Number.NaN,
    1e308,
    5e-324,
    1e21,
    0.1,
    90,
    -90,
    180,
    90.0000001,
  ),
);

/** A two-digit field: mostly within [min, max], sometimes just outside it. */
const two = (min: number, max: number) =>
  fc
    .oneof(
      { weight: 12, arbitrary: fc.integer({ min, max }) },
      { weight: 1, arbitrary: fc.constantFrom(min - 1, max + 1) },
    )
    .map((n) => String(Math.max(0, n)).padStart(2, "0"));
const offset = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.tuple(fc.constantFrom("+", "-"), two(0, 15), two(0, 59)).map(([s, h, m]) => `${s}${h}:${m}`),
  },
  fc.constantFrom("Z", "z", "+00:00", "+15:59", "-15:59", "+16:00", "-16:00", "+23:59"),
);
const timestamp = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({
        year: fc.oneof(
          { weight: 10, arbitrary: fc.integer({ min: 1969, max: 2100 }) },
          { weight: 1, arbitrary: fc.constantFrom(0, 1, 99, 1968, 1970, 9999) },
        ),
        month: two(1, 12),
        day: fc.oneof({ weight: 6, arbitrary: two(1, 28) }, { weight: 1, arbitrary: two(29, 31) }),
        hour: two(0, 23),
        minute: two(0, 59),
        second: two(0, 59),
        fraction: fc.option(fc.stringMatching(/^\d{1,10}$/), { nil: "" }),
        t: fc.constantFrom("T", "t"),
        offset,
      })
      .map(
        (p) =>
          `${String(p.year).padStart(4, "0")}-${p.month}-${p.day}${p.t}${p.hour}:${p.minute}:${p.second}` +
          `${p.fraction ? `.${p.fraction}` : ""}${p.offset}`,
      ),
  },
  {
    weight: 2,
    // Instants a hair before midnight UTC with more digits than Postgres keeps.
    arbitrary: fc
      .tuple(
        fc.date({ min: new Date("1970-01-02"), max: new Date("9999-12-30"), noInvalidDate: true }),
        fc.stringMatching(/^9{6,9}\d?$/),
      )
      .map(([d, nines]) => `${d.toISOString().slice(0, 10)}T23:59:59.${nines}Z`),
  },
  { weight: 1, arbitrary: fc.date({ min: new Date(-1e12), noInvalidDate: true }).map((d) => d.toISOString()) },
  { weight: 1, arbitrary: text(30) },
);

const uuid = fc.oneof(
  { weight: 24, arbitrary: fc.uuid() },
  { weight: 2, arbitrary: fc.uuid().map((u) => u.toUpperCase()) },
  { weight: 1, arbitrary: text(40) },
);

const attributeKey = fc.oneof(
  { weight: 30, arbitrary: text(12).filter((k) => k.length > 0) },
  { weight: 1, arbitrary: fc.constantFrom("__proto__", "constructor", "prototype", "", "toString", "a") },
);
const attributeValue = fc.oneof(
  { weight: 12, arbitrary: text(60) },
  { weight: 8, arbitrary: number },
  { weight: 3, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, {}, [1], "x".repeat(5_000)) },
);
// Object.fromEntries defines own properties, as JSON.parse does: "__proto__" stays a plain key.
const attributes = fc
  .oneof(
    { weight: 5, arbitrary: fc.array(fc.tuple(attributeKey, attributeValue), { maxLength: 8 }) },
    { weight: 1, arbitrary: fc.array(fc.tuple(attributeKey, attributeValue), { maxLength: 40 }) },
  )
  .map(Object.fromEntries);

const coordinate = fc.oneof(
  { weight: 12, arbitrary: fc.double({ min: -90, max: 90, noNaN: true }) },
  { weight: 1, arbitrary: number },
);
const accuracy = fc.oneof(
  { weight: 12, arbitrary: fc.double({ min: 0, max: 1e7, noNaN: true }) },
  { weight: 1, arbitrary: number },
);
const location = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({ lat: coordinate, lon: coordinate, accuracy_m: accuracy }, { requiredKeys: ["lat", "lon"] }),
  },
  { weight: 1, arbitrary: fc.record({ lat: number, lon: number, extra: fc.constant(1) }) },
);

/** What a scanner may send: mostly plausible events with adversarial values in every field. */
const rawEvent = fc
  .record(
    {
      event_id: uuid,
      qr_id: fc.oneof(
        { weight: 20, arbitrary: fc.stringMatching(/^[A-Za-z0-9._:-]{1,130}$/) },
        { weight: 1, arbitrary: text(20) },
      ),
      scanned_at: timestamp,
      scanner_id: fc.oneof(
        { weight: 12, arbitrary: text(130).filter((x) => x.length > 0) },
        { weight: 1, arbitrary: text(130) },
      ),
      location,
      user_agent: text(520),
      attributes,
    },
    { requiredKeys: ["event_id", "qr_id", "scanned_at"] },
  )
  .chain((event) =>
    // Now and then a field the schema does not know.
    fc.oneof(
      { weight: 19, arbitrary: fc.constant(event) },
      { weight: 1, arbitrary: fc.constant({ ...event, scaned_at: "typo" }) },
    ),
  );

/** The client address the edge resolves (socket peer, or a trusted proxy's X-Forwarded-For hop). */
const clientIp = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.constantFrom(null, "::ffff:10.1.2.3", "::1", "1:2:3:4:5:6:1.2.3.4", "fe80::1%eth0"),
);

// ---- the pipeline a 202'd event takes ---------------------------------------------------------

interface Case {
  raw: unknown;
  event: ScanEvent;
  clientIp: string | null;
}

interface Stored {
  event_id: string;
  scanned_at: string;
  part: string;
  qr_id: string;
  scanner_id: string | null;
  lat: number | null;
  lon: number | null;
  accuracy_m: number | null;
  user_agent: string | null;
  attributes: string | null;
  client_ip: string | null;
  kafka_offset: string;
}

/** The edge's verdict: its schema (the time window only narrows it further, so it is left out). */
function edgeAccepts(raw: unknown): { ok: true; event: ScanEvent } | { ok: false; errors: string } {
  const result = v.safeParse(ScanEventSchema, raw);
  if (result.success) return { ok: true, event: result.output };
  return {
    ok: false,
    errors: fieldErrors(result.issues)
      .map((e) => `${e.path}: ${e.message}`)
      .join("; "),
  };
}

/** Writes the cases as the worker does (Kafka record → decode → ScanSink) and reads them back. */
async function storeAndReadBack(cases: readonly Case[]) {
  const database = await createDatabase();
  const db = createDb({ url: database.url, poolMax: 2, statementTimeoutMs: 30_000, deadlineMarginMs: 5_000 });
  const sink = new ScanSink(db.transaction);
  const receivedAt = new Date().toISOString();
  const records = cases.map((c) => toScanRecord(c.event, receivedAt, c.clientIp));
  const rows = records.map((record, i) => {
    const value = new TextEncoder().encode(JSON.stringify(record));
    const row = decode({ topic: "scans", partition: 0, offset: i, key: null, value, headers: null, timestamp: 0 });
    if (isPoison(row))
      throw new Error(`the worker dead-letters an event the edge accepted: ${row.error}\n${show(cases[i])}`);
    return row;
  });
  for (let i = 0; i < rows.length; i += 500) {
    const chunk = rows.slice(i, i + 500);
    try {
      await sink.write(chunk);
    } catch (error) {
      // Find the row Postgres refuses, to name it.
      for (const [j, row] of chunk.entries()) {
        await sink.write([row]).catch((e) => {
          throw new Error(
            `Postgres refuses an event the edge accepted: ${(e as Error).message}\n${show(cases[i + j])}`,
          );
        });
      }
      throw error;
    }
  }
  const stored = await database.sql<Stored[]>`
    select event_id::text, to_char(scanned_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as scanned_at,
           tableoid::regclass::text as part, qr_id, scanner_id, lat, lon, accuracy_m, user_agent,
           attributes::text as attributes, host(client_ip) as client_ip, kafka_offset::text
    from scan_events`;
  await db.sql.end({ timeout: 1 });
  const byOffset = new Map(stored.map((s) => [Number(s.kafka_offset), s]));
  // How Postgres itself reads each client timestamp (to the microsecond we keep): the reference.
  const reference = new Map<number, string>();
  const utc = (t: string) =>
    database.sql
      .unsafe<{ utc: string }[]>(
        `select to_char($1::text::timestamptz at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as utc`,
        [t],
      )
      .then(
        (rows) => rows[0]?.utc ?? "(no answer)",
        (e: Error) => `(Postgres cannot read it: ${e.message})`,
      );
  const texts = cases.map((c) => String((c.raw as { scanned_at: string }).scanned_at).replace(/(\.\d{6})\d+/, "$1"));
  try {
    const rows = await database.sql<{ i: number; utc: string }[]>`
      select i::int, to_char(t::timestamptz at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as utc
      from unnest(${texts}::text[]) with ordinality as x(t, i)`;
    for (const r of rows) reference.set(r.i - 1, r.utc);
  } catch {
    // One of them is unreadable: ask one by one, so the mismatch names it.
    for (const [i, t] of texts.entries()) reference.set(i, await utc(t));
  }
  return { records, byOffset, reference };
}

const show = (c: Case | undefined) =>
  JSON.stringify(c?.raw, (_k, x) => (typeof x === "number" && !Number.isFinite(x) ? String(x) : x)).slice(0, 2_000);

/** An address in one spelling: eight lower-case hex groups for IPv6 (IPv4 tail expanded). */
function canonicalIp(ip: string): string {
  if (!ip.includes(":")) return ip;
  let s = ip.toLowerCase();
  const v4 = s.match(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    s = s.replace(v4[0], `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`);
  }
  const [head, tail] = s.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.map((g) => g.padStart(4, "0")).join(":");
}

/** Asserts every case was stored faithfully; returns the first few mismatches as readable text. */
function mismatches(cases: readonly Case[], result: Awaited<ReturnType<typeof storeAndReadBack>>): string[] {
  const out: string[] = [];
  cases.forEach((c, i) => {
    const s = result.byOffset.get(i);
    // What the worker read from Kafka: the record after its JSON round trip.
    const r = JSON.parse(JSON.stringify(result.records[i])) as Record<string, unknown> & {
      location?: { lat: number; lon: number; accuracy_m?: number };
    };
    const problems: string[] = [];
    if (!s) problems.push("not stored");
    else {
      const expectedIp = r.client_ip === null ? null : canonicalIp(r.client_ip as string);
      const checks: [string, unknown, unknown][] = [
        ["event_id", s.event_id, (c.raw as { event_id: string }).event_id.toLowerCase()],
        ["scanned_at (as Postgres reads the client's text)", s.scanned_at, result.reference.get(i)],
        ["scanned_at (the record's canonical UTC)", s.scanned_at, r.scanned_at],
        ["day partition", s.part, `scan_events_${dayOf(s.scanned_at).replaceAll("-", "")}`],
        [
          "day partition (the worker's choice)",
          s.part,
          `scan_events_${dayOf(r.scanned_at as string).replaceAll("-", "")}`,
        ],
        ["qr_id", s.qr_id, r.qr_id],
        ["scanner_id", s.scanner_id, r.scanner_id ?? null],
        ["user_agent", s.user_agent, r.user_agent ?? null],
        ["lat", s.lat, r.location?.lat ?? null],
        ["lon", s.lon, r.location?.lon ?? null],
        ["accuracy_m", s.accuracy_m, r.location?.accuracy_m ?? null],
        ["attributes", s.attributes === null ? null : JSON.parse(s.attributes), r.attributes ?? null],
        ["client_ip", s.client_ip === null ? null : canonicalIp(s.client_ip), expectedIp],
        // The client's strings, not only the record's: nothing was replaced on the way.
        ["scanner_id (client's)", s.scanner_id, (c.raw as { scanner_id?: string }).scanner_id ?? null],
        [
          "attributes (client's)",
          s.attributes === null ? null : JSON.parse(s.attributes),
          c.raw && (c.raw as { attributes?: unknown }).attributes
            ? JSON.parse(JSON.stringify((c.raw as { attributes: unknown }).attributes))
            : null,
        ],
      ];
      for (const [what, got, want] of checks) {
        if (!Bun.deepEquals(got, want, true))
          problems.push(`${what}: stored ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
      }
    }
    if (problems.length && out.length < 5) out.push(`${problems.join("; ")}\n  input: ${show(c)}`);
  });
  return out;
}

/** Runs `raws` through the edge; stores and checks the accepted ones. */
async function check(raws: readonly unknown[], ips: readonly (string | null)[]) {
  const cases: Case[] = [];
  const rejected: string[] = [];
  const seen = new Set<string>();
  raws.forEach((raw, i) => {
    const verdict = edgeAccepts(raw);
    if (!verdict.ok) {
      rejected.push(verdict.errors);
      return;
    }
    // Two cases with the same event id are one event: keep the first.
    if (seen.has(verdict.event.event_id)) return;
    seen.add(verdict.event.event_id);
    cases.push({ raw, event: verdict.event, clientIp: ips[i % ips.length] ?? null });
  });
  const result = await storeAndReadBack(cases);
  return { cases, rejected, problems: mismatches(cases, result), stored: result.byOffset.size };
}

// ---- the tests --------------------------------------------------------------------------------

describe("accepted ⇒ storable (differential, real Postgres through the worker's code)", () => {
  test(`${RUNS} adversarial events, seed ${SEED}`, async () => {
    const raws = fc.sample(rawEvent, { seed: SEED, numRuns: RUNS });
    const ips = fc.sample(clientIp, { seed: SEED + 1, numRuns: 97 });
    const { cases, rejected, problems, stored } = await check(raws, ips);
    const reasons = new Map<string, number>();
    for (const r of rejected) reasons.set(r.split(";")[0] as string, (reasons.get(r.split(";")[0] as string) ?? 0) + 1);
    console.log(
      `property: rejected by first field: ${JSON.stringify(Object.fromEntries(reasons))}\n` +
        `property: seed ${SEED}, ${raws.length} events: ${cases.length} accepted and stored, ${rejected.length} rejected`,
    );
    expect(problems).toEqual([]);
    expect(stored).toBe(cases.length);
    // Not vacuous: both sides of the edge's verdict are well represented.
    expect(cases.length).toBeGreaterThan(RUNS / 5);
    expect(rejected.length).toBeGreaterThan(RUNS / 10);
  }, 180_000);

  const base = {
    event_id: "0b6f1c9e-2f53-4a8e-9a58-3f5d8f1f2a10",
    qr_id: "QR-fixed",
    scanned_at: "2026-11-25T12:00:00Z",
  };
  const accepts = (over: Record<string, unknown>) => edgeAccepts({ ...base, ...over });

  test("fixed: offsets ±15:59 are stored as the right instant; ±16:00 is refused with a reason", async () => {
    expect(accepts({ scanned_at: "2026-11-25T00:00:00+16:00" })).toEqual({
      ok: false,
      errors: "scanned_at: has a UTC offset out of range (at most ±15:59)",
    });
    expect(accepts({ scanned_at: "2026-11-25T00:00:00-16:00" }).ok).toBe(false);
    const raws = [
      { ...base, event_id: crypto.randomUUID(), scanned_at: "2026-11-25T00:00:00+15:59" },
      { ...base, event_id: crypto.randomUUID(), scanned_at: "2026-11-25T00:00:00-15:59" },
    ];
    const { cases, problems } = await check(raws, [null]);
    expect(problems).toEqual([]);
    expect(cases.map((c) => c.event.scanned_at)).toEqual([
      "2026-11-24T08:01:00.000000Z",
      "2026-11-25T15:59:00.000000Z",
    ]);
  });

  test("fixed: 23:59:59.9999995Z stays on its day (truncated to the microsecond), not the next", async () => {
    const raws = [{ ...base, event_id: crypto.randomUUID(), scanned_at: "2026-11-23T23:59:59.9999995Z" }];
    const { cases, problems } = await check(raws, [null]);
    expect(problems).toEqual([]);
    expect(cases[0]?.event.scanned_at).toBe("2026-11-23T23:59:59.999999Z");
    expect(dayOf(cases[0]?.event.scanned_at ?? "")).toBe("2026-11-23");
  });

  test("fixed: impossible dates and leap seconds are refused, not rolled over", () => {
    for (const [scanned_at, reason] of [
      ["2026-02-29T00:00:00Z", "has no such day in that month"],
      ["2026-04-31T00:00:00Z", "has no such day in that month"],
      ["2026-13-01T00:00:00Z", "has no such month"],
      ["2026-11-25T24:00:00Z", "has an hour, minute or second out of range (leap seconds are not accepted)"],
      ["2026-12-31T23:59:60Z", "has an hour, minute or second out of range (leap seconds are not accepted)"],
      ["1969-12-31T23:59:59Z", "is before 1970-01-01T00:00:00Z"],
      ["9999-12-31T23:00:00-01:00", "is after 9999-12-31T23:59:59.999999Z"],
    ]) {
      expect(accepts({ scanned_at })).toEqual({ ok: false, errors: `scanned_at: ${reason}` });
    }
    expect(canonicalTimestamp("2024-02-29T00:00:00Z")).toBe("2024-02-29T00:00:00.000000Z");
    // Already canonical: the fast path checks the calendar too.
    expect(canonicalTimestamp("2024-02-29T23:59:59.999999Z")).toBe("2024-02-29T23:59:59.999999Z");
    for (const s of [
      "2023-02-29T00:00:00.000000Z",
      "2026-11-25T24:00:00.000000Z",
      "1969-12-31T23:59:59.000000Z",
      "2026-00-01T00:00:00.000000Z",
    ]) {
      expect(canonicalTimestamp(s)).toHaveProperty("error");
    }
  });

  test("fixed: a lone surrogate or NUL anywhere is refused, naming the field", () => {
    expect(accepts({ attributes: { gate: "A\ud800" } })).toEqual({
      ok: false,
      errors: 'attributes: value of key "gate" must be valid Unicode (it contains a lone surrogate)',
    });
    expect(accepts({ attributes: { "k\udc00": 1 } }).ok).toBe(false);
    expect(accepts({ scanner_id: "gun\ud83d" })).toEqual({
      ok: false,
      errors: "scanner_id: must be valid Unicode (it contains a lone surrogate)",
    });
    expect(accepts({ user_agent: "ua\u0000" })).toEqual({
      ok: false,
      errors: "user_agent: must not contain the NUL character (\\u0000)",
    });
    expect(accepts({ attributes: { n: Number.POSITIVE_INFINITY } }).ok).toBe(false);
    expect(accepts({ location: { lat: 1, lon: Number.NEGATIVE_INFINITY } }).ok).toBe(false);
  });

  test("fixed: __proto__, constructor and prototype keys are refused by name, and count toward the limits", () => {
    for (const key of ["__proto__", "constructor", "prototype"]) {
      const attrs = JSON.parse(`{"${key}": "x", "gate": "A"}`);
      expect(accepts({ attributes: attrs })).toEqual({
        ok: false,
        errors: `attributes: key "${key}" is reserved; rename it`,
      });
    }
    // 33 keys, one of them __proto__: over the limit however it is counted.
    const many = JSON.parse(`{${Array.from({ length: 32 }, (_, i) => `"k${i}":1`).join(",")},"__proto__":1}`);
    expect(accepts({ attributes: many })).toEqual({ ok: false, errors: "attributes: at most 32 keys" });
    // At the top level, a __proto__ field is an unknown field like any other.
    expect(
      edgeAccepts(
        JSON.parse(`{"event_id":"${base.event_id}","qr_id":"Q","scanned_at":"${base.scanned_at}","__proto__":{}}`),
      ),
    ).toEqual({
      ok: false,
      errors: '__proto__: unknown field "__proto__"',
    });
  });

  test("fixed: an unknown field is named in the error", () => {
    expect(accepts({ scaned_at: "2026-11-25T12:00:00Z" })).toEqual({
      ok: false,
      errors: 'scaned_at: unknown field "scaned_at"',
    });
    expect(accepts({ location: { lat: 1, lon: 2, alt: 3 } })).toEqual({
      ok: false,
      errors: 'location.alt: unknown field "alt"',
    });
  });

  test("fixed: a client address Postgres cannot store (an IPv6 zone) is recorded as unknown, not dead-lettered", async () => {
    const raws = [{ ...base, event_id: crypto.randomUUID() }];
    const { problems, stored } = await check(raws, ["fe80::1%eth0"]);
    expect(problems).toEqual([]);
    expect(stored).toBe(1);
  });
});
