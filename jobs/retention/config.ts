// The retention policy and `bun run maintain`'s / `bun run archive-restore`'s settings: one
// validated schema (docs/operations.md "maintain configuration"), resolved once per run.
import * as v from "valibot";
import { ConfigError, int, loadConfig, str } from "../../shared/config.ts";
import { TOPICS, localStack } from "../../shared/local-stack.ts";
import { CLOCK_SKEW_MAX_HOURS, SCANNED_AT_MAX_AGE_HOURS } from "../../shared/pipeline-config.ts";

const HOUR_MS = 3_600_000;

/** The scans topic's retention as the topic is created with it (TOPICS.scans' retention.ms). */
export function defaultTopicRetentionHours(): number {
  return Math.ceil(Number(TOPICS.scans.config["retention.ms"]) / HOUR_MS);
}

export const MaintainConfigSchema = v.object({
  /** Straight to Postgres: the run holds a session advisory lock, which pgbouncer would not keep. */
  DATABASE_DIRECT_URL: str(localStack().directDatabaseUrl),
  /** Raw scan_events days kept in Postgres; older days are archived, verified and dropped. */
  RETENTION_RAW_DAYS: int(30, 1, 36_500),
  /** Minute counts (scan_counts) kept; older ones live on as hourly and daily counts. */
  RETENTION_MINUTE_COUNTS_DAYS: int(14, 1, 36_500),
  /** Hourly and daily counts kept; 0 keeps them forever. */
  RETENTION_ROLLUP_DAYS: int(0, 0, 365_000),
  /** dead_letters rows kept (by stored_at), replayed or not. */
  RETENTION_DEAD_LETTER_DAYS: int(30, 1, 36_500),
  /** Day partitions created ahead of today (UTC), so the first event of a day finds its partition. */
  PARTITIONS_AHEAD_DAYS: int(3, 0, 365),
  /** Where archives are written: a local directory (default: `archive/` in the stack's data dir). */
  ARCHIVE_DIR: str(`${localStack().dir}/archive`),
  /** The edge's oldest accepted scan and the clock offset it corrects (the server's settings, same variables). */
  SCANNED_AT_MAX_AGE_HOURS,
  CLOCK_SKEW_MAX_HOURS,
  /** Bound of each statement of the run (lock waits included); a day's scan may need minutes. */
  MAINTAIN_STATEMENT_TIMEOUT_MS: int(600_000, 1_000),
  /** How long dropping a day waits for the partition's lock (writers finish first) before giving up for this run. */
  MAINTAIN_LOCK_TIMEOUT_MS: int(10_000, 100),
  /** Test hook: pause this long after writing an archive's temporary file, before its rename. */
  FAULT_PAUSE_AFTER_ARCHIVE_TEMP_MS: int(0, 0),
});

export type MaintainConfig = v.InferOutput<typeof MaintainConfigSchema>;

/**
 * The policy's invariant: every scan the edge accepts falls in a raw day still kept, so a late scan
 * (a device back after weeks offline) is stored raw, not refused. The edge checks the age of the
 * scan's derived_at; its partition is the device's scanned_at, up to CLOCK_SKEW_MAX_HOURS older;
 * and a day is dropped whole (a day older than RETENTION_RAW_DAYS): hence the two margins. A scan
 * whose day was archived anyway (replayed from the topic, a worker days behind) is dead-lettered
 * with the way back (`bun run archive-restore DAY`, then `bun run dlq replay`): never lost silently.
 */
export function checkPolicy(c: MaintainConfig): void {
  const problems: string[] = [];
  const needed = c.SCANNED_AT_MAX_AGE_HOURS + c.CLOCK_SKEW_MAX_HOURS + 24;
  if (c.RETENTION_RAW_DAYS * 24 < needed) {
    problems.push(
      `RETENTION_RAW_DAYS=${c.RETENTION_RAW_DAYS} (${c.RETENTION_RAW_DAYS * 24} h) is shorter than the edge's SCANNED_AT_MAX_AGE_HOURS (${c.SCANNED_AT_MAX_AGE_HOURS}) + CLOCK_SKEW_MAX_HOURS (${c.CLOCK_SKEW_MAX_HOURS}) + one day = ${needed} h: the edge would accept scans of days already archived; raise it to at least ${Math.ceil(needed / 24)}, or lower the edge's maximum event age`,
    );
  }
  if (c.RETENTION_ROLLUP_DAYS !== 0 && c.RETENTION_ROLLUP_DAYS <= c.RETENTION_MINUTE_COUNTS_DAYS) {
    problems.push(
      `RETENTION_ROLLUP_DAYS=${c.RETENTION_ROLLUP_DAYS} must be 0 (forever) or exceed RETENTION_MINUTE_COUNTS_DAYS=${c.RETENTION_MINUTE_COUNTS_DAYS}: the rollups are what is left once minutes are pruned`,
    );
  }
  if (problems.length) throw new ConfigError(problems);
}

export function loadMaintainConfig(env: Record<string, string | undefined> = process.env): MaintainConfig {
  const c = loadConfig(MaintainConfigSchema, env);
  checkPolicy(c);
  return c;
}
