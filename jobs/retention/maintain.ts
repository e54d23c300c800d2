// `bun run maintain`'s steps (docs/operations.md "Retention"). Each is idempotent, and a run holds
// one session advisory lock (a second concurrent run, or an archive-restore, exits saying so):
//   1. day partitions created ahead;
//   2. minute counts rolled up into hourly and daily counts, and pruned past their retention;
//   3. raw days past their retention archived to Parquet (write-once, manifest, checksums),
//   4. read back and verified, and only then detached and dropped, the day recorded in
//      archived_days in the same transaction;
//   5. dead letters pruned past their retention.
import { existsSync } from "node:fs";
import { basename } from "node:path";
import postgres, { type Sql } from "postgres";
import { SQLSTATE, hasSqlState } from "../../shared/db-errors.ts";
import {
  ARCHIVE_COLUMNS,
  ARCHIVE_SCHEMA_VERSION,
  ArchiveError,
  type DayDigest,
  type Manifest,
  archivePaths,
  describeDigest,
  digestInDb,
  ident,
  partitionOf,
  readArchive,
  removeTemporaries,
  sameDigest,
  sha256File,
  verifyArchive,
  writeArchive,
  writeFileAtomic,
} from "./archive.ts";
import type { MaintainConfig } from "./config.ts";

/** Held for a whole maintain or archive-restore run (session lock: direct connection only). */
export const MAINTENANCE_LOCK_KEY = 0x5153_524d; // "QSRM"

export type Log = (line: string) => void;

/** A direct session with the run's bounds; TimeZone UTC, which the archives' text columns rely on. */
export function maintenanceSession(c: MaintainConfig): Sql {
  return postgres(c.DATABASE_DIRECT_URL, {
    max: 1,
    onnotice: () => {},
    connection: {
      TimeZone: "UTC",
      statement_timeout: c.MAINTAIN_STATEMENT_TIMEOUT_MS,
      application_name: "qrscan-maintain",
    },
  });
}

/** Runs `fn` holding the maintenance lock; null (and nothing run) when another run holds it. */
export async function withMaintenanceLock<T>(sql: Sql, fn: () => Promise<T>): Promise<T | null> {
  const [row] = await sql<{ ok: boolean }[]>`select pg_try_advisory_lock(${MAINTENANCE_LOCK_KEY}) as ok`;
  if (!row?.ok) return null;
  try {
    return await fn();
  } finally {
    await sql`select pg_advisory_unlock(${MAINTENANCE_LOCK_KEY})`;
  }
}

export interface MaintainSummary {
  partitionsAhead: string[];
  hoursFolded: number;
  hoursMoved: number;
  hoursRecomputed: number;
  daysRecomputed: number;
  minutesPrunedBefore: string | null;
  rollupRowsPruned: number;
  archived: { day: string; rows: number; file: string; reused: boolean }[];
  /** Days left for the next run, with why (late rows arrived while archiving, a lock wait timed out). */
  skipped: { day: string; reason: string }[];
  /** Days whose archive is wrong (damaged, or not what the partition holds): nothing dropped; an operator acts. */
  failed: { day: string; reason: string }[];
  deadLettersPruned: number;
}

/**
 * Test hooks: a step a test runs at a given point of archiving a day, to change what the run finds
 * next (a late row, a damaged file). Only an in-process caller can pass them (`maintain`'s and
 * `runMaintain`'s last argument); `bun run maintain` never does, so in production they are absent.
 */
export interface MaintainHooks {
  /** After a new archive file is written and renamed into place, before its manifest is made and it is read back. */
  afterArchiveWritten?: (day: string, file: string) => Promise<void>;
  /** After the day's archive is verified, before the partition is locked and compared with it once more. */
  beforeDrop?: (day: string) => Promise<void>;
}

export async function maintain(
  sql: Sql,
  c: MaintainConfig,
  log: Log,
  hooks: MaintainHooks = {},
): Promise<MaintainSummary> {
  const partitionsAhead = await createPartitionsAhead(sql, c.PARTITIONS_AHEAD_DAYS);
  log(`partitions: ${partitionsAhead[0]} to ${partitionsAhead.at(-1)} present`);
  const rollup = await rollUp(sql, c);
  log(
    `rollups: ${rollup.hoursFolded} late hours added, ${rollup.hoursMoved} hours moved out of minute counts, ${rollup.hoursRecomputed} hours and ${rollup.daysRecomputed} days recomputed; minute counts kept from ${rollup.minutesPrunedBefore ?? "the start"}`,
  );
  const { archived, skipped, failed } = await archiveDays(sql, c, log, hooks);
  const deadLettersPruned = await pruneDeadLetters(sql, c.RETENTION_DEAD_LETTER_DAYS);
  log(`dead letters: ${deadLettersPruned} older than ${c.RETENTION_DEAD_LETTER_DAYS} days deleted`);
  return { partitionsAhead, ...rollup, archived, skipped, failed, deadLettersPruned };
}

// ---------------------------------------------------------------------------------------------
// 1. Partitions ahead

async function createPartitionsAhead(sql: Sql, aheadDays: number): Promise<string[]> {
  const [row] = await sql<{ days: string }[]>`
    with days as (
      select generate_series(current_date, current_date + ${aheadDays}::int, interval '1 day')::date as d
    )
    select array_to_string(array(select d from days), ',') as days,
      ensure_scan_event_partition_days(array(select d from days)) is not null as done`;
  return row?.days ? row.days.split(",") : [];
}

// ---------------------------------------------------------------------------------------------
// 2. Rollups

/**
 * One transaction, with H = rollup_state.minutes_pruned_before (before this run), C = the new
 * cutoff (midnight UTC, RETENTION_MINUTE_COUNTS_DAYS ago) and S = where recomputing starts: the
 * last run's rolled_up_to minus RECOMPUTE_OVERLAP (never before C):
 *   - minutes below H (events redriven after their hour was pruned) are added to the rollups and
 *     deleted, in one statement (what is added is exactly what is deleted);
 *   - minutes in [H, C) are deleted and their hours set to their sum (complete hours: H and C are
 *     midnights), in one statement: an hour's count is exact from then on;
 *   - closed hours in [S, this hour) are recomputed from their minutes, so the rollups are current
 *     too (a late event older than the overlap shows there once its hour is moved, above);
 *   - days touched (from H to C, and from S's day to today) are recomputed from the hours;
 *   - rows whose count is already right are not written (a rerun writes nothing); H becomes C.
 * Each minute row is read once by the move and a few times by recomputing (the overlap), however
 * long minute counts are kept. A minute row written by a worker meanwhile is either in a
 * statement's snapshot or left below the new H for the next run to add: counted once either way.
 */
const RECOMPUTE_OVERLAP = "48 hours";

async function rollUp(sql: Sql, c: MaintainConfig) {
  return sql.begin(async (tx) => {
    const [state] = await tx<{ old: string; cutoff: string; start: string; closed: string }[]>`
      with s as (
        select coalesce(minutes_pruned_before, '-infinity') as old,
          greatest(
            coalesce(minutes_pruned_before, '-infinity'),
            date_trunc('day', now() - make_interval(days => ${c.RETENTION_MINUTE_COUNTS_DAYS}), 'UTC')
          ) as cutoff,
          rolled_up_to
        from rollup_state for update
      )
      select old::text, cutoff::text,
        greatest(cutoff, coalesce(rolled_up_to - ${RECOMPUTE_OVERLAP}::interval, '-infinity'))::text as start,
        date_trunc('hour', now(), 'UTC')::text as closed
      from s`;
    if (!state) throw new Error("rollup_state has no row: is migration 0006 applied?");
    const { old, cutoff, start, closed } = state;
    const [folded] = await tx<{ hours: number }[]>`
      with moved as (
        delete from scan_counts where bucket < ${old}::text::timestamptz returning qr_id, bucket, count
      ), hours as (
        insert into scan_counts_hourly (qr_id, bucket, count)
        select qr_id, date_trunc('hour', bucket, 'UTC'), sum(count) from moved group by 1, 2
        on conflict (qr_id, bucket) do update set count = scan_counts_hourly.count + excluded.count
        returning 1
      ), days as (
        insert into scan_counts_daily (qr_id, bucket, count)
        select qr_id, date_trunc('day', bucket, 'UTC'), sum(count) from moved group by 1, 2
        on conflict (qr_id, bucket) do update set count = scan_counts_daily.count + excluded.count
        returning 1
      )
      select (select count(*) from hours)::int as hours, (select count(*) from days)::int as days`;
    const [moved] = await tx<{ hours: number }[]>`
      with moved as (
        delete from scan_counts where bucket >= ${old}::text::timestamptz and bucket < ${cutoff}::text::timestamptz
        returning qr_id, bucket, count
      ), hours as (
        insert into scan_counts_hourly (qr_id, bucket, count)
        select qr_id, date_trunc('hour', bucket, 'UTC'), sum(count) from moved group by 1, 2
        on conflict (qr_id, bucket) do update set count = excluded.count
          where scan_counts_hourly.count is distinct from excluded.count
        returning 1
      )
      select count(*)::int as hours from hours`;
    const [recomputed] = await tx<{ hours: number }[]>`
      with hours as (
        insert into scan_counts_hourly (qr_id, bucket, count)
        select qr_id, date_trunc('hour', bucket, 'UTC'), sum(count) from scan_counts
        where bucket >= ${start}::text::timestamptz and bucket < ${closed}::text::timestamptz
        group by 1, 2
        on conflict (qr_id, bucket) do update set count = excluded.count
          where scan_counts_hourly.count is distinct from excluded.count
        returning 1
      )
      select count(*)::int as hours from hours`;
    const [days] = await tx<{ days: number }[]>`
      with days as (
        insert into scan_counts_daily (qr_id, bucket, count)
        select qr_id, date_trunc('day', bucket, 'UTC'), sum(count) from scan_counts_hourly
        where (bucket >= ${old}::text::timestamptz and bucket < ${cutoff}::text::timestamptz)
          or (bucket >= date_trunc('day', ${start}::text::timestamptz, 'UTC')
            and bucket < date_trunc('day', ${closed}::text::timestamptz, 'UTC'))
        group by 1, 2
        on conflict (qr_id, bucket) do update set count = excluded.count
          where scan_counts_daily.count is distinct from excluded.count
        returning 1
      )
      select count(*)::int as days from days`;
    await tx`update rollup_state set minutes_pruned_before = ${cutoff}::text::timestamptz,
        rolled_up_to = ${closed}::text::timestamptz
      where (minutes_pruned_before, rolled_up_to)
        is distinct from (${cutoff}::text::timestamptz, ${closed}::text::timestamptz)`;
    let rollupRowsPruned = 0;
    if (c.RETENTION_ROLLUP_DAYS > 0) {
      const horizon = sql`date_trunc('day', now() - make_interval(days => ${c.RETENTION_ROLLUP_DAYS}), 'UTC')`;
      const h = await tx`delete from scan_counts_hourly where bucket < ${horizon}`;
      const d = await tx`delete from scan_counts_daily where bucket < ${horizon}`;
      rollupRowsPruned = h.count + d.count;
    }
    return {
      hoursFolded: folded?.hours ?? 0,
      hoursMoved: moved?.hours ?? 0,
      hoursRecomputed: recomputed?.hours ?? 0,
      daysRecomputed: days?.days ?? 0,
      minutesPrunedBefore: cutoff === "-infinity" ? null : cutoff,
      rollupRowsPruned,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// 3-4. Archive, verify, drop

/** Day partitions of scan_events older than RETENTION_RAW_DAYS (day < today - N), oldest first. */
async function expiredDays(sql: Sql, rawDays: number): Promise<string[]> {
  const rows = await sql<{ day: string }[]>`
    select to_char(to_date(substr(c.relname, 13), 'YYYYMMDD'), 'YYYY-MM-DD') as day
    from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'scan_events'::regclass and c.relname ~ '^scan_events_[0-9]{8}$'
      and to_date(substr(c.relname, 13), 'YYYYMMDD') < current_date - ${rawDays}::int
    order by 1`;
  return rows.map((r) => r.day);
}

async function checkColumns(sql: Sql): Promise<void> {
  const rows = await sql<{ name: string }[]>`
    select attname as name from pg_attribute
    where attrelid = 'scan_events'::regclass and attnum > 0 and not attisdropped order by attnum`;
  const actual = rows.map((r) => r.name).join(",");
  if (actual !== ARCHIVE_COLUMNS.join(",")) {
    throw new ArchiveError(
      `scan_events has columns ${actual}; archive schema version ${ARCHIVE_SCHEMA_VERSION} has ${ARCHIVE_COLUMNS.join(",")}: update ARCHIVE_COLUMNS and bump ARCHIVE_SCHEMA_VERSION (jobs/retention/archive.ts) before archiving`,
    );
  }
}

async function archiveDays(sql: Sql, c: MaintainConfig, log: Log, hooks: MaintainHooks) {
  const archived: MaintainSummary["archived"] = [];
  const skipped: MaintainSummary["skipped"] = [];
  const failed: MaintainSummary["failed"] = [];
  const days = await expiredDays(sql, c.RETENTION_RAW_DAYS);
  if (days.length === 0) {
    log(`archive: no day older than ${c.RETENTION_RAW_DAYS} days in Postgres`);
    return { archived, skipped, failed };
  }
  await checkColumns(sql);
  for (const day of days) {
    for (const name of removeTemporaries(c.ARCHIVE_DIR, day)) log(`archive: removed ${name}, left by a killed run`);
    try {
      const { manifest, reused } = await archiveDay(sql, c, day, hooks);
      await hooks.beforeDrop?.(day);
      await dropDay(sql, c, day, manifest);
      archived.push({ day, rows: manifest.rows, file: manifest.file, reused });
      log(
        `archive: ${day} ${reused ? "already archived in" : "archived to"} ${manifest.file} (${manifest.rows} rows, verified), partition dropped`,
      );
    } catch (error) {
      if (error instanceof DayChangedError || isLockTimeout(error)) {
        skipped.push({ day, reason: (error as Error).message });
        log(`archive: ${day} left for the next run: ${(error as Error).message}`);
      } else if (error instanceof ArchiveError) {
        // The other days and steps still run; the run exits non-zero naming this one.
        failed.push({ day, reason: error.message });
        log(`archive: ${day} NOT archived, partition kept: ${error.message}`);
      } else throw error;
    }
  }
  return { archived, skipped, failed };
}

/** SQLSTATE 55P03: the partition's lock was not granted within MAINTAIN_LOCK_TIMEOUT_MS (writers on it). */
const isLockTimeout = (error: unknown) => hasSqlState(error, SQLSTATE.lock_not_available);

/** The partition no longer matches what was archived (late rows): the next run archives it anew. */
class DayChangedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DayChangedError";
  }
}

/** A verified archive of the day as it is now: an existing one is reused, else one is written. */
async function archiveDay(
  sql: Sql,
  c: MaintainConfig,
  day: string,
  hooks: MaintainHooks,
): Promise<{ manifest: Manifest; reused: boolean }> {
  const partition = partitionOf(day);
  const digest = await digestInDb(sql, partition);
  const paths = archivePaths(c.ARCHIVE_DIR, day, digest);
  if (existsSync(paths.manifest)) return { manifest: await verifyArchive(paths.manifest, digest), reused: true };
  let reused = true;
  if (!existsSync(paths.file)) {
    reused = false;
    try {
      await writeArchive(
        sql,
        partition,
        paths.file,
        digest,
        { day, schema_version: String(ARCHIVE_SCHEMA_VERSION) },
        c.FAULT_PAUSE_AFTER_ARCHIVE_TEMP_MS,
      );
    } catch (error) {
      if (error instanceof ArchiveError && /changed while being archived/.test(error.message))
        throw new DayChangedError(error.message);
      throw error;
    }
    await hooks.afterArchiveWritten?.(day, paths.file);
  } else {
    // A run killed between the file's rename and its manifest's: the file is checked by reading it back.
    const read = await readArchive(paths.file);
    if (!sameDigest(read, digest)) {
      throw new ArchiveError(
        `${paths.file} exists without a manifest and holds ${describeDigest(read)}, not the partition's ${describeDigest(digest)}: it is never overwritten; move it aside after checking it`,
      );
    }
  }
  const manifest: Manifest = {
    day,
    file: basename(paths.file),
    file_bytes: Bun.file(paths.file).size,
    file_sha256: sha256File(paths.file),
    schema_version: ARCHIVE_SCHEMA_VERSION,
    columns: ARCHIVE_COLUMNS,
    written_at: new Date().toISOString(),
    ...digest,
  };
  writeFileAtomic(paths.manifest, `${JSON.stringify(manifest, null, 2)}\n`);
  // Read back from disk: the bytes the manifest describes, and the rows the partition holds.
  return { manifest: await verifyArchive(paths.manifest, digest), reused };
}

/**
 * Drops the day in one transaction, under the partition-creation lock (no worker re-creates it
 * meanwhile): the partition is locked against writes, its digest checked against the verified
 * archive once more (late rows since), then detached, dropped, and the day recorded.
 */
async function dropDay(sql: Sql, c: MaintainConfig, day: string, manifest: Manifest): Promise<void> {
  const partition = partitionOf(day);
  await sql.begin(async (tx) => {
    await tx.unsafe(`set local lock_timeout = ${Math.trunc(c.MAINTAIN_LOCK_TIMEOUT_MS)}`);
    await tx`select pg_advisory_xact_lock(hashtext('ensure_scan_event_partitions'))`;
    await tx.unsafe(`lock table ${ident(partition)} in share mode`);
    const now: DayDigest = await digestInDb(tx as unknown as Sql, partition);
    if (!sameDigest(now, manifest)) {
      throw new DayChangedError(
        `${partition} now holds ${describeDigest(now)}, its archive ${describeDigest(manifest)}: late rows arrived`,
      );
    }
    await tx.unsafe(`alter table scan_events detach partition ${ident(partition)}`);
    await tx.unsafe(`drop table ${ident(partition)}`);
    await tx`
      insert into archived_days (day, file, row_count, file_sha256, content_checksum, event_id_checksum)
      values (${day}::text::date, ${`scan_events/day=${day}/${manifest.file}`}, ${manifest.rows}, ${manifest.file_sha256},
        ${manifest.content_checksum}, ${manifest.event_id_checksum})
      on conflict (day) do update set file = excluded.file, row_count = excluded.row_count,
        file_sha256 = excluded.file_sha256, content_checksum = excluded.content_checksum,
        event_id_checksum = excluded.event_id_checksum, archived_at = now()`;
  });
}

// ---------------------------------------------------------------------------------------------
// 5. Dead letters

async function pruneDeadLetters(sql: Sql, days: number): Promise<number> {
  let total = 0;
  for (;;) {
    // In slices, so no run holds many row locks or writes one huge transaction.
    const result = await sql`
      delete from dead_letters where id in (
        select id from dead_letters where stored_at < now() - make_interval(days => ${days}) limit 10000
      )`;
    total += result.count;
    if (result.count < 10_000) return total;
  }
}
