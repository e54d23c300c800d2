// The worker's bounded transactions (worker/db.ts), through the real pgbouncer: the statement
// timeout is in force from the first statement, never leaks to the pooled connection's next user,
// a statement past it fails as a transient 57014, and the client-side deadline bounds the rest.
//
// Mutations caught (each tried once, then reverted):
// | mutation                                                         | failing test            |
// | SET LOCAL sent lazily (behind fn's first query, as first written) | "in force from the first" |
// | SET instead of SET LOCAL                                           | "does not leak"          |
// | withDeadline not applied                                           | "deadline" (times out)   |
import { expect, test } from "bun:test";
import { DbDeadlineError, classifyDbError } from "../../shared/db-errors.ts";
import { createDb } from "../../worker/db.ts";
import { createDatabase } from "../helpers/postgres.ts";

async function setup(statementTimeoutMs: number, deadlineMarginMs = 1_000) {
  const database = await createDatabase();
  const db = createDb({ url: database.url, poolMax: 1, statementTimeoutMs, deadlineMarginMs });
  return { database, db };
}

test("the statement timeout is in force from the first statement of every transaction", async () => {
  const { db } = await setup(1_234);
  // Shaped like the sink's writes: the first query is awaited inside the callback.
  const setting = await db.transaction("probe", async (tx) => {
    const [row] = await tx`select current_setting('statement_timeout') as s`;
    return row?.s;
  });
  expect(setting).toBe("1234ms");
  await db.sql.end();
});

test("the timeout does not leak to the pooled connection's next user (pgbouncer transaction pooling)", async () => {
  const { db } = await setup(1_234);
  await db.transaction("probe", (tx) => tx`select 1`);
  // One server connection behind a one-connection pool: the next statement runs on it.
  const [row] = await db.sql`select current_setting('statement_timeout') as s`;
  expect(row?.s).toBe("0");
  await db.sql.end();
});

test("a statement past the timeout fails with 57014, classified transient, and the connection is returned", async () => {
  const { database, db } = await setup(200);
  const started = performance.now();
  const error = await db.transaction("slow", (tx) => tx`select pg_sleep(5)`).catch((e: unknown) => e);
  expect((error as { code?: string }).code).toBe("57014");
  expect(classifyDbError(error)).toBe("transient");
  expect(performance.now() - started).toBeLessThan(4_000);
  // Rolled back and returned: nothing left idle in a transaction, and the pool still works.
  const [after] = await db.transaction("after", (tx) => tx`select 1 as one`);
  expect(after?.one).toBe(1);
  const stuck = await database.sql`
    select count(*)::int as n from pg_stat_activity
    where datname = current_database() and state like 'idle in transaction%'`;
  expect(stuck[0]?.n).toBe(0);
  await db.sql.end();
});

test("a transaction that never settles client-side ends with DbDeadlineError (fatal) at timeout + margin", async () => {
  const { db } = await setup(300, 300);
  const started = performance.now();
  const error = await db
    .transaction("stuck", async (tx) => {
      await tx`select 1`;
      return new Promise<never>(() => {}); // as postgres.js's COPY writable after a rejected COPY
    })
    .catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DbDeadlineError);
  expect(classifyDbError(error)).toBe("fatal");
  expect((error as Error).message).toBe(
    "stuck: no answer from the database within 600 ms; exiting so the connection is discarded",
  );
  expect(performance.now() - started).toBeLessThan(5_000);
  await db.sql.end({ timeout: 0 });
});
