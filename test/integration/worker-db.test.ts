// The worker's bounded transactions (worker/db.ts), through the real pgbouncer: the statement
// timeout is in force from the first statement, never leaks to the pooled connection's next user,
// a statement past it fails as a transient 57014, and the client-side deadline bounds the rest.
// And in a real worker process (worker/main.ts's wiring): a write blocked on a lock is cancelled
// at the configured DB_STATEMENT_TIMEOUT_MS, retried, and stored once when the lock goes.
//
// Mutations caught (each tried once, then reverted):
// | mutation                                                         | failing test            |
// | SET LOCAL sent lazily (behind fn's first query, as first written) | "in force from the first" |
// | SET instead of SET LOCAL                                           | "does not leak"          |
// | withDeadline not applied                                           | "deadline" (times out)   |
// | patches/postgres@3.4.9.patch not applied                           | "rejected during COPY": DbDeadlineError instead of 22009 |
// | partition days sent as a JS array (`${days}::date[]`)              | "first queries of a fresh pool": 22P02 malformed array literal |
// | a data-class error of the partition call left unwrapped           | "partition call": classified "data"                     |
// | worker/main.ts: createDb given 30_000, not DB_STATEMENT_TIMEOUT_MS | "worker process": no retry logged within 9.5 s (timed out) |
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DbDeadlineError, classifyDbError } from "../../shared/db-errors.ts";
import { toScanRecord } from "../../shared/event.ts";
import { type Row, decode, isPoison } from "../../shared/scan-events.ts";
import { createDb } from "../../worker/db.ts";
import { PartitionSetupError, ScanSink } from "../../worker/sink.ts";
import {
  createDatabase,
  createProducer,
  lockScanEvents,
  onCleanup,
  spawnWorker,
  workerEnv,
} from "../helpers/fixtures.ts";
import { countMismatches, tally } from "../helpers/postgres.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { events, metric, produceEvents } from "../helpers/worker.ts";

await ensureStack();

async function setup(statementTimeoutMs: number, deadlineMarginMs = 1_000) {
  const database = await createDatabase();
  const db = createDb({ url: database.url, poolMax: 1, statementTimeoutMs, deadlineMarginMs });
  return { database, db };
}

test("the statement timeout is in force from the first statement of every transaction", async () => {
  const { db } = await setup(1_234);
  // Shaped like the sink's writes: the first query is awaited inside the callback.
  const setting = await db.transaction("probe", async (tx) => {
    const [row] = await tx`select current_setting('statement_timeout') as s`;
    return row?.s;
  });
  expect(setting).toBe("1234ms");
  await db.sql.end();
});

test("the timeout does not leak to the pooled connection's next user (pgbouncer transaction pooling)", async () => {
  const { db } = await setup(1_234);
  await db.transaction("probe", (tx) => tx`select 1`);
  // One server connection behind a one-connection pool: the next statement runs on it.
  const [row] = await db.sql`select current_setting('statement_timeout') as s`;
  expect(row?.s).toBe("0");
  await db.sql.end();
});

test("a statement past the timeout fails with 57014, classified transient, and the connection is returned", async () => {
  const { database, db } = await setup(200);
  const started = performance.now();
  const error = await db.transaction("slow", (tx) => tx`select pg_sleep(5)`).catch((e: unknown) => e);
  expect((error as { code?: string }).code).toBe("57014");
  expect(classifyDbError(error)).toBe("transient");
  expect(performance.now() - started).toBeLessThan(4_000);
  // Rolled back and returned: nothing left idle in a transaction, and the pool still works.
  const [after] = await db.transaction("after", (tx) => tx`select 1 as one`);
  expect(after?.one).toBe(1);
  const stuck = await database.sql`
    select count(*)::int as n from pg_stat_activity
    where datname = current_database() and state like 'idle in transaction%'`;
  expect(stuck[0]?.n).toBe(0);
  await db.sql.end();
});

test("a transaction that never settles client-side ends with DbDeadlineError (fatal) at timeout + margin", async () => {
  const { db } = await setup(300, 300);
  const started = performance.now();
  const error = await db
    .transaction("stuck", async (tx) => {
      await tx`select 1`;
      return new Promise<never>(() => {}); // as postgres.js's COPY writable after a rejected COPY
    })
    .catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DbDeadlineError);
  expect(classifyDbError(error)).toBe("fatal");
  expect((error as Error).message).toBe(
    "stuck: no answer from the database within 600 ms; exiting so the connection is discarded",
  );
  expect(performance.now() - started).toBeLessThan(5_000);
  await db.sql.end({ timeout: 0 });
});

test("a row rejected during COPY surfaces as its data error (postgres.js patched), rolled back, the connection returned", async () => {
  // The schema lets no such row through (test/integration/event-roundtrip.test.ts); this line is forged to reach the
  // COPY error path, where unpatched postgres.js never settles (porsager/postgres#1173).
  const { database, db } = await setup(2_000, 1_000);
  const sink = new ScanSink(db.transaction);
  const now = new Date().toISOString();
  const value = Buffer.from(
    JSON.stringify(toScanRecord({ event_id: crypto.randomUUID(), qr_id: "QR-1", scanned_at: now }, now, null)),
  );
  const good = decode({ topic: "t", partition: 0, offset: 0, key: null, value, headers: null, timestamp: 0 });
  if (isPoison(good)) throw new Error(good.error);
  const forged: Row = {
    ...good,
    line: good.line.replace(/\t\d{4}-\d\d-\d\dT[\d:.]+Z\t/, "\t2026-01-01T00:00:00+16:00\t"),
  };
  expect(forged.line).not.toBe(good.line);
  const started = performance.now();
  const error = await sink.write([good, forged]).catch((e: unknown) => e);
  expect((error as { code?: string }).code).toBe("22009");
  expect(classifyDbError(error)).toBe("data");
  expect(performance.now() - started).toBeLessThan(2_000);
  const stuck = await database.sql`
    select count(*)::int as n from pg_stat_activity
    where datname = current_database() and state like 'idle in transaction%'`;
  expect(stuck[0]?.n).toBe(0);
  // Nothing of the failed batch was stored, and the sink goes on writing.
  expect(await sink.write([good])).toEqual({ inserted: 1, duplicates: 0 });
  await db.sql.end();
});

/** A row for `day` at `offset`, as the worker decodes it. */
function rowOn(day: string, offset: number): Row {
  const at = `${day}T12:00:00.000000Z`;
  const value = Buffer.from(
    JSON.stringify(toScanRecord({ event_id: crypto.randomUUID(), qr_id: "QR-1", scanned_at: at }, at, null)),
  );
  const row = decode({ topic: "t", partition: 0, offset, key: null, value, headers: null, timestamp: 0 });
  if (isPoison(row)) throw new Error(row.error);
  return row;
}

test("the first queries of a fresh pool, racing each other, create their day partitions", async () => {
  // postgres.js serializes a JS array parameter only after its array-type lookup on a new
  // connection; a query racing it, or after a lookup that failed, sent the array as a bare string
  // (seen in the crash suite). The pool skips that lookup (fetch_types: false), so this fails at
  // once if the sink passes a JS array again.
  for (let round = 0; round < 3; round++) {
    const { db } = await setup(10_000);
    const sinks = Array.from({ length: 4 }, () => new ScanSink(db.transaction));
    const results = await Promise.all(
      sinks.map((sink, i) =>
        sink.write([rowOn(`2026-0${i + 1}-1${round}`, i), rowOn(`2026-0${i + 1}-2${round}`, i + 10)]),
      ),
    );
    expect(results).toEqual(sinks.map(() => ({ inserted: 2, duplicates: 0 })));
    await db.sql.end();
  }
});

test("a data-class error of the partition call is not a row's data error (no bisecting into dead letters)", async () => {
  const { db } = await setup(2_000);
  const sink = new ScanSink(db.transaction);
  const forged: Row = { ...rowOn("2026-01-01", 0), day: "2026-13-45" };
  const error = await sink.write([forged]).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(PartitionSetupError);
  expect(((error as Error).cause as { code?: string }).code).toMatch(/^22/);
  expect(classifyDbError(error)).toBe("fatal");
  await db.sql.end();
});

test("a worker process's statement blocked on a lock is cancelled at its DB_STATEMENT_TIMEOUT_MS (57014), retried, then stored once", async () => {
  const timeoutMs = 1_500;
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  const dir = mkdtempSync(join(tmpdir(), "worker-timeout-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, "worker.log");
  // The client-side deadline far beyond the statement timeout: only the server's timeout can end the wait.
  const worker = spawnWorker(
    env,
    { DB_STATEMENT_TIMEOUT_MS: String(timeoutMs), DB_DEADLINE_MARGIN_MS: "20000", LOG_LEVEL: "warn" },
    { output: { file: log } },
  );
  const producer = createProducer();
  // Warm: the day's partition exists and the worker has written once.
  await produceEvents(producer, env.scansTopic, events(1));
  await waitFor(
    "the first row",
    () => tally(db.sql),
    (t) => t.rows === 1,
    60_000,
  );

  const lock = await lockScanEvents(db.directUrl);
  await produceEvents(producer, env.scansTopic, events(1));
  // The fault landed: the worker's statement waits on the lock (seen from Postgres, with when it started).
  const [blocked] = await waitFor(
    "a statement of the worker waiting on the scan_events lock",
    () => db.sql<{ started: Date; query: string }[]>`
      select query_start as started, query from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock'`,
    (rows) => rows.length > 0,
    30_000,
    50,
  );
  if (!blocked) throw new Error("unreachable");
  expect(blocked.query).toContain("scan_events");
  const retriesLogged = () =>
    (existsSync(log) ? readFileSync(log, "utf8") : "")
      .split("\n")
      .filter((l) => l.includes('"transient failure; retrying"'))
      .map((l) => JSON.parse(l) as { time: number; what: string; err: string });
  const [first] = await waitFor(
    `the worker to log a retry after its statement (started ${blocked.started.toISOString()}) was cancelled; log ${log}`,
    async () => retriesLogged(),
    (lines) => lines.length > 0,
    timeoutMs + 8_000,
    50,
  );
  if (!first) throw new Error("unreachable");
  expect(first).toMatchObject({ what: "write batch", err: "canceling statement due to statement timeout" });
  // Cancelled after the configured 1.5 s, not the default 30 s nor the client deadline (21.5 s).
  const waited = first.time - blocked.started.getTime();
  expect(waited).toBeGreaterThanOrEqual(timeoutMs - 100);
  expect(waited).toBeLessThan(timeoutMs + 1_500);
  expect(await metric(worker.metricsUrl, "worker_db_retries_total")).toBeGreaterThanOrEqual(1);
  expect(worker.proc.exitCode).toBeNull();

  await lock.release();
  const t = await waitFor(
    "both rows after the lock is released",
    () => tally(db.sql),
    (x) => x.rows === 2,
    30_000,
  );
  expect(t).toEqual({ rows: 2, counted: 2 });
  expect(await countMismatches(db.sql)).toBe(0);
}, 90_000);
