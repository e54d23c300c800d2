// The migration runner on real, throwaway Postgres databases.
import { expect, test } from "bun:test";
import { cpSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { MIGRATIONS_DIR, migrate, readMigrations } from "../../sql/migrate.ts";
import { createDatabase } from "../helpers/fixtures.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

/** A throwaway database with no migrations applied; the direct URL (migrations need a session). */
async function emptyDatabase(): Promise<string> {
  return (await createDatabase({ migrated: false })).directUrl;
}

function copyOfMigrations(): string {
  const dir = mkdtempSync(join(tmpdir(), "qrscan-migrations-"));
  cpSync(MIGRATIONS_DIR, dir, { recursive: true });
  return dir;
}

test("a fresh database gets every migration once; a second run is a no-op", async () => {
  const url = await emptyDatabase();
  const all = readMigrations().map((m) => m.version);
  expect(all.length).toBeGreaterThan(0);
  expect(await migrate(url)).toEqual(all);
  expect(await migrate(url)).toEqual([]);
  const sql = postgres(url, { max: 1 });
  const rows = await sql<{ version: number }[]>`select version from schema_migrations order by version`;
  const tables = await sql<
    { t: string }[]
  >`select tablename as t from pg_tables where schemaname = 'public' order by 1`;
  await sql.end();
  expect(rows.map((r) => r.version)).toEqual(all);
  expect(tables.map((t) => t.t)).toEqual([
    "api_keys",
    "archived_days",
    "dead_letters",
    "edge_replicas",
    "rollup_state",
    "scan_counts",
    "scan_counts_daily",
    "scan_counts_hourly",
    "scan_events",
    "schema_migrations",
  ]);
});

test("an applied migration that was edited stops the run with a clear message", async () => {
  const url = await emptyDatabase();
  const dir = copyOfMigrations();
  await migrate(url, dir);
  const first = readdirSync(dir).find((f) => f.endsWith(".sql")) as string;
  writeFileSync(join(dir, first), "-- edited after release\nselect 1;\n");
  await expect(migrate(url, dir)).rejects.toThrow(/was changed after it was applied.*add a new one/);
});

test("a new migration is applied on top, in its own transaction; a failing one leaves nothing behind", async () => {
  const url = await emptyDatabase();
  const dir = copyOfMigrations();
  await migrate(url, dir);
  writeFileSync(join(dir, "9000_extra.sql"), "create table extra_ok (id int);\n");
  expect(await migrate(url, dir)).toEqual([9000]);
  writeFileSync(join(dir, "9001_broken.sql"), "create table half_done (id int);\nselect * from no_such_table;\n");
  await expect(migrate(url, dir)).rejects.toThrow(/no_such_table/);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const [half] = await sql`select to_regclass('half_done') as t`;
  const [recorded] = await sql`select count(*)::int as n from schema_migrations where version = 9001`;
  await sql.end();
  expect(half?.t).toBeNull();
  expect(recorded?.n).toBe(0);
});

test("concurrent runners: the advisory lock makes exactly one apply each migration", async () => {
  const url = await emptyDatabase();
  const results = await Promise.all([migrate(url), migrate(url), migrate(url)]);
  const applied = results.flat();
  expect(applied.sort()).toEqual(readMigrations().map((m) => m.version));
  expect(results.filter((r) => r.length > 0).length).toBe(1);
});
