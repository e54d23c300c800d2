// Backups of the local stack's PostgreSQL cluster with pgBackRest (tools/backup/pgbackrest.ts):
//   bun run backup [--type full|diff|incr]   one backup now (default full); prints its label, sizes and duration
//   bun run backup info                       the backups in the repository and the WAL archive's range
// WAL is archived continuously (archive_command); schedules: deploy/backup/, docs/runbooks/restore.md.
import { type CliSpec, MAIN, UsageError, parseCommand, runCli } from "../shared/cli.ts";
import { localStack } from "../shared/local-stack.ts";
import { type BackupType, backupInfo, takeBackup } from "./backup/pgbackrest.ts";

const TYPES: readonly BackupType[] = ["full", "diff", "incr"];

export const BACKUP_CLI: CliSpec = {
  program: "bun run backup",
  description: "Backups of the local stack's PostgreSQL cluster with pgBackRest.",
  commands: {
    [MAIN]: {
      args: "",
      description: "one backup now; prints its label, sizes and duration",
      options: { type: { type: "string", value: TYPES.join("|"), description: "default full" } },
    },
    info: { args: "", description: "the backups in the repository and the WAL archive's range", options: {} },
  },
};

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

async function main(argv: string[]): Promise<number> {
  const stack = localStack();
  const { command, values } = parseCommand(BACKUP_CLI, argv);
  if (command === "info") {
    const { backups, archiveMax } = backupInfo(stack);
    console.log(`${backups.length} backup(s), oldest first; WAL archived up to ${archiveMax ?? "(none)"}`);
    for (const b of backups) {
      console.log(
        `${b.label}\t${b.type}\t${b.stop.toISOString()}\t${mb(b.databaseBytes)} database\t${mb(b.repoBytes)} in the repository`,
      );
    }
    return 0;
  }
  const type = (values.type ?? "full") as BackupType;
  if (!TYPES.includes(type)) throw new UsageError(`--type must be one of ${TYPES.join(", ")}`);
  const b = takeBackup(stack, type);
  console.log(
    `backup ${b.label} (${b.type}${b.type === type ? "" : `, asked for ${type}: there was no full backup yet`}): ` +
      `${mb(b.databaseBytes)} database, ${mb(b.repoBytes)} in the repository, ${(b.durationMs / 1000).toFixed(1)} s, ` +
      `WAL ${b.walStart}..${b.walStop}`,
  );
  return 0;
}

if (import.meta.main) await runCli(BACKUP_CLI, main);
