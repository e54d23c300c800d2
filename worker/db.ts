// The worker's database access: one postgres.js pool through pgbouncer (transaction pooling, so
// no prepared statements and no session state), and every transaction bounded twice:
// - on the server, `SET LOCAL statement_timeout` (LOCAL: pgbouncer hands the connection to other
//   clients after the transaction, so a session-level SET would leak to them; SQLSTATE 57014 is
//   then retried like any transient error);
// - on the client, a deadline a little later, for what the server cannot end (a lost connection,
//   a client library stuck on a protocol state, porsager/postgres#1173): DbDeadlineError, after
//   which the worker exits so the connection is discarded with the process.
import postgres, { type Sql, type TransactionSql } from "postgres";
import { withDeadline } from "../shared/db-errors.ts";

export interface DbOptions {
  url: string;
  poolMax: number;
  statementTimeoutMs: number;
  /** Added to the statement timeout for the client-side deadline. */
  deadlineMarginMs: number;
}

export type Transaction = <T>(what: string, fn: (tx: TransactionSql) => Promise<T>) => Promise<T>;

export interface Db {
  sql: Sql;
  /** Runs `fn` in a transaction bounded by the statement timeout and the client-side deadline. */
  transaction: Transaction;
}

export function createDb(o: DbOptions): Db {
  // fetch_types off: postgres.js would otherwise look array types up on each new connection and
  // serialize JS array parameters only once that lookup finished, so a query racing or outliving
  // a failed lookup sent an array as a bare string. The worker passes arrays as literals instead.
  const sql = postgres(o.url, { prepare: false, max: o.poolMax, fetch_types: false, onnotice: () => {} });
  const setStatementTimeout = `set local statement_timeout = ${Math.trunc(o.statementTimeoutMs)}`;
  const deadlineMs = o.statementTimeoutMs + o.deadlineMarginMs;
  const transaction: Transaction = (what, fn) =>
    withDeadline(
      what,
      deadlineMs,
      sql.begin(async (tx) => {
        // Sent now (postgres.js queries are lazy: execute() puts it on the wire before fn's first
        // query, which then pipelines behind it) rather than awaited: no extra round trip.
        const timeout = tx.unsafe(setStatementTimeout).execute();
        const [, result] = await Promise.all([timeout, fn(tx)]);
        return result;
      }) as Promise<Awaited<ReturnType<typeof fn>>>,
    );
  return { sql, transaction };
}
