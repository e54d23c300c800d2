// Writes decoded rows into Postgres through pgbouncer (transaction pooling, no prepared
// statements): one statement per batch, INSERT … SELECT FROM json_to_recordset($1) … ON CONFLICT
// DO NOTHING RETURNING, whose returned rows (only those really inserted) feed the scan_counts
// upsert in the same statement. A replay of the same rows inserts nothing and counts nothing: that
// is the exactly-once effect on top of Kafka's at-least-once delivery.
//
// Why one statement, not COPY into a staging table: a COPY FROM STDIN that Postgres rejects never
// settles postgres.js's writable (porsager/postgres#1173), so the transaction hung, no ROLLBACK
// was sent and the partition stalled. A plain statement fails like any query: the error surfaces,
// postgres.js rolls back and returns the connection. It also drops the temp table (and its
// catalog churn) from every transaction.
//
// Every transaction is bounded (worker/db.ts): a server-side statement timeout and a
// client-side deadline.
import type { Transaction } from "./db.ts";
import { COLUMNS, type Row } from "./decode.ts";

export interface WriteResult {
  inserted: number;
  duplicates: number;
}

const columnList = Object.keys(COLUMNS).join(", ");
const recordType = Object.entries(COLUMNS)
  .map(([name, type]) => `${name} ${type}`)
  .join(", ");

const INSERT = `
  with ins as (
    insert into scan_events (${columnList})
    select ${columnList} from json_to_recordset($1::text::json) as r(${recordType})
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

  /** Creates the daily partitions the rows need (once per day per process). */
  async ensurePartitions(days: Iterable<string>): Promise<void> {
    const missing = [...new Set(days)].filter((d) => !this.#knownDays.has(d)).sort();
    if (missing.length === 0) return;
    await this.#transaction(
      "create partitions",
      (tx) => tx`select ensure_scan_event_partition_days(${missing}::date[])`,
    );
    for (const d of missing) this.#knownDays.add(d);
  }

  async write(rows: readonly Row[]): Promise<WriteResult> {
    if (rows.length === 0) return { inserted: 0, duplicates: 0 };
    await this.ensurePartitions(distinctDays(rows));
    const payload = jsonArray(rows);
    const inserted = await this.#transaction("write batch", async (tx) => {
      const [result] = await tx.unsafe<{ inserted: number }[]>(INSERT, [payload]);
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

function jsonArray(rows: readonly Row[]): string {
  let text = "[";
  for (let i = 0; i < rows.length; i++) text += i === 0 ? (rows[i] as Row).json : `,${(rows[i] as Row).json}`;
  return `${text}]`;
}
