// Writes decoded rows into Postgres through pgbouncer (transaction pooling, no prepared
// statements): in one transaction, COPY into a temporary staging table (ON COMMIT DROP), then one
// INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING into scan_events, whose returned rows (only
// those really inserted) feed the scan_counts upsert. A replay of the same rows inserts nothing and
// counts nothing: that is the exactly-once effect on top of Kafka's at-least-once delivery.
import { finished } from "node:stream/promises";
import type { Sql } from "postgres";
import { COLUMNS, type Row } from "./decode.ts";

export interface WriteResult {
  inserted: number;
  duplicates: number;
}

const columnList = COLUMNS.join(", ");

export class ScanSink {
  readonly #sql: Sql;
  readonly #knownDays = new Set<string>();

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Creates the daily partitions the rows need (once per day per process). */
  async ensurePartitions(days: Iterable<string>): Promise<void> {
    const missing = [...new Set(days)].filter((d) => !this.#knownDays.has(d)).sort();
    if (missing.length === 0) return;
    await this
      .#sql`select ensure_scan_event_partitions(${missing[0] as string}::date, ${missing.at(-1) as string}::date)`;
    for (const d of missing) this.#knownDays.add(d);
  }

  async write(rows: readonly Row[]): Promise<WriteResult> {
    if (rows.length === 0) return { inserted: 0, duplicates: 0 };
    await this.ensurePartitions(distinctDays(rows));
    const inserted = await this.#sql.begin(async (tx) => {
      await tx`create temp table scan_stage (like scan_events including defaults) on commit drop`;
      const copy = await tx.unsafe(`copy scan_stage (${columnList}) from stdin`).writable();
      copy.end(copyData(rows));
      await finished(copy);
      const [result] = await tx.unsafe<{ inserted: number }[]>(`
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
        select count(*)::int as inserted from ins`);
      return result?.inserted ?? 0;
    });
    return { inserted, duplicates: rows.length - inserted };
  }
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
