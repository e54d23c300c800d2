// The live count of edge replicas, which the rate limits divide by (server/rate-limit.ts): each
// replica upserts its heartbeat row in edge_replicas (sql/migrations/0008_edge_replicas.sql) every
// RATE_LIMIT_HEARTBEAT_SECONDS and counts the rows seen within LIVE_INTERVALS of them; its row is
// deleted on graceful shutdown. Postgres' clock stamps and compares, so the replicas' clocks do
// not matter. One statement per beat, on the key store's small pool (not the stats route's; replaced
// after a beat past its deadline: server/background-db.ts), never per request: the buckets stay
// in-process. When Postgres is unreachable the last count stays (fail static) and
// rate_limit_replicas_refresh_failures_total grows. docs/security.md, "Rate limits".
import { hostname } from "node:os";
import { Counter, Gauge, type Registry } from "prom-client";
import { type Logger, throttledWarn } from "../shared/logger.ts";
import type { BackgroundDb } from "./background-db.ts";
import { Periodic } from "./periodic.ts";

/** A replica is live while its row is younger than this many heartbeat intervals. */
export const LIVE_INTERVALS = 3;
/** Rows of replicas gone without a goodbye (killed) are deleted after this long. */
const PRUNE_AFTER_SECONDS = 3_600;

/** A replica's id unless told otherwise: its pod's name (hostname) and process id. */
export const defaultReplicaId = (pid = process.pid) => `${hostname()}-${pid}`;

/** What the rate limits need: the count now, and a call when it changes. */
export interface ReplicaCount {
  readonly count: number;
  onChange(listener: (count: number) => void): void;
}

export interface EdgeReplicasOptions {
  /**
   * A small pool of its own (the key store's), so a busy stats route cannot starve the heartbeat; a
   * beat past its deadline counts as failed (the last count stays) and gets a fresh connection.
   */
  db: BackgroundDb;
  heartbeatSeconds: number;
  logger: Logger;
  registry: Registry;
  /** Unique among the live replicas: the pod's name (its hostname) and the process id by default. */
  id?: string;
}

export class EdgeReplicas implements ReplicaCount {
  readonly id: string;
  #count = 1;
  #listeners: ((count: number) => void)[] = [];
  readonly #periodic: Periodic;
  readonly #o: Required<EdgeReplicasOptions>;
  readonly #warn: ReturnType<typeof throttledWarn>;
  readonly #gauge: Gauge;
  readonly #failures: Counter;

  constructor(o: EdgeReplicasOptions) {
    this.#o = { id: defaultReplicaId(), ...o };
    this.id = this.#o.id;
    this.#periodic = new Periodic(() => this.#beat(), o.heartbeatSeconds * 1000);
    this.#warn = throttledWarn(o.logger, 60_000);
    this.#gauge = new Gauge({
      name: "rate_limit_replicas",
      help: "Live edge replicas this one divides the rate limits by (heartbeats in Postgres; 1 until the first succeeds)",
      registers: [o.registry],
    });
    this.#failures = new Counter({
      name: "rate_limit_replicas_refresh_failures_total",
      help: "Heartbeats that could not reach Postgres; the last replica count kept applying (fail static)",
      registers: [o.registry],
    });
    this.#gauge.set(1);
    this.#failures.inc(0);
  }

  /** The live replicas, this one included (at least 1). */
  get count(): number {
    return this.#count;
  }

  onChange(listener: (count: number) => void): void {
    this.#listeners.push(listener);
  }

  /** Beats once (a failure is counted and logged, not thrown), then every heartbeatSeconds. */
  start(): Promise<void> {
    return this.#periodic.start();
  }

  /** Upserts this replica's row and counts the live ones. Never overlaps itself; never throws. */
  beat(): Promise<void> {
    return this.#periodic.run();
  }

  /** Stops beating and deletes this replica's row, so the others' shares grow at their next beat. */
  async stop(): Promise<void> {
    await this.#periodic.stop();
    try {
      await this.#o.db.query(
        "edge_replicas query",
        (sql) => sql`delete from edge_replicas where replica_id = ${this.id}`,
      );
    } catch (error) {
      this.#o.logger.warn(
        { err: error, replica: this.id },
        `could not delete this replica's heartbeat; the others count it until it is ${LIVE_INTERVALS * this.#o.heartbeatSeconds} s old`,
      );
    }
  }

  async #beat(): Promise<void> {
    const live = LIVE_INTERVALS * this.#o.heartbeatSeconds;
    try {
      // One statement: the upsert, the pruning of long-gone rows, and the count. The count reads
      // the statement's snapshot (without this beat's upsert), hence "the others + 1".
      const [row] = await this.#o.db.query(
        "edge_replicas query",
        (sql) => sql<{ live: number }[]>`
          with beat as (
            insert into edge_replicas (replica_id, seen_at) values (${this.id}, now())
            on conflict (replica_id) do update set seen_at = excluded.seen_at
          ), gone as (
            delete from edge_replicas
            where replica_id <> ${this.id} and seen_at < now() - ${PRUNE_AFTER_SECONDS}::int * interval '1 second'
          )
          select count(*)::int + 1 as live from edge_replicas
          where replica_id <> ${this.id} and seen_at >= now() - ${live}::int * interval '1 second'`,
      );
      const count = row?.live ?? 1;
      if (count === this.#count) return;
      this.#o.logger.info({ replicas: count, was: this.#count }, "live edge replicas changed; rate limits re-shared");
      this.#count = count;
      this.#gauge.set(count);
      for (const listener of this.#listeners) listener(count);
    } catch (error) {
      this.#failures.inc();
      this.#warn(
        "beat",
        { err: error, replicas: this.#count },
        "the edge heartbeat failed (Postgres unreachable, or migration 0008 not applied: bun run migrate); the rate limits keep the last replica count (fail static)",
      );
    }
  }
}
