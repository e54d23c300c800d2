// The crash suite's short form: every fault in turn under traffic, each a kill -9; every 202 lands
// exactly once and is counted exactly once, and nothing is dead-lettered (counted in the
// dead-letter topic). Each fault must show that it landed where its name says (see
// bench/crash-suite.ts): the killed worker held rows stored but not committed, the killed server
// had requests open that it never answered, the broker and Postgres restarted from an unclean stop,
// the database outages met worker writes. A fault that left no such trace fails the test.
//
// Mutations this test was checked against (each applied alone, then reverted;
// tools/mutations/catalog/faults.ts):
//
// | mutation                                                  | failed: message                                               |
// |-----------------------------------------------------------|---------------------------------------------------------------|
// | worker/scan-loop.ts: offsets committed before DB write    | kill -9 a worker: rows the killed worker held stored but      |
// |                                                           | not committed: expected > 0, received 0                       |
// | worker/scan-loop.ts: FAULT_DELAY_BEFORE_COMMIT_MS ignored | the same (the natural window was never seen in 15 s)          |
// | worker/pool.ts: a worker that exits is not restarted      | kill -9 a worker: a new worker pid: expected > 0, received 0  |
// | shared/scan-events.ts: valid ids ending in "0" refused    | messages in the dead-letter topic: expected 0, received 525   |
// | worker/sink.ts: INSERT without ON CONFLICT DO NOTHING     | messages in the dead-letter topic: expected 0, received 3914  |
// |                                                           | (lost 0, counts exact: only this check sees it)               |
// | tools/stack/processes.ts: killPidFile sends SIGTERM       | the broker's log after its restart: expected to match         |
// |                                                           | /since no clean shutdown file was found/, received ""         |
import { expect, test } from "bun:test";
import { runCrashSuite } from "../../bench/crash-suite.ts";

test("kill -9 of a worker, the server, the broker, Postgres, pgbouncer: nothing acknowledged is lost, counted twice or dead-lettered", async () => {
  const lines: string[] = [];
  const result = await runCrashSuite({ rate: 200, settleS: 5, log: (l) => lines.push(l) });
  console.log(lines.join("\n"));
  const byFault = Object.fromEntries(result.faults.map((f) => [f.fault, f]));
  expect(Object.keys(byFault)).toEqual([
    "steady (no fault)",
    "kill -9 a worker",
    "kill -9 the server",
    "kill -9 the broker",
    "kill -9 Postgres",
    "kill -9 pgbouncer",
  ]);

  // The worker died holding rows stored in Postgres whose offsets the group had not committed
  // (read after it was dead), and the supervisor started a new one.
  const worker = byFault["kill -9 a worker"];
  const windowRows = (worker?.window ?? []).reduce((a, w) => a + w.rows, 0);
  expect(windowRows, "kill -9 a worker: rows the killed worker held stored but not committed").toBeGreaterThan(0);
  expect(worker?.killedPid ?? 0).toBeGreaterThan(0);
  expect(worker?.newWorkerPid ?? 0, `kill -9 a worker: a new worker pid after ${worker?.killedPid}`).toBeGreaterThan(0);
  expect(worker?.newWorkerPid).not.toBe(worker?.killedPid);

  // The server had requests open when it was killed: each held one had been sent before the kill
  // and ended after it with no answer (closed or reset), not refused afterwards.
  const server = byFault["kill -9 the server"];
  const killedAt = server?.killedAt ?? Number.NaN;
  const held = (server?.inFlight ?? []).filter((r) => r.held);
  expect(held.length, "kill -9 the server: requests held open at the kill").toBeGreaterThan(0);
  expect(
    held.filter(
      (r) =>
        r.connectedAt === null ||
        r.sentAt === null ||
        r.sentAt > killedAt ||
        r.status !== null ||
        r.endedAt === null ||
        r.endedAt < killedAt,
    ),
    "kill -9 the server: held requests not cut off by the kill (sent before it, no answer, ended after it)",
  ).toEqual([]);
  // And a complete request queued after them was answered before the kill: the server had
  // accepted the held ones (a 202 among them is acknowledged and checked with the rest).
  expect(
    (server?.inFlight ?? []).some((r) => !r.held && r.answeredAt !== null && r.answeredAt <= killedAt),
    "kill -9 the server: a request queued after the held ones answered before the kill",
  ).toBe(true);

  // The broker and Postgres were killed, not stopped: each restarted from an unclean stop. Their
  // and pgbouncer's outages met traffic (non-202 answers) or worker writes (retries).
  for (const name of ["kill -9 the broker", "kill -9 Postgres", "kill -9 pgbouncer"]) {
    expect(byFault[name]?.killedPid ?? 0, `${name}: the pid killed`).toBeGreaterThan(0);
  }
  expect(byFault["kill -9 the broker"]?.recovery ?? "", "the broker's log after its restart").toMatch(
    /since no clean shutdown file was found/,
  );
  expect(byFault["kill -9 Postgres"]?.recovery ?? "", "Postgres' log after its restart").toMatch(
    /automatic recovery in progress/,
  );
  expect(byFault["kill -9 the broker"]?.faultAnswers ?? 0, "non-202 answers with the broker down").toBeGreaterThan(0);
  expect(byFault["kill -9 Postgres"]?.dbRetries ?? 0, "worker retries with Postgres down").toBeGreaterThan(0);
  expect(byFault["kill -9 pgbouncer"]?.dbRetries ?? 0, "worker retries with pgbouncer down").toBeGreaterThan(0);
  // Traffic was acknowledged in every phase (the settle period after a recovery alone meets this:
  // it shows the pipeline recovered, not that the fault overlapped traffic; the evidence above does).
  for (const f of result.faults) expect(f.acknowledged, `${f.fault}: events acknowledged`).toBeGreaterThan(0);

  // Nothing dead-lettered: the edge accepts only what Postgres stores. Counted in the dead-letter
  // topic itself (and its table), so a letter written just before a kill counts too.
  expect(result.deadLettered, "messages in the run's dead-letter topic").toBe(0);
  expect(result.deadLetterRows, "rows in dead_letters").toBe(0);
  // Every acknowledged event stored once and counted once, and no fault without evidence.
  expect(result.check.missing, "acknowledged events not stored").toBe(0);
  expect(result.check.acknowledgedRows).toBe(result.check.acknowledged);
  expect(result.check.counted).toBe(result.check.acknowledged + result.check.unacknowledgedStored);
  expect(result.check.countMismatches).toBe(0);
  expect(result.failures).toEqual([]);
}, 400_000);
