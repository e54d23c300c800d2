// The backup tools' own settings (bun run backup / restore-drill / restore-offsets), resolved once
// per process from a validated schema like the server's and the worker's. The Kafka side (brokers,
// topic, consumer group, batch sizes) is the worker's configuration (worker/config.ts).
import * as v from "valibot";
import { int, loadConfig, str } from "../../shared/config.ts";
import { localStack } from "../../shared/local-stack.ts";

export const BackupConfigSchema = v.object({
  /** The database the drill checksums (and replays into); backups cover the whole cluster. */
  BACKUP_DATABASE: str(localStack().database),
  /** Port of the drill's throwaway cluster on 127.0.0.1; 0 picks a free one. */
  DRILL_PG_PORT: int(0, 0, 65535),
  /** Bound of the restore and of the drill cluster's recovery, and of the replay. */
  DRILL_TIMEOUT_MS: int(900_000, 10_000),
});

export type BackupConfig = v.InferOutput<typeof BackupConfigSchema>;

export function loadBackupConfig(env: Record<string, string | undefined> = process.env): BackupConfig {
  return loadConfig(BackupConfigSchema, env);
}
