// Writes compose.yaml's generated files from the local stack's one source, so the two stacks
// cannot drift: compose/pgbouncer/pgbouncer.ini from tools/stack/postgres.ts's pgbouncerIni, and
// compose/postgres/init-roles.sh (the database roles) from shared/local-stack.ts's DB_LOGINS.
// test/unit/compose-product.test.ts fails when a committed file differs from what this writes.
//   bun tools/compose-files.ts
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { localStack } from "../shared/local-stack.ts";
import { ROOT } from "./harness.ts";
import { type PgbouncerSite, pgbouncerIni } from "./stack/postgres.ts";

const stack = localStack({});

/** compose.yaml's pgbouncer: the same port as the local stack's default, Postgres by service name. */
export const COMPOSE_PGBOUNCER: PgbouncerSite = {
  database: stack.database,
  statsUsers: [stack.user, stack.logins.monitor.user],
  listenAddr: "0.0.0.0",
  listenPort: stack.pgbouncerPort,
  serverHost: "postgres",
  serverPort: 5432,
  // Written at start from POSTGRES_PASSWORD by compose/pgbouncer/start.sh.
  authFile: "/tmp/userlist.txt",
};

/**
 * compose.yaml's Postgres, at its first start (docker-entrypoint-initdb.d, as the image's
 * superuser): the migration owner owns the database; the group roles of migration 0009 and the
 * processes' login users, the local stack's (DB_LOGINS), all with POSTGRES_PASSWORD.
 */
export function composeInitRoles(): string {
  const logins = Object.values(stack.logins);
  const groups = [...new Set(logins.map((l) => l.member))].filter((g) => g !== "pg_monitor");
  return [
    "#!/bin/sh",
    "# Written by tools/compose-files.ts from shared/local-stack.ts; do not edit by hand.",
    "# Runs once, when the data volume is initialised; POSTGRES_PASSWORD is every login's password.",
    "set -eu",
    `psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v pw="$POSTGRES_PASSWORD" <<'SQL'`,
    `CREATE ROLE ${stack.user} LOGIN PASSWORD :'pw';`,
    `ALTER DATABASE ${stack.database} OWNER TO ${stack.user};`,
    ...groups.map((g) => `CREATE ROLE ${g} NOLOGIN;`),
    ...logins.map((l) => `CREATE ROLE ${l.user} LOGIN PASSWORD :'pw' IN ROLE ${l.member};`),
    "SQL",
    "",
  ].join("\n");
}

/** Each generated file: its path in the repository and its content. */
export function composeFiles(): Record<string, string> {
  return {
    "compose/pgbouncer/pgbouncer.ini": `; Written by tools/compose-files.ts from tools/stack/postgres.ts; do not edit by hand.\n${pgbouncerIni(COMPOSE_PGBOUNCER)}`,
    "compose/postgres/init-roles.sh": composeInitRoles(),
  };
}

if (import.meta.main) {
  for (const [path, text] of Object.entries(composeFiles())) {
    mkdirSync(dirname(join(ROOT, path)), { recursive: true });
    writeFileSync(join(ROOT, path), text, { mode: path.endsWith(".sh") ? 0o755 : 0o644 });
    console.log(`wrote ${path}`);
  }
}
