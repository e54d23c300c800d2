// Retention, run on a schedule (ops/ holds a cron line, a systemd timer and a Kubernetes CronJob):
//   bun run maintain
// Creates day partitions ahead, rolls minute counts up into hourly and daily counts, archives raw
// days past RETENTION_RAW_DAYS to verified Parquet files and drops them, prunes dead letters.
// Every step is idempotent; a second concurrent run exits 0 saying the lock is held. A day whose
// archive cannot be verified is kept in Postgres and named, the other days and steps still run,
// and the run exits 1. Refuses a
// policy whose raw retention does not exceed the edge's maximum event age plus the topic's
// retention. Configuration: docs/operations.md "maintain configuration"; steps: "Retention".
import { type CliSpec, MAIN, parseCommand, runCli } from "../shared/cli.ts";
import { type MaintainConfig, loadMaintainConfig } from "./retention/config.ts";
import {
  type MaintainHooks,
  type MaintainSummary,
  maintain,
  maintenanceSession,
  withMaintenanceLock,
} from "./retention/maintain.ts";

/** One run; `hooks` are test hooks (jobs/retention/maintain.ts MaintainHooks), never passed by the CLI. */
export async function runMaintain(
  c: MaintainConfig,
  log = (line: string) => console.log(`maintain: ${line}`),
  hooks: MaintainHooks = {},
) {
  const sql = maintenanceSession(c);
  try {
    const summary = await withMaintenanceLock(sql, () => maintain(sql, c, log, hooks));
    if (summary === null) log("another maintain or archive-restore run holds the lock; nothing done");
    return summary satisfies MaintainSummary | null;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export const MAINTAIN_CLI: CliSpec = {
  program: "bun run maintain",
  description:
    "Retention: partitions ahead, rollups, verified Parquet archives of old raw days, dead letters pruned. Exit 1 if a day could not be archived.",
  commands: { [MAIN]: { args: "", description: "one run (idempotent; a concurrent run exits 0)", options: {} } },
};

if (import.meta.main) {
  await runCli(MAINTAIN_CLI, async (argv) => {
    parseCommand(MAINTAIN_CLI, argv);
    const summary = await runMaintain(loadMaintainConfig());
    if (summary?.failed.length) {
      console.error(
        `maintain failed: ${summary.failed.length} day(s) not archived (their partitions are kept): ${summary.failed.map((f) => `${f.day}: ${f.reason}`).join("; ")}. See docs/runbooks/storage-budget.md`,
      );
      return 1;
    }
    return 0;
  });
}
