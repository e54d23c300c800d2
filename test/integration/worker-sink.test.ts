// The worker against real Kafka and real Postgres behind real pgbouncer.
//
// Mutations these tests were checked against: each applied alone to a copy of the tree (HEAD plus
// these tests), the test run there and failing as shown; the shared tree was never edited.
//
// | mutation                                                          | failed test: message                                                   |
// |-------------------------------------------------------------------|------------------------------------------------------------------------|
// | scan-loop writeIsolating rethrows data errors (no bisection)      | rejects one schema-valid row: timed out after 30000 ms waiting for the |
// |                                                                   | marker event in dead_letters; last saw []                              |
// | scan-loop writeIsolating dead-letters a failing slice of <= 8 rows| rejects one schema-valid row: dead letters: expected length 1, got 7   |
// | scan-loop writeAndCommit commits the offsets before the DB write  | non-data error: committed offset expected <= 250, received 1000        |
// | db-errors: P0001 classified transient (retried forever)           | non-data error: timed out after 30000 ms waiting for the worker to     |
// |                                                                   | exit on the fatal error; last saw null                                 |
// | db-errors: P0001 classified data (bisected, dead-lettered)        | non-data error: same timeout, last saw null                            |
// | decode writes kafka_offset + 1                                    | duplicates and replayed batches: rows at a position the topic does not |
// |                                                                   | hold that event: expected [], received [{at: "3:288", ...}, ...]       |
// | scan-loop writeAndCommit commits the offsets before the DB write  | SIGTERM mid-stream: timed out after 30000 ms waiting for the worker to |
// |                                                                   | hold stored, uncommitted rows...; last saw rows 6000 committed 6000    |
// | worker main.ts shutdown calls process.exit(0) at once             | SIGTERM mid-stream: committed after exit expected >= 200 (stored at    |
// |                                                                   | the signal), received 0                                                |
import { expect, test } from "bun:test";
import type { KafkaAdmin } from "bun-rdkafka";
import type postgres from "postgres";
import type { ScanEvent } from "../../shared/event.ts";
import {
  createAdmin,
  createConsumer,
  createDatabase,
  createProducer,
  spawnWorker,
  workerEnv,
} from "../helpers/fixtures.ts";
import { consumeN, text } from "../helpers/kafka.ts";
import { storedVsCommitted, totals } from "../helpers/offsets.ts";
import { countMismatches, tally } from "../helpers/postgres.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { events, metric, produceEvents, record } from "../helpers/worker.ts";

await ensureStack();

/** The group's committed offset (next to read; -1: none) and the high watermark of a 1-partition topic. */
function partition0(admin: KafkaAdmin, group: string, topic: string) {
  const [p] = admin.groupLag(group, topic);
  if (!p || p.partition !== 0) throw new Error(`no partition 0 in ${topic}`);
  return { committed: p.committed, highWatermark: p.highWatermark };
}

/** Connections to `database` left inside a transaction (idle in transaction, or aborted). */
async function idleInTransaction(sql: postgres.Sql, database: string) {
  const rows = await sql<{ pid: number; state: string; query: string }[]>`
    select pid, state, left(query, 200) as query from pg_stat_activity
    where datname = ${database} and state in ('idle in transaction', 'idle in transaction (aborted)')`;
  return rows.map((r) => ({ ...r }));
}

/** 500 events with `marker` as the one at offset 250, then 500 more: 999 storable rows around it. */
function eventsAround(markerQrId: string) {
  const before = events(500, 23);
  const marker = scan({ qr_id: markerQrId }) as ScanEvent;
  before[MARKER_OFFSET] = marker;
  return { first: before, second: events(500, 23), marker };
}
const MARKER_OFFSET = 250;
const random = () => Math.random().toString(36).slice(2, 10);

test("duplicates and replayed batches end as exactly the distinct events, with exact counts", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url);
  const producer = createProducer();
  const distinct = events(3_000, 37);
  await produceEvents(producer, env.scansTopic, distinct);
  // Client retries: some event_ids again; and a whole batch replayed.
  await produceEvents(
    producer,
    env.scansTopic,
    distinct.filter((_, i) => i % 7 === 0),
  );
  await produceEvents(producer, env.scansTopic, distinct.slice(0, 500));
  const { metricsUrl } = spawnWorker(env);
  await waitFor(
    "all 3000 rows stored",
    () => tally(db.sql),
    (t) => t.rows === 3_000,
  );
  // Let it finish the replays too, then check nothing moved.
  await waitFor(
    "worker_rows_duplicate_total to reach 429 + 500",
    () => metric(metricsUrl, "worker_rows_duplicate_total"),
    (n) => n === 429 + 500,
  );
  expect(await tally(db.sql)).toEqual({ rows: 3_000, counted: 3_000 });
  expect(await countMismatches(db.sql)).toBe(0);
  const [row] = await db.sql<{ qr_id: string; client_ip: string }[]>`
    select qr_id, host(client_ip) as client_ip from scan_events where event_id = ${distinct[5]?.event_id as string}`;
  expect(row?.qr_id).toBe(distinct[5]?.qr_id as string);
  expect(row?.client_ip).toBe("127.0.0.1");
  // Each row keeps the exact Kafka position it was read from: where the topic holds that event
  // (read back from the topic itself). An event produced once has exactly one such position; a
  // replayed one (same key, same partition) is stored at one of its positions, whichever write won.
  const positions = new Map<string, string[]>();
  const consumer = createConsumer();
  consumer.subscribe([env.scansTopic]);
  const produced = 3_000 + 429 + 500;
  for (const m of await consumeN(consumer, produced)) {
    const id = (JSON.parse(text(m.value) as string) as { event_id: string }).event_id;
    positions.set(id, [...(positions.get(id) ?? []), `${m.partition}:${m.offset}`]);
  }
  expect([...positions.values()].reduce((s, ps) => s + ps.length, 0)).toBe(produced);
  const rows = await db.sql<{ event_id: string; at: string }[]>`
    select event_id::text, kafka_partition || ':' || kafka_offset as at from scan_events`;
  const misplaced = rows.filter((r) => !(positions.get(r.event_id) ?? []).includes(r.at));
  expect(misplaced).toEqual([]);
  const once = rows.filter((r) => positions.get(r.event_id)?.length === 1);
  expect(once.length).toBe(distinct.filter((_, i) => i >= 500 && i % 7 !== 0).length);
  expect(once.every((r) => positions.get(r.event_id)?.[0] === r.at)).toBe(true);
});

test("an event's identity is its event_id with its scanned_at (README, docs/api.md): the same event re-sent is stored once, one whose scanned_at was re-stamped is a second event", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url);
  const producer = createProducer();
  const original = scan({ qr_id: `restamp-${random()}` }) as ScanEvent;
  const restamped = { ...original, scanned_at: new Date(Date.parse(original.scanned_at) + 1_000).toISOString() };
  await produceEvents(producer, env.scansTopic, [original, original, restamped]);
  const { metricsUrl } = spawnWorker(env);
  await waitFor(
    "the re-sent copy to be skipped as a duplicate (worker_rows_duplicate_total = 1)",
    () => metric(metricsUrl, "worker_rows_duplicate_total"),
    (n) => n === 1,
  );
  expect(await tally(db.sql)).toEqual({ rows: 2, counted: 2 });
  // The two rows are the one event id under its two instants, as sent (not two copies of one).
  const rows = await db.sql<{ event_id: string; ms: number }[]>`
    select event_id::text, (extract(epoch from scanned_at) * 1000)::float8 as ms from scan_events order by scanned_at`;
  expect([...rows]).toEqual([
    { event_id: original.event_id, ms: Date.parse(original.scanned_at) },
    { event_id: original.event_id, ms: Date.parse(restamped.scanned_at) },
  ]);
});

test("poison messages land in dead_letters and do not stall their partition", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  const producer = createProducer();
  const good = events(200);
  await producer.send([
    ...good.slice(0, 100).map((e) => ({ topic: env.scansTopic, key: e.qr_id, value: record(e).value })),
    { topic: env.scansTopic, key: "bad-1", value: "{not json" },
    { topic: env.scansTopic, key: "bad-2", value: JSON.stringify({ event_id: "nope", qr_id: "x" }) },
    { topic: env.scansTopic, key: "bad-3", value: new Uint8Array([0xff, 0xfe, 0x00]) },
    { topic: env.scansTopic, key: "bad-4", value: null },
    ...good.slice(100).map((e) => ({ topic: env.scansTopic, key: e.qr_id, value: record(e).value })),
  ]);
  const { metricsUrl } = spawnWorker(env);
  await waitFor(
    "the 200 valid rows stored",
    () => tally(db.sql),
    (t) => t.rows === 200,
  );
  await waitFor(
    "4 dead letters stored",
    async () => Number((await db.sql`select count(*)::int as n from dead_letters`)[0]?.n),
    (n) => n === 4,
  );
  const letters = await db.sql<{ source_offset: string; error: string; key: Buffer; source_topic: string }[]>`
    select source_topic, source_offset, error, key from dead_letters order by source_offset`;
  expect(letters.map((l) => Number(l.source_offset))).toEqual([100, 101, 102, 103]);
  expect(letters.every((l) => l.source_topic === env.scansTopic)).toBe(true);
  expect(letters[0]?.error).toMatch(/undecodable payload/);
  expect(letters[1]?.error).toMatch(/schema violation: event_id: must be a UUID/);
  expect(letters[2]?.error).toMatch(/undecodable payload/);
  expect(letters[3]?.error).toMatch(/empty message value/);
  expect(Buffer.from(letters[1]?.key ?? []).toString()).toBe("bad-2");
  expect(await metric(metricsUrl, "worker_dead_letters_total")).toBe(4);
});

test("SIGTERM mid-stream, batches between the DB commit and the offset commit: they are committed, exit 0, the next worker replays nothing", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url);
  const admin = createAdmin();
  const producer = createProducer();
  const PRODUCED = 6_000;
  await produceEvents(producer, env.scansTopic, events(PRODUCED));
  // Small batches and a pause after each DB commit: batches sit stored-but-uncommitted for 400 ms.
  const first = spawnWorker(env, { FAULT_DELAY_BEFORE_COMMIT_MS: "400", BATCH_MAX_ROWS: "200" });
  const state = () => storedVsCommitted(db.sql, admin, env.group, env.scansTopic).then(totals);
  // Mid-stream and inside the window: rows stored that are not committed, and messages not yet stored.
  const atSignal = await waitFor(
    "the worker to hold stored, uncommitted rows with messages still to read",
    state,
    (t) => t.inWindow.length > 0 && t.rows > t.committed && t.rows < PRODUCED,
    30_000,
    10,
  );
  first.proc.kill("SIGTERM");
  expect(await first.proc.exited).toBe(0);

  const partitions = await storedVsCommitted(db.sql, admin, env.group, env.scansTopic);
  const afterExit = totals(partitions);
  console.log(`SIGTERM at ${JSON.stringify(atSignal)}; after exit ${JSON.stringify(afterExit)}`);
  // What was stored but uncommitted at the signal got committed before the exit...
  expect(afterExit.committed).toBeGreaterThanOrEqual(atSignal.rows);
  // ...and nothing stored is left uncommitted, nothing committed is missing: per partition, the
  // committed offset is exactly the rows stored (a topic written from 0 by one producer, all distinct).
  expect(partitions.map((p) => ({ partition: p.partition, rows: p.rows, next: p.storedNext }))).toEqual(
    partitions.map((p) => ({ partition: p.partition, rows: p.committed, next: p.committed })),
  );
  expect(afterExit.inWindow).toEqual([]);
  // It stopped mid-stream: work is left for the next worker.
  expect(afterExit.rows).toBeLessThan(PRODUCED);

  const second = spawnWorker(env);
  await waitFor(
    `all ${PRODUCED} rows stored by the next worker`,
    () => tally(db.sql),
    (t) => t.rows === PRODUCED,
    60_000,
  );
  const inserted = await waitFor(
    "the next worker's inserted count to cover the remaining messages",
    () => metric(second.metricsUrl, "worker_rows_inserted_total"),
    (n) => n === PRODUCED - afterExit.rows,
    30_000,
  );
  expect(inserted).toBe(PRODUCED - afterExit.rows);
  expect(await metric(second.metricsUrl, "worker_rows_duplicate_total")).toBe(0);
  expect(await tally(db.sql)).toEqual({ rows: PRODUCED, counted: PRODUCED });
  await waitFor(
    "the group to commit everything",
    async () => admin.groupLag(env.group, env.scansTopic),
    (ps) => ps.every((p) => p.lag === 0),
    30_000,
  );
}, 120_000);

test("Postgres rejects one schema-valid row: it is dead-lettered within seconds, the rest of its batch is stored, the partition keeps flowing", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  const admin = createAdmin();
  const producer = createProducer();
  // The row passes the shared schema (the worker's decode), but this database refuses it: SQLSTATE
  // 23514 check_violation, a data error that only Postgres can see.
  const markerQrId = `POISON-${random()}`;
  const constraint = `reject_poison_${random()}`;
  await db.sql.unsafe(`alter table scan_events add constraint ${constraint} check (qr_id <> '${markerQrId}')`);
  const { first, second, marker } = eventsAround(markerQrId);
  // Produced before the worker starts: its first polls see the marker with hundreds of others.
  await produceEvents(producer, env.scansTopic, first);
  await produceEvents(producer, env.scansTopic, second);
  const { proc, metricsUrl } = spawnWorker(env);

  const letters = await waitFor(
    "the marker event in dead_letters",
    () =>
      db.sql<{ event_id: string; source_partition: number; source_offset: string; key: Buffer; error: string }[]>`
        select convert_from(payload, 'UTF8')::json->>'event_id' as event_id,
               source_partition, source_offset, key, error
        from dead_letters`,
    (rows) => rows.length > 0,
    30_000,
  );
  expect(letters).toHaveLength(1);
  expect(letters[0]?.event_id).toBe(marker.event_id);
  expect(letters[0]?.source_partition).toBe(0);
  expect(Number(letters[0]?.source_offset)).toBe(MARKER_OFFSET);
  expect(Buffer.from(letters[0]?.key ?? []).toString()).toBe(markerQrId);
  expect(letters[0]?.error).toContain("rejected by Postgres");
  expect(letters[0]?.error).toContain(`violates check constraint "${constraint}"`);

  await waitFor(
    "999 rows stored",
    () => tally(db.sql),
    (t) => t.rows >= 999,
    60_000,
  );
  const hw = await waitFor(
    "the committed offset to reach the high watermark (1,000)",
    async () => partition0(admin, env.group, env.scansTopic),
    (p) => p.highWatermark === 1_000 && p.committed === p.highWatermark,
    30_000,
  );
  expect(hw).toEqual({ committed: 1_000, highWatermark: 1_000 });
  // Metrics are counted right after the commit the broker already shows.
  await waitFor(
    "worker_rows_inserted_total = 999",
    () => metric(metricsUrl, "worker_rows_inserted_total"),
    (n) => n === 999,
    5_000,
  );
  expect(await tally(db.sql)).toEqual({ rows: 999, counted: 999 });
  expect(await countMismatches(db.sql)).toBe(0);
  const [stored] = await db.sql<{ marker: number; neighbours: number }[]>`
    select count(*) filter (where qr_id = ${markerQrId})::int as marker,
           count(*) filter (where kafka_offset in (${MARKER_OFFSET - 1}, ${MARKER_OFFSET + 1}))::int as neighbours
    from scan_events`;
  expect(stored).toEqual({ marker: 0, neighbours: 2 });
  // The fault landed where the name says: one row dead-lettered by the database's verdict, as a
  // data error (bisected, not retried), by a worker that is still running.
  expect(await metric(metricsUrl, "worker_dead_letters_total")).toBe(1);
  expect(await metric(metricsUrl, "worker_dead_letters_stored_total")).toBe(1);
  expect(await metric(metricsUrl, "worker_rows_duplicate_total")).toBe(0);
  expect(await metric(metricsUrl, "worker_db_retries_total")).toBe(0);
  expect(proc.exitCode).toBeNull();
  expect(await idleInTransaction(db.sql, db.name)).toEqual([]);
});

test("Postgres rejects one row with a non-data error (trigger, P0001): the worker exits non-zero without committing past it, and after the fix a fresh worker stores everything once", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  const admin = createAdmin();
  const producer = createProducer();
  const markerQrId = `POISON-${random()}`;
  const fn = `refuse_marker_${random()}`;
  await db.sql.unsafe(`
    create function ${fn}() returns trigger language plpgsql as $$
    begin
      if new.qr_id = '${markerQrId}' then
        raise exception 'marker % refused by trigger', new.qr_id using errcode = 'P0001';
      end if;
      return new;
    end $$`);
  await db.sql.unsafe(`create trigger ${fn} before insert on scan_events for each row execute function ${fn}()`);
  const { first, second, marker } = eventsAround(markerQrId);
  await produceEvents(producer, env.scansTopic, first);
  await produceEvents(producer, env.scansTopic, second);

  const failing = spawnWorker(env);
  // Neither data (no bisecting, no dead letter) nor transient (no retrying forever): fatal.
  const exitCode = await waitFor(
    "the worker to exit on the fatal error",
    async () => failing.proc.exitCode,
    (code) => code !== null,
    30_000,
  );
  expect(exitCode).toBe(1);
  const afterExit = partition0(admin, env.group, env.scansTopic);
  expect(afterExit.highWatermark).toBe(1_000);
  // -1 (nothing committed) or at most the marker's own offset: the marker is read again.
  expect(afterExit.committed).toBeLessThanOrEqual(MARKER_OFFSET);
  const [markerRows] = await db.sql<
    { n: number }[]
  >`select count(*)::int as n from scan_events where qr_id = ${markerQrId}`;
  expect(markerRows?.n).toBe(0);
  // Nothing was published to the dead-letter topic either.
  const deadLettersPublished = admin
    .groupLag(`${env.group}-dlq`, env.deadLetterTopic)
    .reduce((sum, p) => sum + p.highWatermark, 0);
  expect(deadLettersPublished).toBe(0);
  await waitFor(
    "no connection left inside a transaction after the worker exited",
    () => idleInTransaction(db.sql, db.name),
    (rows) => rows.length === 0,
    10_000,
  );

  // The operator fixes the database; the supervisor's restart (here: a fresh worker) replays from
  // the committed offset, the rows the failed worker had already stored being no-ops.
  await db.sql.unsafe(`drop trigger ${fn} on scan_events`);
  const fixed = spawnWorker(env);
  await waitFor(
    "1,000 rows stored",
    () => tally(db.sql),
    (t) => t.rows >= 1_000,
    60_000,
  );
  const done = await waitFor(
    "the committed offset to reach the high watermark (1,000)",
    async () => partition0(admin, env.group, env.scansTopic),
    (p) => p.committed === p.highWatermark,
    30_000,
  );
  expect(done).toEqual({ committed: 1_000, highWatermark: 1_000 });
  const replayed = 1_000 - Math.max(afterExit.committed, 0);
  await waitFor(
    `the fresh worker to account for the ${replayed} replayed messages`,
    async () =>
      (await metric(fixed.metricsUrl, "worker_rows_inserted_total")) +
      (await metric(fixed.metricsUrl, "worker_rows_duplicate_total")),
    (n) => n === replayed,
    5_000,
  );
  expect(await tally(db.sql)).toEqual({ rows: 1_000, counted: 1_000 });
  expect(await countMismatches(db.sql)).toBe(0);
  const [stored] = await db.sql<
    { event_id: string }[]
  >`select event_id::text from scan_events where qr_id = ${markerQrId}`;
  expect(stored?.event_id).toBe(marker.event_id);
  expect(await metric(fixed.metricsUrl, "worker_dead_letters_total")).toBe(0);
  const [letters] = await db.sql<{ n: number }[]>`select count(*)::int as n from dead_letters`;
  expect(letters?.n).toBe(0);
  expect(fixed.proc.exitCode).toBeNull();
  expect(await idleInTransaction(db.sql, db.name)).toEqual([]);
});
