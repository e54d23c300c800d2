// Accepted ⇒ stored as sent, proven end to end against an independent model. Adversarial values
// for every field are POSTed as JSON through the edge's real HTTP handler (the Hono app behind
// Bun.serve, with its auth, body reader, validation and producer) to a real Kafka topic, and a
// real worker process (`bun worker/main.ts`: decode, sink, COPY upsert through pgbouncer) stores
// them in Postgres. The test's own model of docs/api.md's rules (`model` below: it shares no code
// with shared/event.ts) says which events are valid, which fields make the others invalid, and
// what each valid one must be stored as, computed from the client's own JSON (its own calendar
// arithmetic for the instant and the day partition). Asserted exactly: every answer's status and
// per-event rejections, the stored rows = the model's accepted events, field by field, nothing
// dead-lettered. The seed changes every run and is printed (and in every failure's diff); replay
// one with FC_SEED=<seed> (PROPERTY_SEED also works), PROPERTY_RUNS sets the count (5,000).
// The time window (SCANNED_AT_MAX_*) is opened wide here, so every instant 1970-9999 reaches Postgres.
//
// Mutations (tools/mutations/catalog/edge.ts), each applied alone and caught (2026-12-07):
// | mutation                                                   | failed check: what it showed                             |
// |------------------------------------------------------------|----------------------------------------------------------|
// | event.ts: offsets up to ±23:59 accepted                    | answers: 72 requests differ, events the model refuses 202 |
// | event.ts: no lone-surrogate check                          | answers: 105 requests differ (and 191 dead-lettered)      |
// | event.ts: the fraction rounded to the microsecond          | rows: scanned_at …701906Z stored, model and Postgres …905Z |
// | event.ts: toScanRecord drops scanner_id                    | rows: scanner_id stored null, expected the client's       |
// | ingest.ts: the record made without the client's address    | rows: client_ip stored null, expected 3.1.234.123 (the old |
// |                                                            | test, which skipped the HTTP handler, could not see it)   |
import { describe, expect, test } from "bun:test";
import { isIP } from "node:net";
import fc from "fast-check";
import {
  API_KEY,
  createAdmin,
  createDatabase,
  createTestApp,
  onCleanup,
  spawnWorker,
  uniqueName,
  workerEnv,
} from "../helpers/fixtures.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

/** A fresh seed each run unless FC_SEED (or PROPERTY_SEED) replays one. */
const SEED = Number(process.env.FC_SEED ?? process.env.PROPERTY_SEED ?? Math.floor(Math.random() * 2 ** 31));
const RUNS = Number(process.env.PROPERTY_RUNS ?? 5_000);
console.log(`event-roundtrip: seed ${SEED} (replay with FC_SEED=${SEED})`);

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

// ---- the model: docs/api.md's rules, written here from the docs, not from shared/event.ts --------

const FIELDS = new Set(["event_id", "qr_id", "scanned_at", "scanner_id", "location", "user_agent", "attributes"]);
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const QR_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** Text Postgres stores as given: no NUL, no lone surrogate. */
const storable = (s: string) => !s.includes("\u0000") && !LONE_SURROGATE.test(s);
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

/** Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}
/** The date of a day number (civil_from_days). */
function civilFromDays(z0: number): [number, number, number] {
  const z = z0 + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}
const leap = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
const monthDays = (y: number, m: number) => [31, leap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1] ?? 0;
const US_PER_DAY = 86_400_000_000n;
const LAST_US = BigInt(daysFromCivil(9999, 12, 31)) * US_PER_DAY + US_PER_DAY - 1n;

/**
 * scanned_at as docs/api.md states it: RFC 3339 with an offset, a real date, offset within ±15:59,
 * an instant from 1970 to the end of 9999, digits past the microsecond truncated. Returns the
 * instant in UTC (microseconds since the epoch), or null when refused.
 */
function instantOf(s: unknown): bigint | null {
  if (typeof s !== "string") return null;
  const m = /^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:[Zz]|([+-])(\d\d):(\d\d))$/.exec(s);
  if (!m) return null;
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > monthDays(y, mo) || h > 23 || mi > 59 || se > 59) return null;
  const oh = Number(m[9] ?? 0);
  const om = Number(m[10] ?? 0);
  if (oh > 15 || om > 59) return null;
  const offsetMinutes = (m[8] === "-" ? -1 : 1) * (oh * 60 + om);
  const micros = BigInt((m[7] ?? "").padEnd(6, "0").slice(0, 6));
  const us =
    BigInt(daysFromCivil(y, mo, d)) * US_PER_DAY +
    BigInt(((h * 60 + mi - offsetMinutes) * 60 + se) * 1_000_000) +
    micros;
  return us < 0n || us > LAST_US ? null : us;
}
/** An instant as the test reads it back: YYYY-MM-DDTHH:MM:SS.ffffffZ, and its day partition. */
function utcText(us: bigint): { text: string; part: string } {
  const day = Number(us / US_PER_DAY);
  const [y, m, d] = civilFromDays(day);
  const rest = us % US_PER_DAY;
  const secs = Number(rest / 1_000_000n);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const date = `${p(y, 4)}-${p(m)}-${p(d)}`;
  return {
    text: `${date}T${p(Math.floor(secs / 3600))}:${p(Math.floor(secs / 60) % 60)}:${p(secs % 60)}.${p(Number(rest % 1_000_000n), 6)}Z`,
    part: `scan_events_${date.replaceAll("-", "")}`,
  };
}

interface ExpectedRow {
  event_id: string;
  scanned_at: string;
  part: string;
  qr_id: string;
  scanner_id: string | null;
  lat: number | null;
  lon: number | null;
  accuracy_m: number | null;
  user_agent: string | null;
  attributes: unknown;
  client_ip: string | null;
  schema_version: number;
  /** Without sent_at (these events carry none), the scan's instant is scanned_at as sent. */
  derived_at: string;
}

/**
 * The model's verdict on one event as the server receives it (the client's JSON, parsed): the
 * top-level fields at fault, or the row it must become (client_ip filled in by the caller).
 */
function model(e: Record<string, unknown>): { invalid: string[] } | { row: Omit<ExpectedRow, "client_ip"> } {
  const invalid = new Set<string>(Object.keys(e).filter((k) => !FIELDS.has(k)));
  const str = (k: string) => (typeof e[k] === "string" ? (e[k] as string) : null);
  const id = str("event_id");
  if (id === null || !UUID.test(id)) invalid.add("event_id");
  const qr = str("qr_id");
  if (qr === null || !QR_ID.test(qr)) invalid.add("qr_id");
  const instant = instantOf(e.scanned_at);
  if (instant === null) invalid.add("scanned_at");
  if ("scanner_id" in e) {
    const v = str("scanner_id");
    if (v === null || v.length < 1 || v.length > 128 || !storable(v)) invalid.add("scanner_id");
  }
  if ("user_agent" in e) {
    const v = str("user_agent");
    if (v === null || v.length > 512 || !storable(v)) invalid.add("user_agent");
  }
  if ("location" in e) {
    const l = e.location;
    const num = (x: unknown, lo: number, hi: number) => typeof x === "number" && x >= lo && x <= hi;
    if (
      !isObject(l) ||
      Object.keys(l).some((k) => !["lat", "lon", "accuracy_m"].includes(k)) ||
      !num(l.lat, -90, 90) ||
      !num(l.lon, -180, 180) ||
      ("accuracy_m" in l && !num(l.accuracy_m, 0, Number.POSITIVE_INFINITY))
    )
      invalid.add("location");
  }
  if ("attributes" in e) {
    const a = e.attributes;
    const ok =
      isObject(a) &&
      Object.keys(a).length <= 32 &&
      Object.entries(a).every(
        ([k, v]) =>
          k.length > 0 &&
          !["__proto__", "constructor", "prototype"].includes(k) &&
          storable(k) &&
          ((typeof v === "string" && storable(v)) || typeof v === "number" || typeof v === "boolean"),
      ) &&
      Buffer.byteLength(JSON.stringify(a)) <= 4096;
    if (!ok) invalid.add("attributes");
  }
  if (invalid.size > 0) return { invalid: [...invalid].sort() };
  const location = e.location as { lat: number; lon: number; accuracy_m?: number } | undefined;
  const at = utcText(instant as bigint);
  return {
    row: {
      event_id: (id as string).toLowerCase(),
      scanned_at: at.text,
      part: at.part,
      qr_id: qr as string,
      scanner_id: str("scanner_id"),
      lat: location?.lat ?? null,
      lon: location?.lon ?? null,
      accuracy_m: location?.accuracy_m ?? null,
      user_agent: str("user_agent"),
      attributes: e.attributes ?? null,
      // The record's version: the edge's (2), whatever the client's.
      schema_version: 2,
      derived_at: at.text,
    },
  };
}

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

/**
 * The client address the row must hold for a request with X-Forwarded-For `xff` from the trusted
 * proxy 127.0.0.1 (docs/api.md): that address, NULL when Postgres' inet cannot hold it (a zone),
 * the peer (127.0.0.1) without the header or when it names no address.
 */
function expectedIp(xff: string | null): string | null {
  if (xff === null || isIP(xff.replace(/%.*$/, "")) === 0) return "127.0.0.1";
  return xff.includes("%") ? null : canonicalIp(xff);
}

// ---- the pipeline: HTTP → Kafka → worker → Postgres ------------------------------------------

interface Stored extends Omit<ExpectedRow, "attributes"> {
  attributes: string | null;
  received_ms: number;
}

interface Batch {
  /** The events as the client sends them (JSON text of the array). */
  body: string;
  events: Record<string, unknown>[];
  xff: string | null;
}

/** Splits `events` into batches of the generated sizes, each body at most 256 KiB. */
function batches(events: unknown[], sizes: number[], ips: (string | null)[]): Batch[] {
  const out: Batch[] = [];
  let i = 0;
  for (let b = 0; i < events.length; b++) {
    const size = sizes[b % sizes.length] as number;
    let chunk = events.slice(i, i + size);
    while (chunk.length > 1 && JSON.stringify(chunk).length > 256 * 1024) chunk = chunk.slice(0, chunk.length >> 1);
    i += chunk.length;
    const body = JSON.stringify(chunk);
    // What the server reads: the client's JSON (NaN and ±Infinity are null in it, -0 is 0).
    out.push({ body, events: JSON.parse(body), xff: ips[b % ips.length] ?? null });
  }
  return out;
}

interface Answer {
  accepted: number;
  rejected: { index: number; errors: { path: string; message: string }[] }[];
}

/**
 * Sends `events` through the edge (in batches, from the given forwarded addresses) to a fresh
 * topic, a real worker stores them in a fresh database; returns the answers, the model's view and
 * what Postgres holds once the worker committed everything it read.
 */
async function roundTrip(events: unknown[], sizes: number[], ips: (string | null)[]) {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 3);
  const t = await createTestApp(
    {
      // Every instant the schema accepts (1970 to 9999) within the window, so all reach Postgres.
      SCANNED_AT_MAX_AGE_HOURS: "1000000",
      SCANNED_AT_MAX_FUTURE_MINUTES: "5000000000",
      TRUSTED_PROXIES: "127.0.0.1",
    },
    { topic: env.scansTopic },
  );
  // The app behind a real HTTP server, as server/main.ts serves it (the peer address comes from it).
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: t.app.fetch, development: false });
  onCleanup(() => server.stop(true));
  const worker = spawnWorker(env, { LOG_LEVEL: "error" });

  const sent = batches(events, sizes, ips);
  const expected: ExpectedRow[] = [];
  const answers: { got: unknown; want: unknown; [event: string]: unknown }[] = [];
  const statuses: Record<number, number> = {};
  const sentFrom = Date.now();
  for (let i = 0; i < sent.length; i += 4) {
    // Four requests at a time.
    await Promise.all(
      sent.slice(i, i + 4).map(async (b) => {
        const res = await fetch(`http://127.0.0.1:${server.port}/v1/scans`, {
          method: "POST",
          body: b.body,
          headers: {
            authorization: `Bearer ${API_KEY}`,
            "content-type": "application/json",
            ...(b.xff === null ? {} : { "x-forwarded-for": b.xff }),
          },
        });
        const answer = (await res.json()) as Answer;
        const verdicts = b.events.map((e) => model(e));
        const rejected = verdicts.flatMap((v, index) => ("invalid" in v ? [{ index, fields: v.invalid }] : []));
        const accepted = verdicts.length - rejected.length;
        for (const v of verdicts) if ("row" in v) expected.push({ ...v.row, client_ip: expectedIp(b.xff) });
        const fieldsOf = (r: Answer["rejected"][number]) => [
          ...new Set(r.errors.map((e) => (e.path === "(event)" ? "(event)" : (e.path.split(".")[0] as string)))),
        ];
        const got = {
          status: res.status,
          accepted: answer.accepted,
          rejected: (answer.rejected ?? []).map((r) => ({ index: r.index, fields: fieldsOf(r).sort() })),
        };
        const want = { status: accepted > 0 ? 202 : 400, accepted, rejected };
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (Bun.deepEquals(got, want)) answers.push({ got: "ok", want: "ok" });
        else {
          // Only what differs: the status and count, and the refusals one side has and the other not.
          const key = (r: { index: number; fields: string[] }) => `event ${r.index}: ${r.fields.join(",")}`;
          const mine = new Set(want.rejected.map(key));
          const theirs = new Set(got.rejected.map(key));
          const onlyTheirs = [...theirs].filter((r) => !mine.has(r));
          const onlyMine = [...mine].filter((r) => !theirs.has(r));
          const first = Number(/^event (\d+)/.exec(onlyTheirs[0] ?? onlyMine[0] ?? "")?.[1] ?? -1);
          answers.push({
            got: { status: got.status, accepted: got.accepted, refused: onlyTheirs },
            want: { status: want.status, accepted: want.accepted, refused: onlyMine },
            ...(first >= 0 ? { [`event ${first}`]: JSON.stringify(b.events[first]).slice(0, 400) } : {}),
          });
        }
      }),
    );
  }
  const sentUntil = Date.now();

  // The worker has read and committed everything the edge produced (lag 0 on every partition; the
  // 202s came after Kafka's acknowledgements, so the high watermarks are final).
  const admin = createAdmin();
  await waitFor(
    `the worker (pid ${worker.proc.pid}) to commit every event the edge produced`,
    async () => admin.groupLag(env.group, env.scansTopic).map((p) => ({ hw: p.highWatermark, committed: p.committed })),
    (ps) => ps.every((p) => p.hw === 0 || p.committed === p.hw),
    90_000,
    250,
  );
  const deadLettered = admin
    .groupLag(uniqueName("unused"), env.deadLetterTopic)
    .reduce((n, p) => n + p.highWatermark, 0);
  const stored = await db.sql<Stored[]>`
    select event_id::text, to_char(scanned_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as scanned_at,
           tableoid::regclass::text as part, qr_id, scanner_id, lat, lon, accuracy_m, user_agent,
           attributes::text as attributes, host(client_ip) as client_ip, schema_version::int as schema_version,
           to_char(derived_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as derived_at,
           (extract(epoch from received_at) * 1000)::float8 as received_ms
    from scan_events`;
  // How Postgres itself reads each stored event's timestamp as the client wrote it (to the
  // microsecond it keeps): a second reference, beside the model's arithmetic.
  const clientText = new Map<string, string>();
  for (const b of sent)
    for (const e of b.events)
      if (typeof e.event_id === "string" && "row" in model(e))
        clientText.set(e.event_id.toLowerCase(), String(e.scanned_at).replace(/(\.\d{6})\d+/, "$1"));
  const ids = [...clientText.keys()];
  const postgresReads = new Map(
    (
      await db.sql<{ id: string; utc: string }[]>`
        select id, to_char(t::timestamptz at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as utc
        from unnest(${ids}::text[], ${ids.map((id) => clientText.get(id) as string)}::text[]) as x(id, t)`
    ).map((r) => [r.id, r.utc]),
  );
  return { answers, statuses, expected, stored, deadLettered, postgresReads, sentFrom, sentUntil };
}

/** Compares each stored row with the model's, field by field; the first few differences, readable. */
function rowDifferences(result: Awaited<ReturnType<typeof roundTrip>>): string[] {
  const byId = new Map(result.stored.map((s) => [s.event_id, s]));
  const out: string[] = [];
  for (const want of result.expected) {
    const s = byId.get(want.event_id);
    const problems: string[] = [];
    if (!s) problems.push("not stored");
    else {
      const got = { ...s, attributes: s.attributes === null ? null : JSON.parse(s.attributes) };
      for (const k of Object.keys(want) as (keyof ExpectedRow)[]) {
        const g = k === "client_ip" && got.client_ip !== null ? canonicalIp(got.client_ip) : got[k];
        if (!Bun.deepEquals(g, want[k], true))
          problems.push(`${k}: stored ${JSON.stringify(g)}, expected ${JSON.stringify(want[k])}`);
      }
      if (got.scanned_at !== result.postgresReads.get(want.event_id))
        problems.push(`scanned_at: Postgres reads the client's text as ${result.postgresReads.get(want.event_id)}`);
      if (got.received_ms < result.sentFrom - 1 || got.received_ms > result.sentUntil + 1)
        problems.push(
          `received_at ${got.received_ms} outside the sending window [${result.sentFrom}, ${result.sentUntil}]`,
        );
    }
    if (problems.length && out.length < 5) out.push(`${want.event_id}: ${problems.join("; ")}`);
  }
  return out;
}

// ---- the tests --------------------------------------------------------------------------------

/** What the edge answers for one event (in-process app, the real handler): ok, or its errors as "path: message". */
async function edgeVerdict(app: Awaited<ReturnType<typeof createTestApp>>, event: unknown) {
  const res = await app.post(JSON.stringify(event));
  const answer = (await res.json()) as Answer;
  if (res.status === 202) return { ok: true as const };
  return {
    ok: false as const,
    status: res.status,
    errors: (answer.rejected?.[0]?.errors ?? []).map((e) => `${e.path}: ${e.message}`).join("; "),
  };
}

describe("accepted ⇒ stored as sent (HTTP → Kafka → worker → Postgres, against the test's own model)", () => {
  test(`${RUNS} adversarial events through the real pipeline, seed varying per run (FC_SEED replays)`, async () => {
    const raws = fc.sample(rawEvent, { seed: SEED, numRuns: RUNS });
    // One event per event id (in any case): a second would be the same event to the edge.
    const seen = new Set<string>();
    const events = raws.filter((r) => {
      const id = String((r as { event_id?: unknown }).event_id).toLowerCase();
      if (seen.has(id)) return false;
      seen.add(id);
      return true;
    });
    const sizes = fc.sample(fc.oneof({ weight: 1, arbitrary: fc.constant(1) }, fc.integer({ min: 2, max: 100 })), {
      seed: SEED + 1,
      numRuns: 97,
    });
    const ips = fc.sample(clientIp, { seed: SEED + 2, numRuns: 89 });
    const started = performance.now();
    const result = await roundTrip(events, sizes, ips);
    const wrongAnswers = result.answers.filter((a) => a.got !== "ok");
    const refused = events.length - result.expected.length;
    console.log(
      `property: seed ${SEED}: ${events.length} events in ${result.answers.length} requests, the model accepts ` +
        `${result.expected.length} and refuses ${refused}; ${result.stored.length} rows stored, ` +
        `${result.deadLettered} dead-lettered, answers ${JSON.stringify(result.statuses)}, in ${Math.round(performance.now() - started)} ms`,
    );
    // Every answer as the model says: status, accepted count, each refused event's index and fields.
    expect({ seed: SEED, wrongAnswers: wrongAnswers.slice(0, 3), count: wrongAnswers.length }).toEqual({
      seed: SEED,
      wrongAnswers: [],
      count: 0,
    });
    // Exactly the model's accepted events are stored, each as the client sent it; none dead-lettered.
    expect({
      seed: SEED,
      rows: result.stored.length,
      deadLettered: result.deadLettered,
      differences: rowDifferences(result),
    }).toEqual({ seed: SEED, rows: result.expected.length, deadLettered: 0, differences: [] });
    // Not vacuous: both sides of the verdict are well represented, and batches with no valid event
    // (answered 400) occurred.
    expect(result.expected.length).toBeGreaterThan(RUNS / 5);
    expect(refused).toBeGreaterThan(RUNS / 10);
    expect(result.statuses[400] ?? 0).toBeGreaterThan(0);
  }, 240_000);

  test("fixed: ±15:59 offsets, 23:59:59.9999995Z and an IPv6 zone address reach Postgres as the right instant, day and NULL address", async () => {
    const base = { qr_id: "QR-fixed" };
    const events = [
      { ...base, event_id: crypto.randomUUID(), scanned_at: "2026-11-25T00:00:00+15:59" },
      { ...base, event_id: crypto.randomUUID(), scanned_at: "2026-11-25T00:00:00-15:59" },
      { ...base, event_id: crypto.randomUUID(), scanned_at: "2026-11-23T23:59:59.9999995Z" },
    ];
    const result = await roundTrip(events, [3], ["fe80::1%eth0"]);
    expect(result.answers).toEqual([{ got: "ok", want: "ok" }]);
    expect(rowDifferences(result)).toEqual([]);
    const byId = new Map(result.stored.map((s) => [s.event_id, s]));
    expect(events.map((e) => byId.get(e.event_id)).map((s) => [s?.scanned_at, s?.part, s?.client_ip])).toEqual([
      ["2026-11-24T08:01:00.000000Z", "scan_events_20261124", null],
      ["2026-11-25T15:59:00.000000Z", "scan_events_20261125", null],
      ["2026-11-23T23:59:59.999999Z", "scan_events_20261123", null],
    ]);
  }, 120_000);

  const base = {
    event_id: "0b6f1c9e-2f53-4a8e-9a58-3f5d8f1f2a10",
    qr_id: "QR-fixed",
    scanned_at: "2026-11-25T12:00:00Z",
  };
  const edge = () =>
    createTestApp({ SCANNED_AT_MAX_AGE_HOURS: "1000000", SCANNED_AT_MAX_FUTURE_MINUTES: "5000000000" });

  test("fixed: ±16:00 offsets, impossible dates and leap seconds are refused with a reason, not rolled over", async () => {
    const app = await edge();
    for (const [scanned_at, reason] of [
      ["2026-11-25T00:00:00+16:00", "has a UTC offset out of range (at most ±15:59)"],
      ["2026-11-25T00:00:00-16:00", "has a UTC offset out of range (at most ±15:59)"],
      ["2026-02-29T00:00:00Z", "has no such day in that month"],
      ["2026-04-31T00:00:00Z", "has no such day in that month"],
      ["2026-13-01T00:00:00Z", "has no such month"],
      ["2026-11-25T24:00:00Z", "has an hour, minute or second out of range (leap seconds are not accepted)"],
      ["2026-12-31T23:59:60Z", "has an hour, minute or second out of range (leap seconds are not accepted)"],
      ["1969-12-31T23:59:59Z", "is before 1970-01-01T00:00:00Z"],
      ["9999-12-31T23:00:00-01:00", "is after 9999-12-31T23:59:59.999999Z"],
    ]) {
      expect(await edgeVerdict(app, { ...base, scanned_at })).toEqual({
        ok: false,
        status: 400,
        errors: `scanned_at: ${reason}`,
      });
    }
    for (const scanned_at of ["2024-02-29T00:00:00Z", "2024-02-29T23:59:59.999999Z"])
      expect(await edgeVerdict(app, { ...base, event_id: crypto.randomUUID(), scanned_at })).toEqual({ ok: true });
  });

  test("fixed: a lone surrogate or NUL anywhere is refused, naming the field", async () => {
    const app = await edge();
    expect(await edgeVerdict(app, { ...base, attributes: { gate: "A\ud800" } })).toEqual({
      ok: false,
      status: 400,
      errors: 'attributes: value of key "gate" must be valid Unicode (it contains a lone surrogate)',
    });
    expect((await edgeVerdict(app, { ...base, attributes: { "k\udc00": 1 } })).ok).toBe(false);
    expect(await edgeVerdict(app, { ...base, scanner_id: "gun\ud83d" })).toEqual({
      ok: false,
      status: 400,
      errors: "scanner_id: must be valid Unicode (it contains a lone surrogate)",
    });
    expect(await edgeVerdict(app, { ...base, user_agent: "ua\u0000" })).toEqual({
      ok: false,
      status: 400,
      errors: "user_agent: must not contain the NUL character (\\u0000)",
    });
    // JSON has no Infinity: what a client's serialiser makes of it (null, or 1e999) is refused too.
    expect((await edgeVerdict(app, { ...base, attributes: { n: Number.POSITIVE_INFINITY } })).ok).toBe(false);
    const huge = await app.post(
      JSON.stringify({ ...base, location: { lat: 1, lon: 2 } }).replace('"lon":2', '"lon":-1e999'),
    );
    expect(huge.status).toBe(400);
  });

  test("fixed: __proto__, constructor and prototype keys are refused by name, and count toward the limits", async () => {
    const app = await edge();
    const raw = async (json: string) => {
      const r = await app.post(json);
      return { status: r.status, answer: (await r.json()) as Answer };
    };
    for (const key of ["__proto__", "constructor", "prototype"]) {
      const { status, answer } = await raw(
        JSON.stringify({ ...base, attributes: { gate: "A" } }).replace('"gate"', `"${key}":"x","gate"`),
      );
      expect({ status, errors: answer.rejected[0]?.errors }).toEqual({
        status: 400,
        errors: [{ path: "attributes", message: `key "${key}" is reserved; rename it` }],
      });
    }
    // 33 keys, one of them __proto__: over the limit however it is counted.
    const many = `{${Array.from({ length: 32 }, (_, i) => `"k${i}":1`).join(",")},"__proto__":1}`;
    const over = await raw(
      JSON.stringify({ ...base, attributes: {} }).replace('"attributes":{}', `"attributes":${many}`),
    );
    expect(over.answer.rejected[0]?.errors).toEqual([{ path: "attributes", message: "at most 32 keys" }]);
    // At the top level, a __proto__ field is an unknown field like any other.
    const top = await raw(
      `{"event_id":"${base.event_id}","qr_id":"Q","scanned_at":"${base.scanned_at}","__proto__":{}}`,
    );
    expect(top.answer.rejected[0]?.errors).toEqual([{ path: "__proto__", message: 'unknown field "__proto__"' }]);
  });

  test("fixed: an unknown field is named in the error", async () => {
    const app = await edge();
    expect(await edgeVerdict(app, { ...base, scaned_at: "2026-11-25T12:00:00Z" })).toEqual({
      ok: false,
      status: 400,
      errors: 'scaned_at: unknown field "scaned_at"',
    });
    expect(await edgeVerdict(app, { ...base, location: { lat: 1, lon: 2, alt: 3 } })).toEqual({
      ok: false,
      status: 400,
      errors: 'location.alt: unknown field "alt"',
    });
  });

  test("the model agrees with the docs' own examples (a check of the oracle itself)", () => {
    const ok = (e: Record<string, unknown>) => "row" in model(e);
    expect(ok(base)).toBe(true);
    expect(model({ ...base, scanned_at: "2026-11-23T23:59:59.9999995Z" })).toMatchObject({
      row: { scanned_at: "2026-11-23T23:59:59.999999Z", part: "scan_events_20261123" },
    });
    expect(model({ ...base, scanned_at: "2026-11-25T00:00:00+15:59" })).toMatchObject({
      row: { scanned_at: "2026-11-24T08:01:00.000000Z" },
    });
    expect(model({ ...base, scanned_at: "1970-01-01T00:00:00Z" })).toMatchObject({
      row: { scanned_at: "1970-01-01T00:00:00.000000Z", part: "scan_events_19700101" },
    });
    expect(model({ ...base, scanned_at: "9999-12-31T23:59:59.999999999Z" })).toMatchObject({
      row: { scanned_at: "9999-12-31T23:59:59.999999Z", part: "scan_events_99991231" },
    });
    for (const scanned_at of [
      "2026-02-29T00:00:00Z",
      "2026-11-25T00:00:00+16:00",
      "1969-12-31T23:59:59Z",
      "2026-11-25 10:00",
    ])
      expect(model({ ...base, scanned_at })).toEqual({ invalid: ["scanned_at"] });
    expect(model({ ...base, qr_id: "QR 3", scanned_at: "2026-11-25 10:00", colour: "red" })).toEqual({
      invalid: ["colour", "qr_id", "scanned_at"],
    });
    expect(model({ ...base, attributes: { "": 1 } })).toEqual({ invalid: ["attributes"] });
    expect(model({ ...base, location: { lat: 90, lon: -180, accuracy_m: 0 } })).toMatchObject({ row: { lat: 90 } });
    expect(expectedIp("fe80::1%eth0")).toBeNull();
    expect(expectedIp(null)).toBe("127.0.0.1");
    expect(expectedIp("::ffff:10.1.2.3")).toBe("0000:0000:0000:0000:0000:ffff:0a01:0203");
  });
});
