// Writes decoded rows into Postgres through pgbouncer (transaction pooling, no prepared
// statements): in one transaction, COPY into a temporary staging table (ON COMMIT DROP), then one
// INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING into scan_events, whose returned rows (only
// those really inserted) feed the scan_counts upsert. A replay of the same rows inserts nothing and
// counts nothing: that is the exactly-once effect on top of Kafka's at-least-once delivery.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Sql } from "postgres";
import { COLUMNS, type Row } from "./decode.ts";

export interface WriteResult {
  inserted: number;
  duplicates: number;
}

const columnList = COLUMNS.join(", ");
// Rows of one COPY go in chunks of this many lines (fewer, larger writes to the socket).
const COPY_CHUNK_LINES = 1_000;

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
    await this.ensurePartitions(rows.map((r) => r.day));
    const inserted = await this.#sql.begin(async (tx) => {
      await tx`create temp table scan_stage (like scan_events including defaults) on commit drop`;
      const copy = await tx.unsafe(`copy scan_stage (${columnList}) from stdin`).writable();
      await pipeline(Readable.from(chunks(rows)), copy);
      const [result] = await tx.unsafe<{ inserted: number }[]>(`
        with ins as (
          insert into scan_events (${columnList})
          select ${columnList} from scan_stage
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

function* chunks(rows: readonly Row[]): Generator<string> {
  for (let i = 0; i < rows.length; i += COPY_CHUNK_LINES) {
    let text = "";
    const end = Math.min(rows.length, i + COPY_CHUNK_LINES);
    for (let j = i; j < end; j++) text += (rows[j] as Row).line;
    yield text;
  }
}
