// Consistency checks of the stored data, shared by tests and the crash suite.
import type { Sql } from "postgres";

/** Buckets where scan_counts differs from a recount of scan_events (0 means the aggregates match). */
export async function countMismatches(sql: Sql): Promise<number> {
  const [r] = await sql<{ n: number }[]>`
    select count(*)::int as n from (
      select qr_id, date_trunc('minute', scanned_at) as bucket, count(*) as c from scan_events group by 1, 2
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

/** Rows beyond one per event_id (the unique key makes this 0; checked, not assumed). */
export async function duplicateRows(sql: Sql): Promise<number> {
  const [r] = await sql<{ n: number }[]>`select (count(*) - count(distinct event_id))::int as n from scan_events`;
  return r?.n ?? -1;
}
