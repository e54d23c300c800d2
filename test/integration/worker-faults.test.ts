// Faults under load: kill -9 between the database commit and the offset commit, Postgres down for
// 10 s, and workers joining and leaving the group while events flow. Nothing lost, nothing twice.
import { expect, test } from "bun:test";
import postgres from "postgres";
import { startPostgres, stopPostgres } from "../../scripts/stack/postgres.ts";
import { createProducer, stack } from "../helpers/kafka.ts";
import { countMismatches, createDatabase, tally } from "../helpers/postgres.ts";
import { events, eventually, metric, produceEvents, spawnWorker, workerEnv } from "../helpers/worker.ts";

test("kill -9 between the DB commit and the offset commit, many times: zero lost, zero duplicated", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 4);
  const producer = createProducer();
  // Small batches and a long pause after each DB commit: most kills land in that window, so the
  // restarted worker must replay batches that are already in Postgres.
  const fault = { FAULT_DELAY_BEFORE_COMMIT_MS: "400", BATCH_MAX_ROWS: "200" };
  let produced = 0;
  let worker = spawnWorker(env, fault);
  for (let round = 0; round < 8; round++) {
    await produceEvents(producer, env.scansTopic, events(500, 50));
    produced += 500;
    await Bun.sleep(300 + Math.random() * 700);
    worker.proc.kill("SIGKILL");
    await worker.proc.exited;
    worker = spawnWorker(env, fault);
  }
  expect(await eventually(async () => (await tally(db.sql)).rows === produced, 90_000)).toBe(true);
  await Bun.sleep(1_000); // any replay still in flight would show up as extra counts
  expect(await tally(db.sql)).toEqual({ rows: produced, distinct_ids: produced, counted: produced });
  expect(await countMismatches(db.sql)).toBe(0);
  // The kills did hit the window: the restarted workers saw rows that were already stored.
  expect(await metric(worker.metricsUrl, "worker_rows_inserted_total")).toBeLessThanOrEqual(produced);
}, 180_000);

test("Postgres stopped for 10 s under load: the worker retries with paused partitions, then catches up", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url);
  const producer = createProducer();
  const { proc, metricsUrl } = spawnWorker(env, { LOG_LEVEL: process.env.DEBUG_WORKER ?? "warn" });
  await produceEvents(producer, env.scansTopic, events(1_000));
  expect(await eventually(async () => (await tally(db.sql)).rows === 1_000)).toBe(true);
  await db.sql.end(); // the test's own pool is not under test here; verification below goes direct
  try {
    await stopPostgres(stack);
    await produceEvents(producer, env.scansTopic, events(1_000));
    await Bun.sleep(10_000);
    expect(proc.exitCode).toBeNull(); // still alive, retrying
  } finally {
    await startPostgres(stack);
  }
  await produceEvents(producer, env.scansTopic, events(1_000));
  // Checked over a direct connection: the test's own pool need not ride out pgbouncer's recovery.
  const direct = postgres(db.directUrl, { max: 1, onnotice: () => {} });
  try {
    expect(await eventually(async () => (await tally(direct)).rows === 3_000, 90_000)).toBe(true);
    expect(await tally(direct)).toEqual({ rows: 3_000, distinct_ids: 3_000, counted: 3_000 });
  } finally {
    await direct.end();
  }
  expect(proc.exitCode).toBeNull(); // the same worker process rode out the outage
  // The outage outlasted pgbouncer's query_wait_timeout (5 s): the worker saw errors and retried.
  expect(await metric(metricsUrl, "worker_db_retries_total")).toBeGreaterThan(0);
}, 180_000);

test("two and then three workers, one leaving, while producing: nothing lost or duplicated", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 12);
  const producer = createProducer();
  let produced = 0;
  const produce = async (n: number) => {
    await produceEvents(producer, env.scansTopic, events(n, 97));
    produced += n;
  };
  const a = spawnWorker(env);
  await produce(2_000);
  const b = spawnWorker(env);
  for (let i = 0; i < 5; i++) {
    await produce(500);
    await Bun.sleep(200);
  }
  const c = spawnWorker(env);
  for (let i = 0; i < 5; i++) {
    await produce(500);
    await Bun.sleep(200);
  }
  a.proc.kill("SIGTERM");
  expect(await a.proc.exited).toBe(0);
  await produce(2_000);
  expect(await eventually(async () => (await tally(db.sql)).rows === produced, 90_000)).toBe(true);
  expect(await tally(db.sql)).toEqual({ rows: produced, distinct_ids: produced, counted: produced });
  expect(await countMismatches(db.sql)).toBe(0);
  // Both remaining workers did real work.
  expect(await metric(b.metricsUrl, "worker_rows_inserted_total")).toBeGreaterThan(0);
  expect(await metric(c.metricsUrl, "worker_rows_inserted_total")).toBeGreaterThan(0);
}, 180_000);
