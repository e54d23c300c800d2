// Writes compose.yaml's generated files from the local stack's one source, so the two stacks
// cannot drift: compose/pgbouncer/pgbouncer.ini from scripts/stack/postgres.ts's pgbouncerIni.
// test/unit/compose-product.test.ts fails when a committed file differs from what this writes.
//   bun scripts/compose-files.ts
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { localStack } from "../shared/local-stack.ts";
import { ROOT } from "./harness.ts";
import { type PgbouncerSite, pgbouncerIni } from "./stack/postgres.ts";

const stack = localStack({});

/** compose.yaml's pgbouncer: the same port as the local stack's default, Postgres by service name. */
export const COMPOSE_PGBOUNCER: PgbouncerSite = {
  database: stack.database,
  user: stack.user,
  listenAddr: "0.0.0.0",
  listenPort: stack.pgbouncerPort,
  serverHost: "postgres",
  serverPort: 5432,
  // Written at start from POSTGRES_PASSWORD by compose/pgbouncer/start.sh.
  authFile: "/tmp/userlist.txt",
};

/** Each generated file: its path in the repository and its content. */
export function composeFiles(): Record<string, string> {
  return {
    "compose/pgbouncer/pgbouncer.ini": `; Written by scripts/compose-files.ts from scripts/stack/postgres.ts; do not edit by hand.\n${pgbouncerIni(COMPOSE_PGBOUNCER)}`,
  };
}

if (import.meta.main) {
  for (const [path, text] of Object.entries(composeFiles())) {
    writeFileSync(join(ROOT, path), text);
    console.log(`wrote ${path}`);
  }
}
