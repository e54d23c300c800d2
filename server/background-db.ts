// The edge's background queries (the managed keys' refresh, server/keys.ts; the replica heartbeat,
// server/replicas.ts) share one small postgres.js client, held here. Each query is bounded in time;
// one past its deadline may have left its connection wedged for good (issue 24: the answer never
// comes, later queries queue behind it, and the tasks failed statically for the process' life;
// the porsager/postgres#1173 family), so the holder then ends that client at once and builds a
// fresh one: the tasks' next run has a working connection. The worker exits instead
// (shared/db-errors.ts DbDeadlineError); the edge keeps serving and must recover by itself.
// The queries also run one at a time: two queued on the one connection before it is up are
// pipelined by postgres.js, and pgbouncer's transaction pooling can hand the server back after the
// first one's ReadyForQuery and drop the second's answer ("got packet '1' from server when not
// linked", pgbouncer/pgbouncer#759). That is how the wedge came at every compose start, where the
// key refresh and the heartbeat both start at once.
import postgres, { type Sql } from "postgres";
import { Counter, type Registry } from "prom-client";
import { withDeadline } from "../shared/db-errors.ts";
import type { Logger } from "../shared/logger.ts";

/**
 * The client the edge's background tasks use: one connection, no prepared statements (pgbouncer's
 * transaction pooling), and no array-type lookup on connect. That lookup is the first query on every
 * new connection, and postgres.js leaves its promise unhandled (porsager/postgres#1192): a
 * connection discarded, or lost, during it would crash the whole edge. Without it array columns
 * and parameters are not converted, so the tasks' queries pass and read them as JSON.
 */
export const backgroundClient = (url: string): Sql =>
  postgres(url, { prepare: false, max: 1, connect_timeout: 5, fetch_types: false, onnotice: () => {} });

/** A background query got no answer within its deadline; the task keeps its last good state. */
export class BackgroundQueryTimeout extends Error {
  constructor(what: string, ms: number) {
    super(`${what} took more than ${ms} ms`);
    this.name = "BackgroundQueryTimeout";
  }
}

export interface BackgroundDbOptions {
  /** Makes the client (lazy: postgres.js connects on the first query); called again after each discard. */
  connect: () => Sql;
  logger: Logger;
  registry: Registry;
  /** A query that takes longer fails, and its client is discarded. */
  queryTimeoutMs?: number;
}

export class BackgroundDb {
  #sql: Sql;
  #ended = false;
  /** The query in flight (settled or bounded by its deadline): the next one starts after it. */
  #tail: Promise<unknown> = Promise.resolve();
  /** Discarded clients still closing, awaited by end(). */
  readonly #closing = new Set<Promise<void>>();
  readonly #o: Required<BackgroundDbOptions>;
  readonly #discards: Counter;

  constructor(o: BackgroundDbOptions) {
    this.#o = { queryTimeoutMs: 5_000, ...o };
    this.#sql = o.connect();
    this.#discards = new Counter({
      name: "background_db_connections_discarded_total",
      help: "Background database clients (key refresh, replica heartbeat) ended and replaced because a query got no answer within its deadline",
      registers: [o.registry],
    });
    this.#discards.inc(0);
  }

  /**
   * `run` on the current client once the query before it has settled, bounded by the deadline.
   * Past it, the query rejects with a BackgroundQueryTimeout and its client is replaced.
   */
  async query<T>(what: string, run: (sql: Sql) => Promise<T>): Promise<T> {
    const previous = this.#tail;
    let done!: () => void;
    this.#tail = new Promise<void>((resolve) => {
      done = resolve;
    });
    try {
      await previous;
      return await this.#bounded(what, run);
    } finally {
      done();
    }
  }

  async #bounded<T>(what: string, run: (sql: Sql) => Promise<T>): Promise<T> {
    const sql = this.#sql;
    let late: BackgroundQueryTimeout | undefined;
    try {
      return await withDeadline(what, this.#o.queryTimeoutMs, run(sql), (w, ms) => {
        late = new BackgroundQueryTimeout(w, ms);
        return late;
      });
    } catch (error) {
      if (error === late) this.#discard(sql, what);
      throw error;
    }
  }

  /** Ends the current client (after `timeout` seconds at most, as postgres.js end) and waits for the discarded ones. */
  async end({ timeout }: { timeout: number }): Promise<void> {
    this.#ended = true;
    await Promise.all([this.#sql.end({ timeout }), ...this.#closing]);
  }

  /**
   * Replaces `sql`: anything still queued on it fails (CONNECTION_DESTROYED) and the next queries
   * use the fresh client. The error is the task's to log; this line says what was done about it.
   */
  #discard(sql: Sql, what: string): void {
    if (this.#ended) return;
    this.#sql = this.#o.connect();
    this.#discards.inc();
    this.#o.logger.warn(
      { query: what, deadline_ms: this.#o.queryTimeoutMs },
      "a background query got no answer within its deadline: its database connection, possibly wedged, is discarded and a fresh one opened",
    );
    const closing = sql
      .end({ timeout: 0 })
      .catch((error) => this.#o.logger.warn({ err: error }, "could not close a discarded background database client"))
      .finally(() => this.#closing.delete(closing));
    this.#closing.add(closing);
  }
}
