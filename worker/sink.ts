// Writes decoded rows into Postgres through pgbouncer (transaction pooling, no prepared
// statements): in one bounded transaction (worker/db.ts), COPY into a temporary staging table
// (created once per connection, emptied at each commit), then one INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING into scan_events,
// whose returned rows (only those really inserted) feed the scan_counts upsert. A replay of the
// same rows inserts nothing and counts nothing: that is the exactly-once effect on top of Kafka's
// at-least-once delivery.
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
 * batch: bench/sink-statement.ts measures the difference.
 */
export const STAGE =
  "create temp table if not exists scan_stage (like scan_events including defaults) on commit delete rows";

const INSERT = `
  with ins as (
    insert into scan_events (${columnList})
    select ${columnList} from scan_stage
    -- In key order, the primary-key index is filled page by page instead of at random.
    order by event_id, scanned_at
    on conflict do nothing
    returning qr_id, scanned_at
  ), counted as (
    insert into scan_counts (qr_id, bucket, count)
    select qr_id, date_trunc('minute', scanned_at), count(*) from ins
    group by 1, 2
    order by 1, 2
    on conflict (qr_id, bucket) do update set count = scan_counts.count + excluded.count
  )
  select count(*)::int as inserted from ins`;

export class ScanSink {
  readonly #transaction: Transaction;
  readonly #knownDays = new Set<string>();

  constructor(transaction: Transaction) {
    this.#transaction = transaction;
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
    const inserted = await this.#transaction("write batch", async (tx) => {
      // Created once per server connection and emptied at each commit, instead of created and
      // dropped in every transaction (catalog writes per batch: see STAGE below).
      await tx.unsafe(STAGE);
      const copy = await tx.unsafe(`copy scan_stage (${columnList}) from stdin`).writable();
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

function copyData(rows: readonly Row[]): string {
  let text = "";
  for (const r of rows) text += r.line;
  return text;
}
