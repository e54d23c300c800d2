// server/background-db.ts with a fake client factory (pure logic; the real wedge is
// test/integration/background-db-wedge.test.ts): a background query past its deadline rejects with
// the edge's error (not the worker's fatal one), and its client is ended at once and replaced,
// counted and logged once; queries run one at a time (pipelined ones lose answers behind pgbouncer's
// transaction pooling); end() ends the current client and waits for the discarded ones.
//
// Mutations, each applied alone and caught:
// | mutation                                              | failed test                                  |
// |-------------------------------------------------------|----------------------------------------------|
// | #discard not replacing #sql                           | past its deadline: next query on a new client |
// | queries not serialised (no wait on #tail)             | one at a time                                 |
// | discarding on any error, not only the deadline's      | a failing query: no discard                   |
// | the old client ended with the caller's timeout / not ended | past its deadline: end({ timeout: 0 })   |
// | end() not waiting for the discarded clients           | end() waits                                   |
// | withDeadline ignoring its `late` error (shared/db-errors.ts) | past its deadline: BackgroundQueryTimeout |
import { expect, test } from "bun:test";
import type { Sql } from "postgres";
import { BackgroundDb, BackgroundQueryTimeout } from "../../server/background-db.ts";
import { DbDeadlineError } from "../../shared/db-errors.ts";
import { createLogger } from "../../shared/logger.ts";
import { createRegistry } from "../../shared/metrics.ts";

interface FakeClient {
  id: number;
  ends: { timeout: number }[];
  /** Resolves end() when called; by default at once. */
  finishEnd: () => void;
}

/** A BackgroundDb over fake clients 0, 1, 2…, with its log lines and its discard counter. */
function harness({ queryTimeoutMs = 20, slowEnd = false } = {}) {
  const clients: FakeClient[] = [];
  const connect = () => {
    const client: FakeClient = { id: clients.length, ends: [], finishEnd: () => {} };
    const end = (o: { timeout: number }) => {
      client.ends.push(o);
      return slowEnd
        ? new Promise<void>((resolve) => {
            client.finishEnd = resolve;
          })
        : Promise.resolve();
    };
    clients.push(client);
    return Object.assign(client, { end }) as unknown as Sql;
  };
  const lines: { msg: string; query?: string }[] = [];
  const registry = createRegistry("background-db-test");
  const db = new BackgroundDb({
    connect,
    logger: createLogger("background-db-test", "warn", { write: (l: string) => void lines.push(JSON.parse(l)) }),
    registry,
    queryTimeoutMs,
  });
  const discards = async () =>
    (await registry.getSingleMetric("background_db_connections_discarded_total")?.get())?.values[0]?.value;
  const idOf = (sql: Sql) => (sql as unknown as FakeClient).id;
  return { db, clients, lines, discards, idOf };
}

const never = () => new Promise<never>(() => {});

test("a query that answers in time: its value, on the same client, nothing discarded", async () => {
  const h = harness();
  expect(await h.db.query("q", async (sql) => h.idOf(sql))).toBe(0);
  expect(await h.db.query("q", async (sql) => h.idOf(sql))).toBe(0);
  expect(h.clients).toHaveLength(1);
  expect(await h.discards()).toBe(0);
  expect(h.lines).toEqual([]);
});

test("past its deadline: the edge's error, the client ended at once, the next query on a new client, one line", async () => {
  const h = harness();
  const error = await h.db.query("api_keys query", never).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(BackgroundQueryTimeout);
  expect(error).not.toBeInstanceOf(DbDeadlineError);
  expect((error as Error).message).toBe("api_keys query took more than 20 ms");
  expect(h.clients[0]?.ends).toEqual([{ timeout: 0 }]);
  expect(await h.db.query("api_keys query", async (sql) => h.idOf(sql))).toBe(1);
  expect(await h.discards()).toBe(1);
  expect(h.lines).toHaveLength(1);
  expect(h.lines[0]).toMatchObject({ query: "api_keys query" });
  expect(h.lines[0]?.msg).toContain("discarded");
});

test("one at a time: the heartbeat queued behind a stuck refresh starts after it, on the fresh client", async () => {
  const h = harness({ queryTimeoutMs: 30 });
  const log: string[] = [];
  const started = performance.now();
  let heartbeatAfterMs = 0;
  const first = h.db.query("api_keys query", () => {
    log.push("refresh started");
    return never();
  });
  const second = h.db.query("edge_replicas query", async (sql) => {
    log.push("heartbeat started");
    heartbeatAfterMs = performance.now() - started;
    return h.idOf(sql);
  });
  const third = h.db.query("api_keys query", async (sql) => {
    log.push("refresh started");
    return h.idOf(sql);
  });
  expect(await Promise.allSettled([first, second, third]).then((r) => r.map((x) => x.status))).toEqual([
    "rejected",
    "fulfilled",
    "fulfilled",
  ]);
  expect([await second, await third]).toEqual([1, 1]);
  expect(log).toEqual(["refresh started", "heartbeat started", "refresh started"]);
  // Not before the stuck refresh's deadline (30 ms): never pipelined behind it.
  expect(heartbeatAfterMs).toBeGreaterThanOrEqual(29);
  expect([h.clients.length, await h.discards(), h.lines.length]).toEqual([2, 1, 1]);
});

test("a query that fails otherwise (Postgres unreachable, an SQL error): its error, no discard", async () => {
  const h = harness();
  const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
  expect(await h.db.query("q", () => Promise.reject(refused)).catch((e: unknown) => e)).toBe(refused);
  expect([h.clients.length, h.clients[0]?.ends, await h.discards(), h.lines]).toEqual([1, [], 0, []]);
});

test("end() ends the current client with its timeout and waits for the discarded ones; no client after it", async () => {
  const h = harness({ slowEnd: true });
  const stuck = h.db.query("q", never).catch(() => {});
  await stuck;
  expect(h.clients).toHaveLength(2);
  let ended = false;
  const ending = h.db.end({ timeout: 2 }).then(() => {
    ended = true;
  });
  await Bun.sleep(5);
  expect(h.clients[1]?.ends).toEqual([{ timeout: 2 }]);
  h.clients[1]?.finishEnd();
  await Bun.sleep(5);
  expect(ended).toBe(false);
  h.clients[0]?.finishEnd();
  await ending;
  expect(ended).toBe(true);
  // A query running at shutdown that passes its deadline makes no new client.
  await h.db.query("q", never).catch(() => {});
  expect(h.clients).toHaveLength(2);
});
