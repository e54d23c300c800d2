// Writes decoded rows into Postgres through pgbouncer (transaction pooling, no prepared
// statements), each batch in one bounded transaction (worker/db.ts), by one of two paths:
//
// - optimistic (most batches): COPY straight into scan_events (Postgres routes each row to its
//   day's partition), then the batch's minute counts, computed here, upserted into scan_counts in
//   the same transaction. Valid only if every row is new, and it is: a row already stored (a
//   replay after a crash between the database commit and the Kafka commit, a client's retry) or
//   twice in the batch aborts the COPY with unique_violation (23505), which rolls back everything;
// - staging (a batch that hit a conflict, and the batches right after one): COPY into a temporary
//   staging table (created once per connection, emptied at each commit), then one INSERT … SELECT
//   … ON CONFLICT DO NOTHING RETURNING into scan_events, whose returned rows (only those really
//   inserted) feed the scan_counts upsert.
//
// Either way a replay of the same rows inserts nothing and counts nothing: that is the
// exactly-once effect on top of Kafka's at-least-once delivery. The optimistic path saves
// Postgres the staging table, the per-row speculative insertion of ON CONFLICT and the grouping
// (docs/benchmarks.md, "The worker sink", has the lever table).
//
// A COPY that Postgres rejects must settle as an error (and its rows be dead-lettered), not hang
// the partition: postgres.js needs patches/postgres@3.4.9.patch (porsager/postgres#1183) for that,
// and test/integration/worker-sink.test.ts holds it. The transaction's statement timeout and
// client-side deadline bound whatever else could hang.
//
// COPY rather than one INSERT … SELECT FROM unnest(…) or json_to_recordset (which would not need
// the patch): faster for the large batches of a saturated box, where Postgres' CPU is the limit
// (bench/sink-statement.ts; figures in docs/benchmarks.md).
import { finished } from "node:stream/promises";
import { SQLSTATE, hasSqlState, isDataError } from "../shared/db-errors.ts";
import { COLUMNS, type Row } from "../shared/scan-events.ts";
import type { Transaction } from "./db.ts";

export interface WriteResult {
  inserted: number;
  duplicates: number;
}

const columnList = COLUMNS.join(", ");

/**
 * The staging table lives as long as the Postgres connection (pgbouncer hands connections between
 * clients, so each transaction makes sure it exists) and is emptied by every commit or rollback.
 * Creating and dropping it per transaction (`on commit drop`) wrote to the catalog twice per
 * batch: bench/sink-statement.ts measures the difference. Its name changes with scan_events'
 * columns (v2: migration 0011), so a connection an older worker left a table on gets a new one.
 */
export const STAGE_TABLE = "scan_stage_v2";
export const STAGE = `create temp table if not exists ${STAGE_TABLE} (like scan_events including defaults) on commit delete rows`;

const INSERT = `
  with ins as (
    insert into scan_events (${columnList})
    select ${columnList} from ${STAGE_TABLE}
    -- In key order, the primary-key index is filled page by page instead of at random.
    order by event_id, scanned_at
    on conflict do nothing
    returning qr_id, derived_at
  ), counted as (
    insert into scan_counts (qr_id, bucket, count)
    select qr_id, date_trunc('minute', derived_at), count(*) from ins
    group by 1, 2
    order by 1, 2
    on conflict (qr_id, bucket) do update set count = scan_counts.count + excluded.count
  )
  select count(*)::int as inserted from ins`;

const COPY_EVENTS = `copy scan_events (${columnList}) from stdin`;

/**
 * The optimistic path's counts: minuteCounts' three arrays, one element per (qr_id, minute). In
 * key order, as the staging path's upsert, so two batches in flight lock the rows they share in
 * the same order (no deadlock between them).
 */
const COUNTS = `
  insert into scan_counts (qr_id, bucket, count)
  select qr_id, bucket, count
  from unnest($1::text::text[], $2::text::timestamptz[], $3::text::bigint[]) as c (qr_id, bucket, count)
  order by 1, 2
  on conflict (qr_id, bucket) do update set count = scan_counts.count + excluded.count`;

/** After a conflict, at most this many batches in a row go the staging path before the optimistic one is tried again. */
export const MAX_STAGING_TURNS = 64;

export interface ScanSinkOptions {
  /** Try the optimistic path first (SINK_OPTIMISTIC_COPY); false: every batch goes the staging path. */
  optimistic?: boolean;
}

/** Batches written by each path since the sink was made; `conflicts` fell back from optimistic to staging. */
export interface SinkPaths {
  optimistic: number;
  conflicts: number;
  staging: number;
}

export class ScanSink {
  readonly #transaction: Transaction;
  readonly #knownDays = new Set<string>();
  readonly #optimistic: boolean;
  // A conflict means duplicates are arriving (a replay of a batch or more, or clients retrying):
  // the next batches go the staging path at once, twice as many after each conflict in a row, so a
  // stream with duplicates in every batch wastes an aborted COPY on at most one batch in 65.
  #stagingTurns = 0;
  #backoff = 0;
  readonly paths: SinkPaths = { optimistic: 0, conflicts: 0, staging: 0 };

  constructor(transaction: Transaction, options: ScanSinkOptions = {}) {
    this.#transaction = transaction;
    this.#optimistic = options.optimistic ?? true;
  }

  /**
   * Creates the daily partitions the rows need (once per day per process). The days go as one
   * array literal in a text parameter: postgres.js serializes a JS array only once its array-type
   * lookup on a new connection has finished, and a query racing it sent `'' + array` (a crash-suite
   * run dead-lettered thousands of valid rows on "malformed array literal").
   *
   * Archived days (retention, migration 0006) are not created again: they are never cached as
   * known, and an ArchivedDaysError names them, for the scan loop to dead-letter their rows.
   */
  async ensurePartitions(days: Iterable<string>): Promise<void> {
    const missing = [...new Set(days)].filter((d) => !this.#knownDays.has(d)).sort();
    if (missing.length === 0) return;
    const literal = `{${missing.join(",")}}`;
    const [result] = await this.#transaction(
      "create partitions",
      (tx) =>
        tx<{ archived: string }[]>`
          select array_to_string(ensure_scan_event_partition_days(${literal}::text::date[]), ',') as archived`,
    );
    const archived = new Set(result?.archived ? result.archived.split(",") : []);
    for (const d of missing) if (!archived.has(d)) this.#knownDays.add(d);
    if (archived.size > 0) throw new ArchivedDaysError(archived);
  }

  /**
   * Forgets the days known to have a partition: `bun run maintain` drops archived days, so a
   * cached day can be gone ("no partition of relation … found for row", SQLSTATE 23514). The
   * next ensurePartitions asks the database again.
   */
  forgetPartitions(): void {
    this.#knownDays.clear();
  }

  async write(rows: readonly Row[]): Promise<WriteResult> {
    if (rows.length === 0) return { inserted: 0, duplicates: 0 };
    try {
      await this.ensurePartitions(distinctDays(rows));
    } catch (error) {
      // No row's content makes this call fail: it must not be taken for a row's data error,
      // which would bisect the batch and dead-letter every row. Transient errors stay transient.
      if (isDataError(error)) throw new PartitionSetupError(error);
      throw error;
    }
    if (this.#optimistic && this.#stagingTurns === 0) {
      if (await this.#writeOptimistic(rows)) {
        this.#backoff = 0;
        this.paths.optimistic++;
        return { inserted: rows.length, duplicates: 0 };
      }
      this.paths.conflicts++;
      this.#backoff = Math.min(MAX_STAGING_TURNS, Math.max(1, this.#backoff * 2));
      this.#stagingTurns = this.#backoff;
    } else if (this.#stagingTurns > 0) {
      this.#stagingTurns--;
    }
    this.paths.staging++;
    return this.#writeStaging(rows);
  }

  /**
   * COPY into scan_events and the worker's counts, in one transaction; false (rolled back,
   * nothing written) if a row was already stored or is twice in the batch. Any other error is
   * the caller's: a row's data error (its class and message as the staging path would give them:
   * the same text, parsed into the same column types), a missing partition, a timeout.
   */
  async #writeOptimistic(rows: readonly Row[]): Promise<boolean> {
    const counts = minuteCounts(rows);
    try {
      await this.#transaction("write batch", async (tx) => {
        const copy = await tx.unsafe(COPY_EVENTS).writable();
        copy.end(copyData(rows));
        await finished(copy);
        await tx.unsafe(COUNTS, counts);
      });
      return true;
    } catch (error) {
      if (hasSqlState(error, SQLSTATE.unique_violation)) return false;
      throw error;
    }
  }

  async #writeStaging(rows: readonly Row[]): Promise<WriteResult> {
    const inserted = await this.#transaction("write batch", async (tx) => {
      // Created once per server connection and emptied at each commit, instead of created and
      // dropped in every transaction (catalog writes per batch: see STAGE below).
      await tx.unsafe(STAGE);
      const copy = await tx.unsafe(`copy ${STAGE_TABLE} (${columnList}) from stdin`).writable();
      copy.end(copyData(rows));
      await finished(copy);
      const [result] = await tx.unsafe<{ inserted: number }[]>(INSERT);
      return result?.inserted ?? 0;
    });
    return { inserted, duplicates: rows.length - inserted };
  }
}

/** Creating a batch's day partitions failed with a data-class error: a bug or a schema problem, fatal. */
export class PartitionSetupError extends Error {
  constructor(cause: unknown) {
    super(`could not create the day partitions: ${(cause as Error).message}`, { cause });
    this.name = "PartitionSetupError";
  }
}

/**
 * Some rows are for days archived and dropped by retention: they are never written (no duplicate
 * row, no second count); the scan loop dead-letters them with this reason.
 */
export class ArchivedDaysError extends Error {
  constructor(readonly days: ReadonlySet<string>) {
    super(`days ${[...days].join(", ")} are archived`);
    this.name = "ArchivedDaysError";
  }

  /** The dead letter's reason for a row of `day`: what an operator does to store it after all. */
  static reason(day: string): string {
    return `day ${day} is archived (raw retention); to store this event: bun run archive-restore ${day}, then bun run dlq replay <id>`;
  }
}

/** A batch write failed because a day's partition is missing (SQLSTATE 23514 "no partition … found"). */
export function isMissingPartition(error: unknown): boolean {
  return hasSqlState(error, SQLSTATE.check_violation) && /no partition of relation/.test((error as Error).message);
}

/** The rows' days; rows mostly arrive in runs of the same day, so compare before hashing. */
function distinctDays(rows: readonly Row[]): Set<string> {
  const days = new Set<string>();
  let last = "";
  for (const r of rows) {
    if (r.day !== last) {
      last = r.day;
      days.add(last);
    }
  }
  return days;
}

/**
 * The rows' scans per qr_id per UTC minute, as COUNTS' three array literals (qr_ids, minutes,
 * counts). Scanned_at is canonical UTC text (shared/event.ts), so its first 16 characters are
 * its minute; rows mostly arrive in runs of the same minute, so a minute's text is cut once per
 * run, and a row adds to a count without allocating. Every qr_id is quoted: an unquoted NULL
 * would be a null.
 */
export function minuteCounts(rows: readonly Row[]): [string, string, string] {
  const byMinute = new Map<string, Map<string, number>>();
  let minute = "";
  let counts: Map<string, number> | undefined;
  for (const r of rows) {
    if (counts === undefined || !r.derivedAt.startsWith(minute)) {
      minute = r.derivedAt.slice(0, 16);
      counts = byMinute.get(minute);
      if (counts === undefined) {
        counts = new Map();
        byMinute.set(minute, counts);
      }
    }
    counts.set(r.qrId, (counts.get(r.qrId) ?? 0) + 1);
  }
  // Concatenated, not pushed and joined: JSC keeps a string built this way as a rope until sent.
  let qrIds = "";
  let minutes = "";
  let ns = "";
  for (const [m, perQr] of byMinute) {
    const bucket = `${m}:00Z`;
    for (const [qrId, n] of perQr) {
      const sep = ns === "" ? "" : ",";
      qrIds += `${sep}"${ARRAY_SPECIAL.test(qrId) ? qrId.replace(ARRAY_ESCAPED, "\\$&") : qrId}"`;
      minutes += sep + bucket;
      ns += sep + n;
    }
  }
  return [`{${qrIds}}`, `{${minutes}}`, `{${ns}}`];
}
const ARRAY_SPECIAL = /["\\]/;
const ARRAY_ESCAPED = /["\\]/g;

function copyData(rows: readonly Row[]): string {
  let text = "";
  for (const r of rows) text += r.line;
  return text;
}
