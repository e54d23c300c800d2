// A stall is visible and healed: the sink is frozen (scan_events locked by another session, so the
// worker's write waits without any error), and then
// - the committed lag, read from the broker by the supervisor, rises and its stall clock runs;
// - the worker's own /health fails, naming the stalled partitions;
// - the supervisor restarts the worker for failing its probe;
// - once the lock is released, every event is stored exactly once.
//
// Mutations that this test catches (each tried once, then reverted):
// | mutation                                                     | what fails                         |
// | PartitionProgress.polled() not called by the scan loop       | /health never reports "stalled"    |
// | supervisor never calls probe()                               | no restart for reason "unhealthy"  |
// | supervisor's lag gauge set from the worker, not the broker   | committed lag stays 0 while frozen |
import { expect, test } from "bun:test";
import { sum } from "../../shared/prometheus-text.ts";
import { createDatabase, createProducer, lockScanEvents, spawnSupervisor, workerEnv } from "../helpers/fixtures.ts";
import { countMismatches, tally } from "../helpers/postgres.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { events, produceEvents, scrape } from "../helpers/worker.ts";

await ensureStack();

test("a frozen sink: committed lag rises, liveness fails, the supervisor restarts the worker, then all is stored once", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 3);
  const {
    proc: supervisor,
    workerPort,
    supervisorPort,
    workerPids,
  } = await spawnSupervisor(env, {
    workers: 1,
    extra: {
      // The write waits on the lock with no error: no statement timeout inside the test's window.
      DB_STATEMENT_TIMEOUT_MS: "120000",
      DB_RETRY_MAX_MS: "1000",
      STALL_TIMEOUT_MS: "3000",
      HEALTH_CHECK_INTERVAL_MS: "500",
      HEALTH_CHECK_FAILURES: "2",
      LAG_INTERVAL_MS: "500",
      SHUTDOWN_TIMEOUT_MS: "2000",
    },
  });
  const supervisorMetrics = () => scrape(`http://127.0.0.1:${supervisorPort}/metrics`);
  const health = async () => {
    const res = await fetch(`http://127.0.0.1:${workerPort}/health`);
    return { status: res.status, body: (await res.json()) as { status: string; reason?: string } };
  };

  const producer = createProducer();
  await produceEvents(producer, env.scansTopic, events(600, 60));
  await waitFor(
    "the first 600 rows",
    () => tally(db.sql),
    (t) => t.rows === 600,
  );
  await waitFor("committed lag 0 before the freeze", supervisorMetrics, (m) =>
    m.some((s) => s.name === "consumer_group_lag") ? sum(m, "consumer_group_lag") === 0 : false,
  );
  const [firstWorker] = workerPids();
  expect((await health()).status).toBe(200);

  // Freeze the sink: another session holds scan_events locked.
  const lock = await lockScanEvents(db.directUrl);
  await produceEvents(producer, env.scansTopic, events(600, 60));

  // Seen from outside the worker: the committed lag and the stall clock, from the broker.
  const frozen = await waitFor(
    "committed lag 600 with the stall clock running",
    supervisorMetrics,
    (m) => sum(m, "consumer_group_lag") === 600 && sum(m, "consumer_group_stalled_seconds") > 2,
  );
  expect(sum(frozen, "consumer_group_pending")).toBeGreaterThan(0);
  // Seen by the worker itself: liveness fails, naming the partitions.
  const stalled = await waitFor("the worker's /health to report a stall", health, (h) => h.status === 503, 20_000);
  expect(stalled.body.status).toBe("stalled");
  expect(stalled.body.reason).toMatch(/^partitions [\d, ]+ have pending work and no commit for over 3000 ms$/);
  // Healed: the supervisor restarts the worker for failing its probe.
  await waitFor(
    "a restart for failing the liveness probe",
    supervisorMetrics,
    (m) => sum(m, "supervisor_worker_restarts_total", { reason: "unhealthy" }) >= 1,
    30_000,
  );
  await waitFor(
    "a new worker process",
    async () => workerPids(),
    (pids) => pids.length === 1 && pids[0] !== firstWorker,
  );

  await lock.release();
  const t = await waitFor(
    "all 1,200 rows after the lock is released",
    () => tally(db.sql),
    (x) => x.rows === 1_200,
    90_000,
  );
  await waitFor("committed lag back to 0", supervisorMetrics, (m) => sum(m, "consumer_group_lag") === 0, 30_000);
  expect(await tally(db.sql)).toEqual(t);
  expect(t).toEqual({ rows: 1_200, counted: 1_200 });
  expect(await countMismatches(db.sql)).toBe(0);
  expect(sum(await supervisorMetrics(), "supervisor_worker_restarts_total", { reason: "exit" })).toBe(0);

  supervisor.kill("SIGTERM");
  expect(await supervisor.exited).toBe(0);
}, 180_000);
