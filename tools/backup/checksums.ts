// What a restore must reproduce, captured on the live database at the recovery target and compared
// with the restored one: per day partition of scan_events the row count and an order-independent
// checksum of the event_ids (sum of hashtextextended), and the scan_counts totals per day.
import { writeFileSync } from "node:fs";
import type postgres from "postgres";

export interface DayChecksum {
  /** The day partition (scan_events_YYYYMMDD). */
  partition: string;
  rows: number;
  /** Sum of hashtextextended(event_id::text, 0) over the day's rows, as decimal text (numeric). */
  eventIds: string;
}

export interface CountsChecksum {
  day: string;
  buckets: number;
  total: string;
}

export interface Checksums {
  scanEvents: DayChecksum[];
  scanCounts: CountsChecksum[];
}

/** A recovery target and the checksums of the database at it. */
export interface Mark {
  database: string;
  /** Recovery target time (UTC, PostgreSQL's text form): after the checksummed state, before any later write. */
  targetTime: string;
  /** A restore point created at the same moment (pgbackrest restore --type=name). */
  restorePoint: string;
  checksums: Checksums;
}

/**
 * The checksums of `sql`'s database. With `below` (the next offset per Kafka partition, indexed by
 * partition) only rows stored from offsets below it count: the part of the topic a replay covered.
 */
export async function checksums(sql: postgres.Sql | postgres.TransactionSql, below?: number[]): Promise<Checksums> {
  const bound = below ? sql`where kafka_offset < (${below}::bigint[])[kafka_partition + 1]` : sql``;
  const scanEvents = await sql<{ partition: string; rows: number; event_ids: string }[]>`
    select tableoid::regclass::text as partition, count(*)::int as rows,
           sum(hashtextextended(event_id::text, 0))::text as event_ids
    from scan_events ${bound} group by 1 order by 1`;
  const scanCounts = below
    ? []
    : await sql<CountsChecksum[]>`
        select (bucket at time zone 'UTC')::date::text as day, count(*)::int as buckets, sum(count)::text as total
        from scan_counts group by 1 order by 1`;
  return {
    scanEvents: scanEvents.map((r) => ({ partition: r.partition, rows: r.rows, eventIds: r.event_ids })),
    scanCounts: scanCounts.map((r) => ({ day: r.day, buckets: r.buckets, total: r.total })),
  };
}

/**
 * Captures the checksums and the recovery target in one moment: scan_events and scan_counts are
 * locked in SHARE mode (the workers' writes wait, reads go on) while the checksums are read from
 * the snapshot taken after the lock, and a restore point and the target time are taken before
 * the lock is released. So nothing commits to those tables between the checksums and the target.
 * `sql` must connect as a superuser (pg_create_restore_point).
 */
export async function mark(sql: postgres.Sql, database: string): Promise<Mark> {
  // pgBackRest picks the backup for a time target by its stop time in whole seconds and needs it
  // strictly earlier: a mark taken in the second a backup stopped could not be restored from that
  // backup ("unable to find backup set with stop time less than …": failed once in CI, the mark
  // 0.85 s into the backup's stop second). Start at the next second.
  await Bun.sleep(1_000 - (Date.now() % 1_000) + 10);
  const restorePoint = `drill-${new Date().toISOString()}`;
  return sql.begin("isolation level repeatable read", async (tx) => {
    await tx`lock table scan_events, scan_counts in share mode`;
    const sums = await checksums(tx);
    const [row] = await tx<{ target: string }[]>`
      select pg_create_restore_point(${restorePoint}) is not null as created,
             to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' as target`;
    if (!row) throw new Error("pg_create_restore_point returned no row");
    return { database, targetTime: row.target, restorePoint, checksums: sums };
  }) as Promise<Mark>;
}

export function writeMark(file: string, m: Mark): void {
  writeFileSync(file, `${JSON.stringify(m, null, 2)}\n`);
}

/** What differs between the expected and the restored checksums (empty when they are equal). */
export function differences(expected: Checksums, actual: Checksums): string[] {
  const out: string[] = [];
  const compare = <T>(what: string, key: (x: T) => string, a: T[], b: T[]) => {
    const byKey = new Map(b.map((x) => [key(x), x]));
    for (const x of a) {
      const y = byKey.get(key(x));
      byKey.delete(key(x));
      if (!y) out.push(`${what} ${key(x)}: expected ${JSON.stringify(x)}, missing after the restore`);
      else if (JSON.stringify(x) !== JSON.stringify(y))
        out.push(`${what} ${key(x)}: expected ${JSON.stringify(x)}, restored ${JSON.stringify(y)}`);
    }
    for (const [k, y] of byKey) out.push(`${what} ${k}: not expected, restored ${JSON.stringify(y)}`);
  };
  compare("scan_events", (d: DayChecksum) => d.partition, expected.scanEvents, actual.scanEvents);
  compare("scan_counts", (d: CountsChecksum) => d.day, expected.scanCounts, actual.scanCounts);
  return out;
}

export const totalRows = (c: Checksums) => c.scanEvents.reduce((n, d) => n + d.rows, 0);
