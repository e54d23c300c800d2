// Reading what the sink stored, in tests. Throwaway databases come from ./fixtures.ts (createDatabase).
import type postgres from "postgres";

/**
 * Rows in scan_events and the sum of scan_counts: each can fail against the number of distinct
 * events produced (fewer rows: lost; a sum above it: counted twice). It once also returned
 * `count(distinct event_id)`, which equals `rows` by construction when every event has its own id
 * (the primary key is (event_id, scanned_at)): removed, as it could not fail. Per-bucket exactness
 * is countMismatches; for acknowledged traffic use storedOnce (sql/checks.ts).
 */
export async function tally(sql: postgres.Sql) {
  const [r] = await sql<{ rows: number; counted: number }[]>`
    select (select count(*)::int from scan_events) as rows,
           (select coalesce(sum(count), 0)::int from scan_counts) as counted`;
  return r as { rows: number; counted: number };
}

export { countMismatches, storedOnce } from "../../sql/checks.ts";
