// Backups and the restore drill against the stack's real cluster, pgBackRest repository and Kafka:
// `bun run backup`, `bun run restore-drill` (point in time, with checksums captured before), and
// Kafka after a restore (the drill's replay, and `bun run restore-offsets` as the runbook runs it).
// Each test works in its own throwaway database; backups cover the whole cluster.
//
// Mutations these tests were checked against (each applied once, the test run, then reverted):
// | mutation                                                                | what fails                                                    |
// | offsets.ts resumePositions: resume = storedNext + 1                      | replay: problems lists today's partition, 497 rows, not 500   |
// | checksums.ts differences() returns []                                    | PITR: the restore to after the DELETE says "verified", exit 0 |
// | drill.ts restore ignores a time target (--type=immediate: the backup end)| PITR: MISMATCH, 600 rows per day where the mark had 800       |
import { expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { spawnProcess } from "../../tools/harness.ts";
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
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { events, produceEvents } from "../helpers/worker.ts";

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
  replay: { replayedMessages: number; rows: number; problems: string[] } | null;
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

test("after a restore, the sink group resumes at max(kafka_offset) + 1 and the events written after the target come back once", async () => {
  const db = await createDatabase();
  const dir = tempDir();
  // One write in flight: the resume point is exactly the highest restored offset + 1 (no rewind).
  const workerSettings = { WRITES_IN_FLIGHT: "1" };
  const env = await workerEnv(db.url, 3);
  spawnWorker(env, workerSettings);
  const producer = createProducer();
  const admin = createAdmin();
  const stored = (n: number) =>
    waitFor(
      `${n} events in scan_events and the group ${env.group} committed up to the topic's end`,
      async () => {
        const [row] = await db.sql<{ n: number }[]>`select count(*)::int as n from scan_events`;
        const lag = admin.groupLag(env.group, env.scansTopic).reduce((s, p) => s + p.lag, 0);
        return { rows: row?.n, lag };
      },
      (s) => s.rows === n && s.lag === 0,
      120_000,
      250,
    );

  await produceEvents(producer, env.scansTopic, events(300));
  await stored(300);
  const backup = await cli(["tools/backup.ts", "--type", "incr"]);
  expect(backup.code).toBe(0);
  const markFile = join(dir, "mark.json");
  const driveEnv = { ...workerProcessEnv(env), ...workerSettings, BACKUP_DATABASE: db.name };
  expect((await cli(["tools/restore-drill.ts", "--mark", markFile], driveEnv)).code).toBe(0);
  // Acknowledged by Kafka, stored and committed by the worker after the recovery target.
  await produceEvents(producer, env.scansTopic, events(200));
  await stored(500);

  const drill = await cli(["tools/restore-drill.ts", "--expect", markFile, "--replay"], driveEnv);
  const r = result(drill);
  expect(drill.output).toContain("restore-drill: verified: 300 rows");
  expect(r.rows).toBe(300);
  expect(r.replay?.problems).toEqual([]);
  expect(r.replay?.replayedMessages).toBe(200);
  expect(r.replay?.rows).toBe(500);
  expect(drill.code).toBe(0);
  expect(drillDirs()).toEqual([]);
}, 600_000);

test("restore-offsets moves a stopped sink group back to the stored rows and the worker stores the rest once", async () => {
  const db = await createDatabase();
  const workerSettings = { WRITES_IN_FLIGHT: "1" };
  const env = await workerEnv(db.url, 3);
  const worker = spawnWorker(env, workerSettings);
  const producer = createProducer();
  const admin = createAdmin();
  const sent = events(400);
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

  // What a restore to an earlier point looks like: the rows from the upper half of each partition are gone.
  // The counts lose what the rows lose, as a restored database's would.
  await db.sql`
    with m as (
      select kafka_partition, percentile_disc(0.5) within group (order by kafka_offset) as mid from scan_events group by 1),
    d as (
      delete from scan_events s using m where s.kafka_partition = m.kafka_partition and s.kafka_offset > m.mid
      returning s.qr_id, date_trunc('minute', s.scanned_at) as bucket),
    c as (select qr_id, bucket, count(*) as n from d group by 1, 2)
    update scan_counts s set count = s.count - c.n from c where s.qr_id = c.qr_id and s.bucket = c.bucket`;
  const left = await db.sql<{ partition: number; next: number }[]>`
    select kafka_partition as partition, (max(kafka_offset) + 1)::int as next from scan_events group by 1 order by 1`;
  expect((await count()) ?? 0).toBeLessThan(400);

  const cliEnv = { ...workerProcessEnv(env), ...workerSettings };
  const dry = await cli(["jobs/restore-offsets.ts", "--dry-run"], cliEnv);
  expect(dry.output).toContain("dry run: no offsets changed");
  expect(dry.code).toBe(0);
  expect(admin.groupLag(env.group, env.scansTopic).every((p) => p.lag === 0)).toBe(true);

  const reset = await cli(["jobs/restore-offsets.ts"], cliEnv);
  expect(reset.output).toContain("offsets set: start the workers to replay");
  expect(reset.code).toBe(0);
  const committed = admin
    .groupLag(env.group, env.scansTopic)
    .map((p) => ({ partition: p.partition, next: p.committed }));
  expect(committed).toEqual(left);

  spawnWorker(env, workerSettings);
  await waitFor("400 rows again", count, (n) => n === 400, 120_000, 250);
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
