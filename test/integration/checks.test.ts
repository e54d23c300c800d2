// sql/checks.ts storedOnce, against a real throwaway database: the check the crash suite and the
// e2e bench rely on must fail when an event is counted twice, lost, or stored twice. Rows are
// written by hand here (no worker), so each case is exactly the violation it names.
import { expect, test } from "bun:test";
import type postgres from "postgres";
import { storedOnce } from "../../sql/checks.ts";
import { createDatabase } from "../helpers/fixtures.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

const MINUTE = "2026-11-25T10:00:00Z";

/** Inserts one scan_events row (no scan_counts). */
async function insertRow(sql: postgres.Sql, eventId: string, qrId: string, scannedAt = MINUTE) {
  await sql`select ensure_scan_event_partition_days(array[${scannedAt.slice(0, 10)}]::date[])`;
  await sql`
    insert into scan_events (event_id, scanned_at, qr_id, received_at, schema_version, kafka_partition, kafka_offset)
    values (${eventId}, ${scannedAt}, ${qrId}, ${scannedAt}, 1, 0, 0)`;
}

/** Adds `n` to the (qr_id, minute) bucket, as the sink's upsert does. */
async function count(sql: postgres.Sql, qrId: string, n = 1, scannedAt = MINUTE) {
  await sql`
    insert into scan_counts (qr_id, bucket, count) values (${qrId}, date_trunc('minute', ${scannedAt}::timestamptz), ${n})
    on conflict (qr_id, bucket) do update set count = scan_counts.count + excluded.count`;
}

test("storedOnce: every acknowledged event stored once and counted once passes; an unacknowledged stored event counted once is fine", async () => {
  const { sql } = await createDatabase();
  const acked = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
  for (const id of acked) {
    await insertRow(sql, id, "QR-1");
    await count(sql, "QR-1");
  }
  const unacked = crypto.randomUUID(); // e.g. produced, then the server was killed before its 202
  await insertRow(sql, unacked, "QR-2");
  await count(sql, "QR-2");
  // Ids in upper case and repeated (a client retry) are the same events.
  const r = await storedOnce(sql, [...acked, (acked[0] as string).toUpperCase()]);
  expect(r).toEqual({
    acknowledged: 3,
    acknowledgedRows: 3,
    missing: 0,
    rows: 4,
    unacknowledgedStored: 1,
    counted: 4,
    countMismatches: 0,
    failures: [],
  });
});

test("storedOnce: a row stored once whose scan_counts bucket counted it twice is reported (rows − distinct ids says 0)", async () => {
  const { sql } = await createDatabase();
  const id = crypto.randomUUID();
  await insertRow(sql, id, "QR-1");
  await count(sql, "QR-1", 2); // a replay or client retry counted again
  // What the old duplicateRows check measured: nothing wrong.
  const [old] = await sql<{ n: number }[]>`select (count(*) - count(distinct event_id))::int as n from scan_events`;
  expect(old?.n).toBe(0);
  const r = await storedOnce(sql, [id]);
  expect(r.counted).toBe(2);
  expect(r.countMismatches).toBe(1);
  expect(r.failures).toEqual([
    "sum(scan_counts.count) is 2, expected 1 (1 acknowledged + 0 unacknowledged events stored): counted twice",
    "1 scan_counts buckets differ from a recount of scan_events",
  ]);
});

test("storedOnce: an unacknowledged stored event counted twice is reported too", async () => {
  const { sql } = await createDatabase();
  const acked = crypto.randomUUID();
  await insertRow(sql, acked, "QR-1");
  await count(sql, "QR-1");
  await insertRow(sql, crypto.randomUUID(), "QR-2");
  await count(sql, "QR-2", 2);
  const r = await storedOnce(sql, [acked]);
  expect(r.unacknowledgedStored).toBe(1);
  expect(r.failures).toHaveLength(2);
  expect(r.failures[0]).toContain("counted twice");
});

test("storedOnce: an acknowledged event that is not stored is reported lost", async () => {
  const { sql } = await createDatabase();
  const stored = crypto.randomUUID();
  await insertRow(sql, stored, "QR-1");
  await count(sql, "QR-1");
  const lost = crypto.randomUUID();
  const r = await storedOnce(sql, [stored, lost]);
  expect(r.missing).toBe(1);
  expect(r.failures).toEqual(["1 of 2 acknowledged events are not stored (lost)"]);
});

test("storedOnce: an event stored twice (two scanned_at values under the (event_id, scanned_at) key) and counted twice is reported", async () => {
  const { sql } = await createDatabase();
  const id = crypto.randomUUID();
  await insertRow(sql, id, "QR-1");
  await count(sql, "QR-1");
  await insertRow(sql, id, "QR-1", "2026-11-25T10:00:00.5Z");
  await count(sql, "QR-1");
  const r = await storedOnce(sql, [id]);
  expect(r.acknowledgedRows).toBe(2);
  expect(r.countMismatches).toBe(0); // the recount agrees: only the per-event checks see it
  expect(r.failures).toEqual([
    "1 acknowledged events are stored in 2 rows (an event stored twice)",
    "2 rows for 1 distinct stored events",
    "sum(scan_counts.count) is 2, expected 1 (1 acknowledged + 0 unacknowledged events stored): counted twice",
  ]);
});
