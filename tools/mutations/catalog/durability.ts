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
];
