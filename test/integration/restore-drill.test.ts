// Backups and the restore drill against the stack's real cluster, pgBackRest repository and Kafka:
// `bun run backup`, `bun run restore-drill` (point in time, with checksums captured before), and
// Kafka after a restore (the drill's replay, and `bun run restore-offsets` as the runbook runs it).
// Each test works in its own throwaway database; backups cover the whole cluster.
//
// Both Kafka tests run with the default WRITES_IN_FLIGHT (2) and a gap below stored rows (a batch
// missing while the next one is stored), so the resume point's rewind matters.
//
// Mutations these tests were checked against (each applied once, the test run, then reverted;
// the ones marked * are in tools/mutations/catalog/durability.ts):
// | mutation                                                                | what fails                                                    |
// | offsets.ts resumePositions: resume = storedNext + 1                      | replay: problems lists today's partition, 449 rows, not 550   |
// | * offsets.ts rewindFor: (WRITES_IN_FLIGHT - 1) × BATCH_MAX_ROWS (as it was) | replay: 450 rows, not 550; restore-offsets: resumes at 85, not 55 |
// | * offsets.ts rewindFor: 0                                                | replay: 450 rows, not 550; restore-offsets: resumes at 115, not 55 |
// | * restore-drill.ts: rewindFor(1, …) (WRITES_IN_FLIGHT ignored)           | replay: 450 rows, not 550                                     |
// | * restore-offsets.ts: rewindFor(1, …) (WRITES_IN_FLIGHT ignored)         | restore-offsets: resumes at 115, not 55                       |
// | * sink.ts: scan_counts counted from the staging table (replays counted)  | replay: 20 buckets differ, 650 counted for 550; restore-offsets: 90 buckets differ |
// | checksums.ts differences() returns []                                    | PITR: the restore to after the DELETE says "verified", exit 0 |
// | drill.ts restore ignores a time target (--type=immediate: the backup end)| PITR: MISMATCH, 600 rows per day where the mark had 800       |
import { expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { checksums, totalRows, writeMark } from "../../tools/backup/checksums.ts";
import { spawnProcess } from "../../tools/harness.ts";
import type { ReplayResult } from "../../tools/restore-drill.ts";
import { pgPaths } from "../../tools/stack/pg-paths.ts";
import {
  createAdmin,
  createDatabase,
  createProducer,
  onCleanup,
  spawnWorker,
  workerEnv,
  workerProcessEnv,
} from "../helpers/fixtures.ts";
import { countMismatches } from "../helpers/postgres.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { events, metric, produceEvents } from "../helpers/worker.ts";

const stack = await ensureStack();

/** Runs `bun run <script> …args` to completion (bounded); its exit code and output. */
async function cli(args: string[], env: Record<string, string> = {}, timeoutMs = 240_000) {
  const proc = spawnProcess({ cmd: ["bun", ...args], env, output: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGTERM"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout as ReadableStream).text(),
    new Response(proc.stderr as ReadableStream).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr, output: `${stdout}${stderr}` };
}

interface DrillResult {
  ok: boolean;
  verified: boolean;
  rtoSeconds: number;
  rpoSeconds: number;
  rows: number;
  checksums: { scanEvents: { partition: string; rows: number; eventIds: string }[] };
  replay: ReplayResult | null;
}

function result(run: { stdout: string; output: string; code: number }): DrillResult {
  const line = run.stdout.split("\n").find((l) => l.startsWith("result "));
  if (!line) throw new Error(`no result line in the drill's output (exit ${run.code}):\n${run.output}`);
  return JSON.parse(line.slice("result ".length)) as DrillResult;
}

const drillDirs = () => readdirSync(pgPaths(stack).root).filter((f) => f.startsWith("drill-"));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "restore-drill-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `rows` events spread over the 3 days before today, counted in scan_counts per minute. */
async function insertDays(sql: postgres.Sql, rows: number, offsetBase: number) {
  await sql`select ensure_scan_event_partition_days(array[current_date - 3, current_date - 2, current_date - 1])`;
  await sql`
    with e as (
      insert into scan_events (event_id, scanned_at, qr_id, received_at, schema_version, kafka_partition, kafka_offset)
      select gen_random_uuid(), current_date - 3 + (i % 3) + make_interval(mins => i % 1440), 'QR-' || (i % 17), now(), 1, 0, ${offsetBase} + i
      from generate_series(0, ${rows - 1}::int) i
      returning qr_id, scanned_at)
    insert into scan_counts (qr_id, bucket, count)
    select qr_id, date_trunc('minute', scanned_at), count(*) from e group by 1, 2
    on conflict (qr_id, bucket) do update set count = scan_counts.count + excluded.count`;
}

test("a point-in-time restore to just before a DELETE brings the deleted rows back, verified by checksums", async () => {
  const db = await createDatabase();
  const dir = tempDir();
  const env = { BACKUP_DATABASE: db.name };
  const sql = postgres(db.directUrl, { max: 1, onnotice: () => {} });
  onCleanup(() => sql.end());

  await insertDays(sql, 1800, 0);
  const backup = await cli(["tools/backup.ts", "--type", "incr"]);
  expect(backup.output).toMatch(
    /^backup \d{8}-\d{6}F(_\d{8}-\d{6}[DI])? \((full|diff|incr)[^)]*\): [\d.]+ MB database, [\d.]+ MB in the repository, [\d.]+ s/,
  );
  expect(backup.code).toBe(0);
  // Written after the backup: only the archived WAL brings these back.
  await insertDays(sql, 600, 1800);

  const markFile = join(dir, "mark.json");
  const marked = await cli(["tools/restore-drill.ts", "--mark", markFile], env);
  expect(marked.output).toContain("(2400 rows)");
  expect(marked.code).toBe(0);

  // The accident: a whole day and its counts deleted.
  const [gone] = await sql<{ n: number }[]>`
    with d as (delete from scan_events where scanned_at >= current_date - 2 and scanned_at < current_date - 1 returning 1)
    select count(*)::int as n from d`;
  await sql`delete from scan_counts where bucket >= current_date - 2 and bucket < current_date - 1`;
  expect(gone?.n).toBe(800);

  const restored = await cli(["tools/restore-drill.ts", "--expect", markFile], env);
  expect(restored.output).toContain("restore-drill: verified: 2400 rows in 3 day partition(s)");
  expect(restored.output).toMatch(/RTO [\d.]+ s/);
  expect(restored.output).toMatch(/RPO [\d.]+ s/);
  expect(restored.code).toBe(0);
  const r = result(restored);
  expect(r.verified).toBe(true);
  const day = (d: DrillResult) => d.checksums.scanEvents.map((x) => x.rows);
  expect(day(r)).toEqual([800, 800, 800]);
  // The live database still misses the day; the restore has it.
  const [live] = await sql<{ n: number }[]>`select count(*)::int as n from scan_events`;
  expect(live?.n).toBe(1600);

  // The same checksums against a restore to now (after the DELETE): the drill must fail and name the day.
  const now = (await sql<{ t: string }[]>`select now()::text as t`)[0]?.t ?? "";
  await sql`insert into dead_letters (source_topic, source_partition, source_offset, error, failed_at) values ('x', 0, 0, 'a commit after the target', now())`;
  const wrong = await cli(["tools/restore-drill.ts", "--target-time", now, "--expect", markFile], env);
  expect(wrong.output).toContain("restore-drill: MISMATCH");
  expect(wrong.output).toMatch(/scan_events scan_events_\d{8}: expected .*"rows":800.*missing after the restore/);
  expect(wrong.code).toBe(1);
  expect(drillDirs()).toEqual([]);
}, 600_000);

/**
 * Holds `event`'s key in scan_events from another session: an uncommitted insert of the same
 * (event_id, scanned_at), so the worker's INSERT … ON CONFLICT for the batch holding that event
 * waits for this transaction. release() rolls it back, and the worker's insert goes through.
 */
async function holdKey(directUrl: string, event: { event_id: string; scanned_at: string }) {
  const holder = postgres(directUrl, { max: 1, onnotice: () => {} });
  const session = await holder.reserve();
  onCleanup(async () => {
    await session`rollback`.catch(() => {});
    session.release();
    await holder.end({ timeout: 1 });
  });
  await session`begin`;
  await session`
    insert into scan_events (event_id, scanned_at, qr_id, received_at, schema_version, kafka_partition, kafka_offset)
    values (${event.event_id}::uuid, ${event.scanned_at}::timestamptz, 'held', now(), 1, 0, 0)`;
  return {
    release: async () => {
      await session`rollback`;
    },
  };
}

// WRITES_IN_FLIGHT at its default (2): a worker writes two batches at once. Small batches, so the
// rewind they need (2 × BATCH_MAX_ROWS) is seen in a small topic.
const BATCH = 100;

test("a restore to a moment when a batch was stored and the one before it not: the drill's replay rewinds over both, stores the gap and counts each event once", async () => {
  const db = await createDatabase();
  const dir = tempDir();
  const workerSettings = { BATCH_MAX_ROWS: String(BATCH) };
  const env = await workerEnv(db.url, 1);
  const producer = createProducer();
  const admin = createAdmin();
  const rows = async () => (await db.sql<{ n: number }[]>`select count(*)::int as n from scan_events`)[0]?.n;
  const stored = (n: number) =>
    waitFor(
      `${n} events in scan_events and the group ${env.group} committed up to the topic's end`,
      async () => ({
        rows: await rows(),
        lag: admin.groupLag(env.group, env.scansTopic).reduce((s, p) => s + p.lag, 0),
      }),
      (s) => s.rows === n && s.lag === 0,
      120_000,
      250,
    );

  const first = spawnWorker(env, workerSettings);
  await produceEvents(producer, env.scansTopic, events(300));
  await stored(300);
  first.proc.kill("SIGTERM");
  expect(await first.proc.exited).toBe(0);
  expect((await cli(["tools/backup.ts", "--type", "incr"])).code).toBe(0);

  // Two batches in flight, the later one committed first: the first event of a backlog of two
  // batches is held by another session, so its batch (offsets 300-399) waits on it while the next
  // one (400-499) is stored. The worker waits up to 2 s to fill a batch: the backlog is read in full ones.
  const backlog = events(2 * BATCH);
  const held = await holdKey(db.directUrl, backlog[0] as { event_id: string; scanned_at: string });
  await produceEvents(producer, env.scansTopic, backlog);
  spawnWorker(env, { ...workerSettings, BATCH_MAX_WAIT_MS: "2000" });
  const gap = await waitFor(
    "the later batch stored while the earlier one waits on the held key",
    async () => {
      const [offsets] = await db.sql<{ first: number; last: number; n: number }[]>`
        select min(kafka_offset)::int as first, max(kafka_offset)::int as last, count(*)::int as n
        from scan_events where kafka_offset >= 300`;
      const waiting = await db.sql`
        select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`;
      return { offsets, waiting: waiting.length };
    },
    (s) => s.offsets?.n === BATCH && s.waiting === 1,
    60_000,
    100,
  );
  expect(gap.offsets).toEqual({ first: 300 + BATCH, last: 300 + 2 * BATCH - 1, n: BATCH });
  // The recovery target: now. Nothing commits around it (the same checksums on both sides).
  const atTarget = await checksums(db.sql);
  const [target] = await db.sql<{ t: string }[]>`
    select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' as t`;
  expect(await checksums(db.sql)).toEqual(atTarget);
  expect(totalRows(atTarget)).toBe(300 + BATCH);
  const markFile = join(dir, "mark.json");
  writeMark(markFile, { database: db.name, targetTime: target?.t ?? "", restorePoint: "", checksums: atTarget });

  // After the target: the held batch is stored, and 50 more events.
  await held.release();
  await produceEvents(producer, env.scansTopic, events(50));
  await stored(300 + 2 * BATCH + 50);

  const driveEnv = { ...workerProcessEnv(env), ...workerSettings, BACKUP_DATABASE: db.name };
  const drill = await cli(["tools/restore-drill.ts", "--expect", markFile, "--replay"], driveEnv);
  const r = result(drill);
  expect(drill.output).toContain(`restore-drill: verified: ${300 + BATCH} rows`);
  expect(r.replay?.problems).toEqual([]);
  // Restored rows end at offset 499: the drill group resumed two batches below 500 (read back from
  // Kafka), read up to the end (550), and the worker stored the gap and the 50, skipping the 100 it found.
  expect(r.replay?.resumedAt).toEqual([{ partition: 0, offset: 300 }]);
  expect(r.replay?.replayedMessages).toBe(2 * BATCH + 50);
  expect(r.replay?.worker).toEqual({ inserted: BATCH + 50, duplicates: BATCH, deadLettered: 0 });
  expect(r.replay).toMatchObject({ rows: 300 + 2 * BATCH + 50, counted: 300 + 2 * BATCH + 50, countMismatches: 0 });
  expect(drill.code).toBe(0);
  expect(drillDirs()).toEqual([]);
}, 600_000);

test("restore-offsets rewinds a stopped sink group over the batches in flight below the stored rows; the worker stores the gap and counts each event once", async () => {
  const db = await createDatabase();
  const B = 30;
  const workerSettings = { BATCH_MAX_ROWS: String(B) };
  const env = await workerEnv(db.url, 3);
  const worker = spawnWorker(env, workerSettings);
  const producer = createProducer();
  const admin = createAdmin();
  // One key per event: the three partitions get about 133 each.
  const sent = events(400, 400);
  await produceEvents(producer, env.scansTopic, sent);
  const count = async () => (await db.sql<{ n: number }[]>`select count(*)::int as n from scan_events`)[0]?.n;
  const committedAll = () => admin.groupLag(env.group, env.scansTopic).every((p) => p.lag === 0);
  await waitFor(
    "400 rows stored and committed",
    async () => ({ rows: await count(), done: committedAll() }),
    (s) => s.rows === 400 && s.done,
    120_000,
    250,
  );
  worker.proc.kill("SIGTERM");
  await worker.proc.exited;

  // What a restore to an earlier point looks like with two writes in flight, per partition: the
  // last 10 rows are gone (after the target), the batch of B below them is there (committed
  // first), the batch of B below that is gone (still in flight at the target). The counts lose
  // what the rows lose, as a restored database's would.
  const [gone] = await db.sql<{ n: number }[]>`
    with m as (select kafka_partition, max(kafka_offset) + 1 as n from scan_events group by 1),
    d as (
      delete from scan_events s using m where s.kafka_partition = m.kafka_partition
        and (s.kafka_offset >= m.n - 10 or (s.kafka_offset >= m.n - 10 - 2 * ${B}::int and s.kafka_offset < m.n - 10 - ${B}::int))
      returning s.qr_id, date_trunc('minute', s.scanned_at) as bucket),
    c as (select qr_id, bucket, count(*) as k from d group by 1, 2),
    u as (update scan_counts s set count = s.count - c.k from c where s.qr_id = c.qr_id and s.bucket = c.bucket returning 1)
    select (select sum(k) from c)::int as n, (select count(*) from u)::int as buckets`;
  expect(gone?.n).toBe(3 * (10 + B));
  const left = await db.sql<{ partition: number; next: number }[]>`
    select kafka_partition as partition, (max(kafka_offset) + 1)::int as next from scan_events group by 1 order by 1`;
  expect(left).toHaveLength(3);

  const cliEnv = { ...workerProcessEnv(env), ...workerSettings };
  const dry = await cli(["jobs/restore-offsets.ts", "--dry-run"], cliEnv);
  expect(dry.output).toContain("dry run: no offsets changed");
  expect(dry.code).toBe(0);
  expect(admin.groupLag(env.group, env.scansTopic).every((p) => p.lag === 0)).toBe(true);

  const reset = await cli(["jobs/restore-offsets.ts"], cliEnv);
  expect(reset.output).toContain("offsets set: start the workers to replay");
  expect(reset.code).toBe(0);
  // Read back from Kafka: each partition resumes two batches below where its restored rows end,
  // at the first offset of the missing batch.
  const committed = admin
    .groupLag(env.group, env.scansTopic)
    .map((p) => ({ partition: p.partition, next: p.committed }));
  expect(committed).toEqual(left.map((p) => ({ partition: p.partition, next: p.next - 2 * B })));
  expect(committed.every((p) => p.next > 0)).toBe(true);

  const replaying = spawnWorker(env, workerSettings);
  await waitFor("400 rows again", count, (n) => n === 400, 120_000, 250);
  await waitFor(
    "the group committed up to the end",
    async () => committedAll(),
    (done) => done,
    60_000,
    250,
  );
  // Observed by the worker: the gap and the last rows inserted, the stored batch found and skipped.
  const seen = await waitFor(
    `the replaying worker's counters to cover the ${3 * (10 + 2 * B)} messages from the resume points`,
    async () => ({
      inserted: await metric(replaying.metricsUrl, "worker_rows_inserted_total"),
      duplicates: await metric(replaying.metricsUrl, "worker_rows_duplicate_total"),
    }),
    (c) => c.inserted + c.duplicates >= 3 * (10 + 2 * B),
    10_000,
    100,
  );
  expect(seen).toEqual({ inserted: 3 * (10 + B), duplicates: 3 * B });
  expect(await countMismatches(db.sql)).toBe(0);
  // The 400 rows are the 400 events sent, each once (a count of distinct ids would equal the rows
  // by construction: the key is (event_id, scanned_at) and every event has its own id).
  const ids = await db.sql<{ event_id: string }[]>`select event_id::text from scan_events`;
  expect(ids.map((r) => r.event_id).sort()).toEqual(sent.map((e) => e.event_id).sort());
  const [counts] = await db.sql<{ total: number }[]>`select sum(count)::int as total from scan_counts`;
  expect(counts?.total).toBe(400);
}, 300_000);

test("restore-offsets refuses while a worker of the group runs", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 3);
  spawnWorker(env);
  await produceEvents(createProducer(), env.scansTopic, events(10));
  await waitFor(
    "10 rows stored",
    async () => (await db.sql<{ n: number }[]>`select count(*)::int as n from scan_events`)[0]?.n,
    (n) => n === 10,
    60_000,
    250,
  );
  const reset = await cli(["jobs/restore-offsets.ts"], workerProcessEnv(env));
  expect(reset.output).toContain(
    `could not set the offsets of group ${env.group} (stop every worker of the group first)`,
  );
  expect(reset.code).toBe(1);
}, 120_000);
