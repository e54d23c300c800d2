// One closed classification of database errors, shared by the worker (what its sink does with
// each) and the edge (how the read side answers: data → 400, transient → 503, fatal → 500).
// For a worker's write:
//   data       SQLSTATE class 22 (data exception) or 23 (integrity): a row's content; bisect the
//              batch and dead-letter the row;
//   transient  heals by itself (connection loss, serialization, shutdown, lock or statement
//              timeout, pgbouncer's own waits): retry with backoff, partitions paused;
//   fatal      anything else, including a client-side deadline: the worker exits and the
//              supervisor restarts it; the uncommitted batch is replayed as a no-op.

export type DbErrorClass = "data" | "transient" | "fatal";

/**
 * SQLSTATEs that heal by themselves: serialization failure and deadlock, the connection class 08,
 * 57014 query_canceled (our statement_timeout, e.g. behind a long lock, or an operator's
 * pg_cancel_backend), 57P01-03 shutdown/cannot connect now, 53300 too many connections, 53400
 * configuration limit exceeded, 55P03 lock not available.
 */
const TRANSIENT_SQLSTATE = /^(40001|40P01|08...|57014|57P0[123]|53300|53400|55P03)$/;
/** postgres.js and socket error codes for a connection that went away or never came. */
const TRANSIENT_CLIENT = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
]);
/** pgbouncer reports its own conditions as protocol errors with these messages. */
const PGBOUNCER_TRANSIENT =
  /query_wait_timeout|query_timeout|server conn crashed|no more connections allowed|pgbouncer cannot connect|server login has been failing|database is paused|client_login_timeout/i;

const codeOf = (error: unknown) => {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "";
};

export function classifyDbError(error: unknown): DbErrorClass {
  if (!(error instanceof Error)) return "fatal";
  if (error instanceof DbDeadlineError) return "fatal";
  const code = codeOf(error);
  if (/^2[23]...$/.test(code)) return "data";
  if (TRANSIENT_SQLSTATE.test(code) || TRANSIENT_CLIENT.has(code)) return "transient";
  if (PGBOUNCER_TRANSIENT.test(error.message)) return "transient";
  return "fatal";
}

/** The SQLSTATEs code tests by name (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
export const SQLSTATE = {
  undefined_table: "42P01",
  check_violation: "23514",
  unique_violation: "23505",
  lock_not_available: "55P03",
} as const;

/** Whether `error` is a database error with this SQLSTATE. */
export const hasSqlState = (error: unknown, state: (typeof SQLSTATE)[keyof typeof SQLSTATE]) => codeOf(error) === state;

export const isTransientDbError = (error: unknown) => classifyDbError(error) === "transient";
export const isDataError = (error: unknown) => classifyDbError(error) === "data";

/**
 * A database call did not settle within its client-side deadline (the server's statement_timeout
 * plus a margin). The connection may be wedged in a state postgres.js cannot recover (e.g.
 * porsager/postgres#1173), so it is not reused: the worker exits and is restarted.
 */
export class DbDeadlineError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no answer from the database within ${ms} ms; exiting so the connection is discarded`);
    this.name = "DbDeadlineError";
  }
}

/**
 * `promise`, or a rejection once `ms` have passed: by default a DbDeadlineError (the worker's, fatal);
 * `late` makes another error where the caller carries on (the edge's key refresh and heartbeat).
 */
export function withDeadline<T>(
  what: string,
  ms: number,
  promise: Promise<T>,
  late: (what: string, ms: number) => Error = (w, m) => new DbDeadlineError(w, m),
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late(what, ms)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
