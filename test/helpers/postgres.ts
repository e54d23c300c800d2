// A throwaway database per test: created on the project's cluster, migrated, reached through the
// real pgbouncer (transaction pooling) like production, and dropped afterwards.
import postgres from "postgres";
import { migrate } from "../../sql/migrate.ts";
import { onCleanup, stack } from "./kafka.ts";

const adminUrl = () => `postgres://postgres@127.0.0.1:${stack.pgPort}/postgres`;

export async function createDatabase(): Promise<{ name: string; directUrl: string; url: string; sql: postgres.Sql }> {
  const name = `qrscan_t_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 7)}`;
  const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name} owner ${stack.user}`);
  await admin.end();
  const directUrl = `postgres://${stack.user}:${stack.password}@127.0.0.1:${stack.pgPort}/${name}`;
  const url = `postgres://${stack.user}:${stack.password}@127.0.0.1:${stack.pgbouncerPort}/${name}`;
  await migrate(directUrl);
  const sql = postgres(url, { prepare: false, max: 2, onnotice: () => {} });
  onCleanup(async () => {
    await sql.end({ timeout: 1 });
    const a = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    await a.unsafe(`drop database if exists ${name} with (force)`).catch(() => {});
    await a.end();
  });
  return { name, directUrl, url, sql };
}

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
