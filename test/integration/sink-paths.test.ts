// The sink's two write paths (worker/sink.ts) against real Postgres through the real pgbouncer, as
// the worker's own login (qrscan_worker): a batch of new rows is COPYed straight into scan_events
// with the counts made by the worker; a batch holding a row already stored (a replay, a client's
// retry, the same event twice in one batch) aborts that COPY and goes the staging path, which
// stores and counts only the new rows. Either way every row is stored once and counted once.
//
// Mutations caught (each applied alone, the test run, then reverted; the first three are in
// tools/mutations/catalog/core.ts):
// | mutation (worker/sink.ts)                                          | failing test: message                                       |
// |--------------------------------------------------------------------|-------------------------------------------------------------|
// | a conflict reported as written (`unique_violation)) return true`)  | mixing: {inserted 350, duplicates 0}, expected 300 and 50   |
// | counts overwritten (`set count = excluded.count`)                  | new rows: counted 40, expected 440                          |
// | minutes cut at the hour (`slice(0, 13)`)                           | new rows: countMismatches not 0 (buckets differ)            |
// | the conflict not caught (`unique_violation` → `check_violation`)   | replayed batch: the write throws 23505                      |
// | no staging turns after a conflict (`#stagingTurns = 0`)            | after a conflict: paths differ (staging 2 of 5)             |
// | data errors swallowed as written (`isDataError(error)) return true`) | data error: code undefined, expected "22009"              |
import { expect, test } from "bun:test";
import { toScanRecord } from "../../shared/event.ts";
import { localStack } from "../../shared/local-stack.ts";
import { type Row, decode, isPoison } from "../../shared/scan-events.ts";
import { createDb } from "../../worker/db.ts";
import { MAX_STAGING_TURNS, ScanSink, minuteCounts } from "../../worker/sink.ts";
import { createDatabase, urlAs } from "../helpers/fixtures.ts";
import { countMismatches, tally } from "../helpers/postgres.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

let offset = 0;
/** A row as the worker decodes it: `qrId`, scanned at `at` (canonical UTC), a new event unless `eventId`. */
function row(qrId: string, at: string, eventId: string = crypto.randomUUID()): Row {
  const value = Buffer.from(JSON.stringify(toScanRecord({ event_id: eventId, qr_id: qrId, scanned_at: at }, at, null)));
  const r = decode({ topic: "t", partition: 0, offset: offset++, key: null, value, headers: null, timestamp: 0 });
  if (isPoison(r)) throw new Error(r.error);
  return r;
}

/** `n` new rows over 4 QR codes (one named NULL) and 4 minutes of two days. */
function rows(n: number): Row[] {
  const minutes = [
    "2026-03-01T23:58:10.000000Z",
    "2026-03-01T23:59:59.999999Z",
    "2026-03-02T00:00:00.000000Z",
    "2026-03-02T00:00:30.500000Z",
  ];
  return Array.from({ length: n }, (_, i) =>
    row(["QR-a", "QR-b", "NULL", "x:y.z"][i % 4] as string, minutes[(i >> 2) % 4] as string),
  );
}

async function setup() {
  const database = await createDatabase();
  const db = createDb({
    url: urlAs(database.url, localStack().logins.worker),
    poolMax: 2,
    statementTimeoutMs: 10_000,
    deadlineMarginMs: 2_000,
  });
  const sink = new ScanSink(db.transaction);
  return { database, db, sink };
}

test("new rows: COPYed straight in, the worker's minute counts exact (per QR code, per UTC minute, across days)", async () => {
  const { database, db, sink } = await setup();
  expect(await sink.write(rows(400))).toEqual({ inserted: 400, duplicates: 0 });
  expect(sink.paths).toEqual({ optimistic: 1, conflicts: 0, staging: 0 });
  expect(await tally(database.sql)).toEqual({ rows: 400, counted: 400 });
  expect(await countMismatches(database.sql)).toBe(0);
  // Added to the counts already there, not replacing them.
  expect(await sink.write(rows(40))).toEqual({ inserted: 40, duplicates: 0 });
  expect(await tally(database.sql)).toEqual({ rows: 440, counted: 440 });
  expect(await countMismatches(database.sql)).toBe(0);
  const [bucket] = await database.sql<{ count: string }[]>`
    select count from scan_counts where qr_id = 'NULL' and bucket = '2026-03-01T23:59:00Z'`;
  expect(Number(bucket?.count)).toBe(28);
  await db.sql.end();
});

test("a replayed batch (a crash after the database commit, before the offset commit) conflicts, falls back, and inserts and counts nothing", async () => {
  const { database, db, sink } = await setup();
  const batch = rows(400);
  await sink.write(batch);
  expect(await sink.write(batch)).toEqual({ inserted: 0, duplicates: 400 });
  expect(sink.paths).toEqual({ optimistic: 1, conflicts: 1, staging: 1 });
  expect(await tally(database.sql)).toEqual({ rows: 400, counted: 400 });
  expect(await countMismatches(database.sql)).toBe(0);
  await db.sql.end();
});

test("a batch mixing new rows with rows already stored (the stored ones last, after the COPY inserted the new): only the new are stored and counted", async () => {
  const { database, db, sink } = await setup();
  const stored = rows(100);
  await sink.write(stored);
  const fresh = rows(300);
  expect(await sink.write([...fresh, ...stored.slice(0, 50)])).toEqual({ inserted: 300, duplicates: 50 });
  expect(sink.paths.conflicts).toBe(1);
  expect(await tally(database.sql)).toEqual({ rows: 400, counted: 400 });
  expect(await countMismatches(database.sql)).toBe(0);
  await db.sql.end();
});

test("the same event twice in one batch is stored and counted once", async () => {
  const { database, db, sink } = await setup();
  const batch = rows(200);
  const twice = batch[7] as Row;
  expect(await sink.write([...batch, { ...twice }])).toEqual({ inserted: 200, duplicates: 1 });
  expect(await tally(database.sql)).toEqual({ rows: 200, counted: 200 });
  expect(await countMismatches(database.sql)).toBe(0);
  await db.sql.end();
});

test("after a conflict the next batches go the staging path, twice as many after each conflict in a row, then the optimistic path again", async () => {
  const { database, db, sink } = await setup();
  const first = rows(20);
  await sink.write(first);
  await sink.write(first); // conflict: 1 staging turn next
  expect(sink.paths).toEqual({ optimistic: 1, conflicts: 1, staging: 1 });
  await sink.write(rows(20)); // its staging turn
  expect(sink.paths).toEqual({ optimistic: 1, conflicts: 1, staging: 2 });
  await sink.write(first); // optimistic again, conflicts again: 2 turns
  await sink.write(rows(20));
  await sink.write(rows(20));
  expect(sink.paths).toEqual({ optimistic: 1, conflicts: 2, staging: 5 });
  await sink.write(rows(20)); // optimistic, succeeds: the backoff starts over
  await sink.write(first);
  await sink.write(rows(20));
  await sink.write(rows(20));
  expect(sink.paths).toEqual({ optimistic: 3, conflicts: 3, staging: 7 });
  expect(await tally(database.sql)).toEqual({ rows: 140, counted: 140 });
  expect(await countMismatches(database.sql)).toBe(0);
  expect(MAX_STAGING_TURNS).toBe(64);
  await db.sql.end();
});

test("SINK_OPTIMISTIC_COPY=false: every batch goes the staging path", async () => {
  const { database, db } = await setup();
  const sink = new ScanSink(db.transaction, { optimistic: false });
  await sink.write(rows(50));
  await sink.write(rows(50));
  expect(sink.paths).toEqual({ optimistic: 0, conflicts: 0, staging: 2 });
  expect(await tally(database.sql)).toEqual({ rows: 100, counted: 100 });
  await db.sql.end();
});

test("a row's data error in the optimistic COPY is the data error (for the scan loop to bisect), not a conflict; nothing of the batch is stored", async () => {
  const { database, db, sink } = await setup();
  const good = rows(100);
  // The schema lets no such row through; forged to reach Postgres' own check (22009).
  const forged: Row = {
    ...(good[60] as Row),
    line: (good[60] as Row).line.replace(/\t\d{4}-\d\d-\d\dT[\d:.]+Z\t/, "\t2026-03-01T00:00:00+16:00\t"),
  };
  const error = await sink.write([...good.slice(0, 60), forged]).catch((e: unknown) => e);
  expect((error as { code?: string }).code).toBe("22009");
  expect(sink.paths).toEqual({ optimistic: 0, conflicts: 0, staging: 0 });
  expect(await tally(database.sql)).toEqual({ rows: 0, counted: 0 });
  // A conflict and a data error in one batch: the fallback's COPY meets the data error.
  await sink.write(good.slice(0, 10));
  const both = await sink.write([...good.slice(0, 20), forged]).catch((e: unknown) => e);
  expect((both as { code?: string }).code).toBe("22009");
  expect(await tally(database.sql)).toEqual({ rows: 10, counted: 10 });
  await db.sql.end();
});

test("minuteCounts: one element per QR code and UTC minute, qr_ids quoted", () => {
  const at = (s: string) => `2026-03-01T10:${s}.000000Z`;
  const id = crypto.randomUUID();
  const rs = [row("A", at("00:01")), row("NULL", at("00:59")), row("A", at("01:00"), id), row("A", at("00:30"))];
  expect(minuteCounts(rs)).toEqual([
    '{"A","NULL","A"}',
    "{2026-03-01T10:00:00Z,2026-03-01T10:00:00Z,2026-03-01T10:01:00Z}",
    "{2,1,1}",
  ]);
  expect(minuteCounts([])).toEqual(["{}", "{}", "{}"]);
  // The schema allows no quote or backslash in a qr_id; the literal would still hold it.
  expect(minuteCounts([row("A", at("00:01"))].map((r) => ({ ...r, qrId: 'a"b\\c"' })))[0]).toBe('{"a\\"b\\\\c\\""}');
});
