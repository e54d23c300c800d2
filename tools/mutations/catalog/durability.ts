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
];
