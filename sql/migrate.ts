// Migration runner: applies sql/migrations/NNNN_name.sql in order, each in its own transaction,
// under a Postgres advisory lock (concurrent runners wait, then find nothing to do). Applied
// versions are recorded with a SHA-256 of the file; a changed applied file stops the run.
// Runs directly against Postgres (DATABASE_DIRECT_URL), not through pgbouncer's transaction pool,
// because the advisory lock is held for the whole session.
//   bun run migrate
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import * as v from "valibot";
import { loadConfig, str } from "../shared/config.ts";
import { localStack } from "../shared/local-stack.ts";

/** `bun run migrate`'s configuration (docs/operations.md). */
export const MigrateConfigSchema = v.object({
  /** Straight to Postgres, not through pgbouncer: the advisory lock is held for the whole session. */
  DATABASE_DIRECT_URL: str(localStack().directDatabaseUrl),
});

export const MIGRATIONS_DIR = new URL("./migrations/", import.meta.url).pathname;
const LOCK_KEY = 0x5153_4341; // arbitrary, fixed: "QSCA"

export class MigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MigrationError";
  }
}

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export function readMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".sql"))
    .sort();
  const seen = new Set<number>();
  return files.map((file) => {
    const m = file.match(/^(\d+)_([\w-]+)\.sql$/);
    if (!m) throw new MigrationError(`${file}: migration files are named NNNN_name.sql`);
    const version = Number(m[1]);
    if (seen.has(version)) throw new MigrationError(`${file}: version ${version} is used twice`);
    seen.add(version);
    const sql = readFileSync(join(dir, file), "utf8");
    return { version, name: m[2] as string, sql, checksum: createHash("sha256").update(sql).digest("hex") };
  });
}

/** Applies pending migrations; returns the versions applied by this call. */
export async function migrate(url: string, dir = MIGRATIONS_DIR, log: (s: string) => void = () => {}) {
  const migrations = readMigrations(dir);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const applied: number[] = [];
  try {
    await sql`select pg_advisory_lock(${LOCK_KEY})`;
    try {
      await sql`
        create table if not exists schema_migrations (
          version integer primary key,
          name text not null,
          checksum text not null,
          applied_at timestamptz not null default now()
        )`;
      const rows = await sql<{ version: number; name: string; checksum: string }[]>`
        select version, name, checksum from schema_migrations order by version`;
      const done = new Map(rows.map((r) => [r.version, r]));
      for (const m of migrations) {
        const prior = done.get(m.version);
        if (prior && prior.checksum !== m.checksum) {
          throw new MigrationError(
            `migration ${m.version}_${m.name} was changed after it was applied (checksum ${prior.checksum.slice(0, 12)}… ` +
              `vs ${m.checksum.slice(0, 12)}…); applied migrations are never edited: add a new one`,
          );
        }
      }
      for (const m of migrations) {
        if (done.has(m.version)) continue;
        await sql.begin(async (tx) => {
          await tx.unsafe(m.sql);
          await tx`insert into schema_migrations (version, name, checksum) values (${m.version}, ${m.name}, ${m.checksum})`;
        });
        applied.push(m.version);
        log(`applied ${String(m.version).padStart(4, "0")}_${m.name}`);
      }
    } finally {
      await sql`select pg_advisory_unlock(${LOCK_KEY})`;
    }
  } finally {
    await sql.end();
  }
  return applied;
}

if (import.meta.main) {
  try {
    const { DATABASE_DIRECT_URL } = loadConfig(MigrateConfigSchema);
    const applied = await migrate(DATABASE_DIRECT_URL, MIGRATIONS_DIR, console.log);
    console.log(applied.length ? `migrate: ${applied.length} applied` : "migrate: up to date");
  } catch (error) {
    console.error(`migrate failed: ${(error as Error).message}`);
    process.exit(1);
  }
}
