// Hand-made mutations: see tools/mutations/types.ts.
import type { Mutation } from "../types.ts";

export const mutations: Mutation[] = [
  {
    id: "retention-drop-recheck-neutralised",
    promise:
      "retention loses nothing: an archived day is dropped only once its archive is read back equal to it (late rows since stop the drop)",
    file: "jobs/retention/maintain.ts",
    find: "    if (!sameDigest(now, manifest)) {",
    replace: "    if (!sameDigest(now, now)) {",
    killers: ["test/integration/retention.test.ts"],
    testNamePattern: "a row arriving after the archive is verified",
    observed:
      "expect(await direct`select 1 from scan_events where event_id = ${lateId}::uuid`).toHaveLength(1): Received length: 0 (the day was dropped with the late row)",
  },
  {
    id: "retention-fresh-archive-not-verified",
    promise: "retention loses nothing: an archived day is dropped only once its archive is read back equal to it",
    file: "jobs/retention/maintain.ts",
    find: "  return { manifest: await verifyArchive(paths.manifest, digest), reused };",
    replace: "  return { manifest, reused };",
    killers: ["test/integration/retention.test.ts"],
    testNamePattern: "a freshly written archive that does not read back",
    observed:
      "expect(summary?.failed).toEqual([{ day, reason: /reads back as 24 rows, …; its manifest says 24 rows, / }]): received [] (the day was dropped on a file holding one changed row)",
  },
  {
    id: "worker-statement-timeout-hard-coded",
    promise:
      "every database write is bounded: the worker's statements are cancelled at DB_STATEMENT_TIMEOUT_MS (57014, retried)",
    file: "worker/main.ts",
    find: "    statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,",
    replace: "    statementTimeoutMs: 30_000,",
    killers: ["test/integration/worker-db.test.ts"],
    testNamePattern: "a worker process's statement blocked on a lock",
    observed:
      "timed out after 9500 ms waiting for the worker to log a retry after its statement (started …) was cancelled; log …/worker.log; last saw []",
  },
  {
    id: "restore-rewind-one-batch-short",
    promise:
      "after a restore the workers replay the events acknowledged after the recovery target (docs/runbooks/restore.md): the group resumes below every batch that may be missing",
    file: "jobs/offsets.ts",
    find: "  writesInFlight > 1 ? writesInFlight * batchMaxRows : 0;",
    replace: "  (writesInFlight - 1) * batchMaxRows;",
    killers: ["test/integration/restore-drill.test.ts"],
    testNamePattern: "a restore to a moment when a batch was stored|restore-offsets rewinds",
    observed:
      'drill: replay problems ["scan_events scan_events_…: expected {…"rows":550…}, restored {…"rows":450…}"]; restore-offsets: committed next 85/91/104, expected 55/61/74',
  },
  {
    id: "restore-rewind-zero",
    promise:
      "after a restore the workers replay the events acknowledged after the recovery target: the group resumes below every batch that may be missing",
    file: "jobs/offsets.ts",
    find: "  writesInFlight > 1 ? writesInFlight * batchMaxRows : 0;",
    replace: "  writesInFlight > 1 ? writesInFlight * batchMaxRows * 0 : 0;",
    killers: ["test/integration/restore-drill.test.ts"],
    testNamePattern: "a restore to a moment when a batch was stored|restore-offsets rewinds",
    observed:
      'drill: replay problems ["scan_events scan_events_…: expected {…"rows":550…}, restored {…"rows":450…}"]; restore-offsets: committed next 115/121/134, expected 55/61/74',
  },
  {
    id: "restore-drill-ignores-writes-in-flight",
    promise: "the restore drill's replay resumes where restore-offsets would (rewind from WRITES_IN_FLIGHT)",
    file: "tools/restore-drill.ts",
    find: "rewind: rewindFor(worker.WRITES_IN_FLIGHT, worker.BATCH_MAX_ROWS),",
    replace: "rewind: rewindFor(1, worker.BATCH_MAX_ROWS),",
    killers: ["test/integration/restore-drill.test.ts"],
    testNamePattern: "a restore to a moment when a batch was stored",
    observed:
      'expect(r.replay?.problems).toEqual([]): ["scan_events scan_events_…: expected {…"rows":550…}, restored {…"rows":450…}"]',
  },
  {
    id: "restore-offsets-ignores-writes-in-flight",
    promise:
      "restore-offsets moves the sink group back below every batch that may be missing (WRITES_IN_FLIGHT × BATCH_MAX_ROWS)",
    file: "jobs/restore-offsets.ts",
    find: "const rewind = rewindFor(config.WRITES_IN_FLIGHT, config.BATCH_MAX_ROWS);",
    replace: "const rewind = rewindFor(1, config.BATCH_MAX_ROWS);",
    killers: ["test/integration/restore-drill.test.ts"],
    testNamePattern: "restore-offsets rewinds",
    observed: "expect(committed).toEqual(…): next 115/121/134 received, 55/61/74 expected",
  },
  {
    id: "sink-counts-replays-again",
    promise:
      "every event is stored once and counted once in scan_counts (replays are no-ops), also after a restore's replay",
    file: "worker/sink.ts",
    find: "count(*) from ins\n    group by 1, 2",
    replace: "count(*) from scan_stage_v2\n    group by 1, 2",
    killers: ["test/integration/restore-drill.test.ts"],
    testNamePattern: "a restore to a moment when a batch was stored|restore-offsets rewinds",
    observed:
      'drill: replay problems ["20 scan_counts bucket(s) differ from a recount of scan_events after the replay (sum(scan_counts.count) 650 for 550 stored events): counted twice"]; restore-offsets: countMismatches 90, expected 0',
  },
];
