// Hand-made mutations: see tools/mutations/types.ts.
import type { Mutation } from "../types.ts";

const REPLICATED = "test/integration/kafka-replicated.test.ts";
const LEADER_KILL = "kill -9 of a partition leader";
const CRASH = "test/integration/crash-suite.test.ts";
const CRASH_TEST = "kill -9 of a worker, the server";

export const mutations: Mutation[] = [
  {
    id: "sink-counts-each-batch-twice",
    promise: "Every event is stored once and counted once in scan_counts (replays and client retries are no-ops)",
    file: "worker/sink.ts",
    // Most batches count on the optimistic path (worker/sink.ts, COUNTS); the staging path's
    // counts only run for batches holding a stored row, which this test's run need not have.
    find: "  select qr_id, bucket, count\n  from unnest",
    replace: "  select qr_id, bucket, 2 * count\n  from unnest",
    killers: [REPLICATED],
    testNamePattern: LEADER_KILL,
    observed:
      'storedOnce failures: "sum(scan_counts.count) is 2194, expected 1146 (1132 acknowledged + 14 unacknowledged events stored): counted twice", "663 scan_counts buckets differ from a recount of scan_events"',
  },
  {
    id: "scan-loop-commits-offsets-before-the-write",
    promise: "An event answered 202 is never lost: a worker commits a batch's offsets only after Postgres has it",
    file: "worker/scan-loop.ts",
    find: "  const started = performance.now();\n  // Each attempt isolates afresh",
    replace:
      "  await previous;\n  await commitDurable(batchCommitter(o, batch), offsets);\n  const started = performance.now();\n  // Each attempt isolates afresh",
    killers: [CRASH],
    testNamePattern: CRASH_TEST,
    observed:
      "kill -9 a worker: rows the killed worker held stored but not committed: expected > 0, received 0 (suite: worker's partitions 0,1,2,3,4,5 never held stored, uncommitted rows in 15 s)",
  },
  {
    id: "scan-loop-ignores-fault-delay-before-commit",
    promise:
      "FAULT_DELAY_BEFORE_COMMIT_MS pauses between the DB commit and the offset commit (the crash suite's worker kill lands in that window)",
    file: "worker/scan-loop.ts",
    find: "  if (config.FAULT_DELAY_BEFORE_COMMIT_MS) await Bun.sleep(config.FAULT_DELAY_BEFORE_COMMIT_MS);",
    replace: "",
    killers: [CRASH],
    testNamePattern: CRASH_TEST,
    observed:
      "kill -9 a worker: rows the killed worker held stored but not committed: expected > 0, received 0 (the natural window, a few ms, was never seen in 15 s)",
  },
  {
    id: "supervisor-does-not-restart-a-dead-worker",
    promise: "The supervisor restarts a worker that dies",
    file: "worker/pool.ts",
    find: "          if (!this.stopping) this.startSlot(slot);",
    replace: "          if (this.stopping) this.startSlot(slot);",
    killers: [CRASH],
    testNamePattern: CRASH_TEST,
    observed:
      "kill -9 a worker: a new worker pid after <pid>: expected > 0, received 0 (suite: no new worker pid within 30 s of killing <pid>); data checks passed",
  },
  {
    id: "decode-dead-letters-ids-ending-in-0",
    promise: "An event the edge accepts is never dead-lettered",
    file: "shared/scan-events.ts",
    find: "  const record = result.output;",
    replace:
      '  const record = result.output;\n  if (record.event_id.endsWith("0")) return { message, error: "refused: event_id ends in 0" };',
    killers: [CRASH],
    testNamePattern: CRASH_TEST,
    observed:
      "messages in the run's dead-letter topic: expected 0, received 525 (464 rows in dead_letters; also 453 of 7016 acknowledged lost)",
  },
  {
    id: "sink-insert-without-on-conflict-do-nothing",
    promise: "Replays and client retries are no-ops (never dead-lettered)",
    file: "worker/sink.ts",
    find: "    on conflict do nothing\n    returning qr_id, derived_at",
    replace: "    returning qr_id, derived_at",
    killers: [CRASH],
    testNamePattern: CRASH_TEST,
    observed:
      "messages in the run's dead-letter topic: expected 0, received 3914 (dead_letters: duplicate key value violates unique constraint); lost 0, counts exact: only the dead-letter count sees it",
  },
  {
    id: "stack-kill-sends-sigterm",
    promise:
      "The crash suite kills the broker, Postgres and pgbouncer with kill -9 (an unclean stop), not a graceful one",
    file: "tools/stack/processes.ts",
    find: '        process.kill(p, "SIGKILL");',
    replace: '        process.kill(p, "SIGTERM");',
    killers: [CRASH],
    testNamePattern: CRASH_TEST,
    observed:
      "the broker's log after its restart: expected to match /since no clean shutdown file was found/, received \"\" (suite: the same for Postgres' crash recovery line)",
  },
];
