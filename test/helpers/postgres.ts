// Reading what the sink stored, in tests. Throwaway databases come from ./fixtures.ts (createDatabase).
import type postgres from "postgres";

/**
 * Rows in scan_events, distinct event ids, and the sum of scan_counts.
 * `distinct_ids` is NOT evidence against duplicates: the primary key is (event_id, scanned_at) and
 * the tests re-send identical events, so it equals `rows` by construction. What can fail is
 * `counted` against the number of events produced (and countMismatches); for acknowledged traffic
 * use storedOnce (sql/checks.ts), which checks rows, ids and counts against the acknowledged set.
 */
export async function tally(sql: postgres.Sql) {
  const [r] = await sql<{ rows: number; distinct_ids: number; counted: number }[]>`
    select (select count(*)::int from scan_events) as rows,
           (select count(distinct event_id)::int from scan_events) as distinct_ids,
           (select coalesce(sum(count), 0)::int from scan_counts) as counted`;
  return r as { rows: number; distinct_ids: number; counted: number };
}

export { countMismatches, storedOnce } from "../../sql/checks.ts";
