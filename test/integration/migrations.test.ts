// The migration runner on real, throwaway Postgres databases.
import { expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { MIGRATIONS_DIR, migrate, readMigrations } from "../../sql/migrate.ts";
import { createDatabase, onCleanup } from "../helpers/fixtures.ts";
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
  // Numerically: the default sort compares as strings (10 before 2).
  expect(applied.sort((a, b) => a - b)).toEqual(readMigrations().map((m) => m.version));
  expect(results.filter((r) => r.length > 0).length).toBe(1);
});

test("0007: a live key whose tenant prefix lacks the ':' stops the upgrade, naming it and what to do; once revoked, the shape is enforced", async () => {
  const url = await emptyDatabase();
  const dir = copyOfMigrations();
  for (const f of readdirSync(dir)) if (Number(f.slice(0, 4)) >= 7) rmSync(join(dir, f));
  await migrate(url, dir);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  onCleanup(() => sql.end({ timeout: 1 }));
  const key = (id: string, qrPrefix: string | null, revoked = false) => sql`
    insert into api_keys (id, name, prefix, secret_sha256, scopes, qr_prefix, revoked_at)
    values (${id}, ${`tenant ${qrPrefix}`}, 'qrs_abcd', ${randomBytes(32)}, ${["scans:write"]}, ${qrPrefix},
            ${revoked ? new Date() : null})`;
  await key("key_00000000000a", "acme");
  await key("key_00000000000b", "acme:");
  await key("key_00000000000c", "globex-", true); // revoked: authenticates nothing, may stay
  await key("key_00000000000d", null);
  await key("key_00000000000e", "initech-");

  await expect(migrate(url)).rejects.toThrow(
    `api_keys: tenant prefixes must now end with ":" (e.g. acme:), or a key of "acme" would read "acme2-…": key_00000000000a (tenant acme, qr_prefix 'acme'), key_00000000000e (tenant initech-, qr_prefix 'initech-'). Revoke each (bun run keys revoke <id>), create its successor with a prefix ending in ":" (bun run keys create --qr-prefix acme: …; its QR ids must then start with it), then run bun run migrate again`,
  );
  const [pending] = await sql`select count(*)::int as n from schema_migrations where version = 7`;
  expect(pending?.n).toBe(0);

  await sql`update api_keys set revoked_at = now() where id in ('key_00000000000a', 'key_00000000000e')`;
  const later = readMigrations()
    .map((m) => m.version)
    .filter((v) => v >= 7);
  expect(await migrate(url)).toEqual(later);
  // The shape is the database's rule now: no live key of another shape, none un-revoked.
  await expect(key("key_00000000000f", "acme2")).rejects.toThrow(/api_keys_qr_prefix_tenant/);
  await expect(key("key_000000000010", "acme:eu")).rejects.toThrow(/api_keys_qr_prefix_tenant/);
  await expect(sql`update api_keys set revoked_at = null where id = 'key_00000000000a'`).rejects.toThrow(
    /api_keys_qr_prefix_tenant/,
  );
  await key("key_000000000011", "acme:eu:");
  await key("key_000000000012", "globex-", true);
});
