// Backups of the local stack's PostgreSQL cluster with pgBackRest (tools/backup/pgbackrest.ts):
//   bun run backup [--type full|diff|incr]   one backup now (default full); prints its label, sizes and duration
//   bun run backup info                       the backups in the repository and the WAL archive's range
// WAL is archived continuously (archive_command); schedules: deploy/backup/, docs/runbooks/restore.md.
import { localStack } from "../shared/local-stack.ts";
import { type BackupType, backupInfo, takeBackup } from "./backup/pgbackrest.ts";

const USAGE = "usage: bun run backup [--type full|diff|incr] | bun run backup info";
const TYPES: readonly BackupType[] = ["full", "diff", "incr"];

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

function main(args: string[]): number {
  const stack = localStack();
  if (args[0] === "info") {
    const { backups, archiveMax } = backupInfo(stack);
    console.log(`${backups.length} backup(s), oldest first; WAL archived up to ${archiveMax ?? "(none)"}`);
    for (const b of backups) {
      console.log(
        `${b.label}\t${b.type}\t${b.stop.toISOString()}\t${mb(b.databaseBytes)} database\t${mb(b.repoBytes)} in the repository`,
      );
    }
    return 0;
  }
  let type: BackupType = "full";
  if (args[0] === "--type") {
    const value = args[1] as BackupType;
    if (!TYPES.includes(value) || args.length !== 2) {
      console.error(`--type must be one of ${TYPES.join(", ")}\n${USAGE}`);
      return 2;
    }
    type = value;
  } else if (args.length > 0) {
    console.error(USAGE);
    return 2;
  }
  const b = takeBackup(stack, type);
  console.log(
    `backup ${b.label} (${b.type}${b.type === type ? "" : `, asked for ${type}: there was no full backup yet`}): ` +
      `${mb(b.databaseBytes)} database, ${mb(b.repoBytes)} in the repository, ${(b.durationMs / 1000).toFixed(1)} s, ` +
      `WAL ${b.walStart}..${b.walStop}`,
  );
  return 0;
}

if (import.meta.main) {
  try {
    process.exit(main(process.argv.slice(2)));
  } catch (error) {
    console.error(`backup failed: ${(error as Error).message}`);
    process.exit(1);
  }
}
