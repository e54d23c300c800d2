// Consistency checks of the stored data, shared by tests, benches and the crash suite.
import type { Sql } from "postgres";

/**
 * Buckets where scan_counts differs from a recount of scan_events (0 means the aggregates match):
 * minutes of derived_at, as the sink counts them (of scanned_at for rows stored before migration 0011).
 */
export async function countMismatches(sql: Sql): Promise<number> {
  const [r] = await sql<{ n: number }[]>`
    select count(*)::int as n from (
      select qr_id, date_trunc('minute', coalesce(derived_at, scanned_at)) as bucket, count(*) as c
      from scan_events group by 1, 2
    ) e full join scan_counts s using (qr_id, bucket)
    where e.c is distinct from s.count`;
  return r?.n ?? -1;
}

/** Which of `ids` are not in scan_events. */
export async function missingEventIds(sql: Sql, ids: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (let i = 0; i < ids.length; i += 5_000) {
    const chunk = ids.slice(i, i + 5_000);
    const found = await sql<{ event_id: string }[]>`
      select event_id::text from scan_events where event_id = any(${chunk}::uuid[])`;
    const have = new Set(found.map((r) => r.event_id));
    for (const id of chunk) if (!have.has(id)) missing.push(id);
  }
  return missing;
}

export interface StoredOnceReport {
  /** Distinct event ids answered 202. */
  acknowledged: number;
  /** Rows of scan_events holding an acknowledged event id (must equal `acknowledged`). */
  acknowledgedRows: number;
  /** Acknowledged ids with no row. */
  missing: number;
  /** All rows of scan_events. */
  rows: number;
  /**
   * Distinct stored event ids that were never acknowledged: sent in a request answered 503/500,
   * or whose connection broke (a killed server, a broker outage). The edge promises nothing for
   * them; they may be stored, and then must be stored and counted once like the others.
   */
  unacknowledgedStored: number;
  /** sum(scan_counts.count). */
  counted: number;
  /** Buckets where scan_counts differs from a recount of scan_events. */
  countMismatches: number;
  /** What is wrong, one line each; empty when every acknowledged event is stored and counted once. */
  failures: string[];
}

/**
 * Every acknowledged event is stored exactly once and counted exactly once, from one snapshot:
 * - rows holding an acknowledged id = distinct acknowledged ids (fewer: lost; more: one event
 *   stored twice under two scanned_at values);
 * - rows = distinct stored ids (acknowledged + unacknowledged): no event has two rows;
 * - sum(scan_counts.count) = that same number of distinct events: a replay or a client retry
 *   counted again shows up here even though the primary key keeps the row single;
 * - scan_counts matches a recount per (qr_id, minute) bucket (countMismatches = 0).
 * The old check (rows − distinct event_id under the (event_id, scanned_at) key, with traffic
 * that re-sends identical events) was 0 by construction; this one is not: see
 * test/integration/checks.test.ts and docs/guarantees.md.
 */
export async function storedOnce(sql: Sql, acknowledgedIds: Iterable<string>): Promise<StoredOnceReport> {
  const ids = [...new Set([...acknowledgedIds].map((id) => id.toLowerCase()))];
  // Repeatable read: every figure below comes from one snapshot, also across statements.
  const r = await sql.begin("isolation level repeatable read", async (tx) => {
    await tx`create temp table checked_acks (event_id uuid primary key) on commit drop`;
    for (let i = 0; i < ids.length; i += 10_000) {
      await tx`insert into checked_acks select unnest(${ids.slice(i, i + 10_000)}::uuid[]) on conflict do nothing`;
    }
    const [row] = await tx<
      {
        acknowledged: number;
        acknowledged_rows: number;
        missing: number;
        rows: number;
        unacknowledged_stored: number;
        counted: number;
      }[]
    >`
      select
        (select count(*)::int from checked_acks) as acknowledged,
        (select count(*)::int from scan_events e join checked_acks a using (event_id)) as acknowledged_rows,
        (select count(*)::int from checked_acks a
           where not exists (select 1 from scan_events e where e.event_id = a.event_id)) as missing,
        (select count(*)::int from scan_events) as rows,
        (select count(distinct e.event_id)::int from scan_events e
           where not exists (select 1 from checked_acks a where a.event_id = e.event_id)) as unacknowledged_stored,
        (select coalesce(sum(count), 0)::int from scan_counts) as counted`;
    return { ...(row as NonNullable<typeof row>), mismatches: await countMismatches(tx as unknown as Sql) };
  });
  const failures: string[] = [];
  const events = r.acknowledged + r.unacknowledged_stored;
  if (r.missing > 0) failures.push(`${r.missing} of ${r.acknowledged} acknowledged events are not stored (lost)`);
  if (r.acknowledged_rows !== r.acknowledged - r.missing) {
    failures.push(
      `${r.acknowledged - r.missing} acknowledged events are stored in ${r.acknowledged_rows} rows (an event stored twice)`,
    );
  }
  if (r.rows !== r.acknowledged - r.missing + r.unacknowledged_stored) {
    failures.push(`${r.rows} rows for ${r.acknowledged - r.missing + r.unacknowledged_stored} distinct stored events`);
  }
  if (r.counted !== events - r.missing) {
    failures.push(
      `sum(scan_counts.count) is ${r.counted}, expected ${events - r.missing} ` +
        `(${r.acknowledged - r.missing} acknowledged + ${r.unacknowledged_stored} unacknowledged events stored): ` +
        `${r.counted > events - r.missing ? "counted twice" : "not counted"}`,
    );
  }
  if (r.mismatches !== 0) failures.push(`${r.mismatches} scan_counts buckets differ from a recount of scan_events`);
  return {
    acknowledged: r.acknowledged,
    acknowledgedRows: r.acknowledged_rows,
    missing: r.missing,
    rows: r.rows,
    unacknowledgedStored: r.unacknowledged_stored,
    counted: r.counted,
    countMismatches: r.mismatches,
    failures,
  };
}
