// The rate limits at any replica count: each edge replica records a heartbeat in edge_replicas and
// divides its limits by the live count (server/replicas.ts). First the heartbeat itself on a
// throwaway database (count, goodbye, fail static); then real edge processes on one database with
// one key: whatever the replica count, the events they accept together stay within the configured
// rate (plus the burst), and when a replica stops (gracefully, or killed) the others' shares grow
// within the stated time. With the divisor gone (each replica enforcing the whole limit) N replicas
// would accept N× the limit, and the first bound fails. Before that, an exact split that only the
// division produces: a key with a burst of 30 at 3 replicas, per replica a batch of 11 refused
// (429, Max-Batch-Events: 10) and of 12 single events exactly 10 accepted and 2 refused; without
// the division the batch and all 12 would be accepted.
//
// Mutations, each applied alone and caught (2026-12-06): setReplicas ignoring the count (a divisor
// of 1: 3 replicas accepted 411 events against a bound of 140); app.ts not subscribing the limits
// to the count (the same); stop() not deleting the row (the goodbye test); no staleness filter in
// the count (4 instead of 2); resetting the count to 1 when a beat fails (fail static).
// 2026-12-07: share() without the division (tools/mutations/catalog/edge.ts, rate-limit-no-division):
// the exact split, per replica batch 202 instead of 429 and singles 12 × 202 instead of 10 + 2 × 429.
import { describe, expect, test } from "bun:test";
import { BackgroundDb, backgroundClient } from "../../server/background-db.ts";
import { EdgeReplicas, LIVE_INTERVALS } from "../../server/replicas.ts";
import { createLogger } from "../../shared/logger.ts";
import { createRegistry } from "../../shared/metrics.ts";
import { metricValue, stopProcess } from "../../tools/harness.ts";
import { createAdmin, createDatabase, createTopic, onCleanup, spawnServer } from "../helpers/fixtures.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

describe("the heartbeat (EdgeReplicas)", () => {
  /** An EdgeReplicas on its own one-connection pool to `url`, as the server has it (the key store's). */
  const replica = (url: string, id: string) => {
    const registry = createRegistry("replicas-test");
    const logger = createLogger("replicas-test", "silent");
    const db = new BackgroundDb({
      connect: () => backgroundClient(url),
      logger,
      registry,
      queryTimeoutMs: 2_000,
    });
    onCleanup(() => db.end({ timeout: 1 }));
    const r = new EdgeReplicas({ db, id, heartbeatSeconds: 1, registry, logger });
    onCleanup(() => r.stop());
    const metric = async (name: string) => (await registry.getSingleMetric(name)?.get())?.values[0]?.value;
    return { r, metric };
  };

  test("counts the live replicas, tells the limits when the count changes, forgets one that says goodbye", async () => {
    const db = await createDatabase();
    const a = replica(db.url, "a");
    const b = replica(db.url, "b");
    const seen: number[] = [];
    a.r.onChange((n) => seen.push(n));
    await a.r.start();
    expect(a.r.count).toBe(1);
    await b.r.start();
    expect(b.r.count).toBe(2);
    await a.r.beat();
    expect([a.r.count, seen]).toEqual([2, [2]]);
    expect(await a.metric("rate_limit_replicas")).toBe(2);
    await b.r.stop();
    await a.r.beat();
    expect([a.r.count, seen]).toEqual([1, [2, 1]]);
    expect((await db.sql`select replica_id from edge_replicas`).map((r) => r.replica_id)).toEqual(["a"]);
  });

  test(`a row older than ${LIVE_INTERVALS} intervals is not counted; a long-gone one is deleted`, async () => {
    const db = await createDatabase();
    await db.sql`insert into edge_replicas values ('stale', now() - interval '4 seconds'), ('gone', now() - interval '2 hours'),
      ('fresh', now())`;
    const a = replica(db.url, "a");
    await a.r.start();
    // "fresh" and this one; "stale" is past 3 × 1 s.
    expect(a.r.count).toBe(2);
    expect((await db.sql`select replica_id from edge_replicas order by 1`).map((r) => r.replica_id)).toEqual([
      "a",
      "fresh",
      "stale",
    ]);
  });

  test("fail static: with Postgres gone the last count stays, and the failures are counted", async () => {
    const db = await createDatabase();
    const a = replica(db.url, "a");
    const b = replica(db.url, "b");
    await a.r.start();
    await b.r.start();
    await a.r.beat();
    expect(a.r.count).toBe(2);
    await db.drop();
    await a.r.beat();
    await a.r.beat();
    expect(a.r.count).toBe(2);
    expect(await a.metric("rate_limit_replicas_refresh_failures_total")).toBe(2);
    expect(await a.metric("rate_limit_replicas")).toBe(2);
  });
});

// One key of 20 events/s and a burst of 20, over every live replica; 3-event batches every 40 ms
// (75 events/s), round robin: each replica gets more than its share, and N replicas enforcing the
// whole limit each would accept far more than 20/s.
const RATE = 20;
const BURST = 20;
const BATCH = 3;
const WINDOW_S = 6;
// 2 s: a beat delayed by a busy machine stays well inside the 6 s a row counts for.
const HEARTBEAT_S = 2;
// The exact split's key: a burst of 30, so 10 per replica at 3 replicas.
const SPLIT_BURST = 30;

describe("real edge processes on one database", () => {
  test("each replica holds exactly its share (10 of 30, a batch of 11 refused); together they accept the configured rate (plus the burst) at 3, 2 and 1 replicas; a stopped one's share goes to the others", async () => {
    const db = await createDatabase();
    const topic = await createTopic(3);
    const created = Bun.spawnSync(
      ["bun", "run", "keys", "create", "--name", "shared", "--rate", String(RATE), "--burst", String(BURST)],
      { env: { ...process.env, DATABASE_URL: db.url } },
    );
    expect(created.exitCode).toBe(0);
    const secret = created.stdout.toString().trim().split("\n").at(-1) as string;
    // A second key for the exact split: a burst of SPLIT_BURST, refilled at 1 event/s.
    const splitKey = Bun.spawnSync(
      ["bun", "run", "keys", "create", "--name", "split", "--rate", "1", "--burst", String(SPLIT_BURST)],
      { env: { ...process.env, DATABASE_URL: db.url } },
    );
    expect(splitKey.exitCode).toBe(0);
    const splitSecret = splitKey.stdout.toString().trim().split("\n").at(-1) as string;
    const env = {
      AUTH_DISABLED: "false",
      DATABASE_URL: db.url,
      SCANS_TOPIC: topic,
      RATE_LIMIT_HEARTBEAT_SECONDS: String(HEARTBEAT_S),
    };
    const servers: Awaited<ReturnType<typeof spawnServer>>[] = [];
    for (let i = 0; i < 3; i++) servers.push(await spawnServer(env));
    const [first, second, third] = servers as [(typeof servers)[0], (typeof servers)[0], (typeof servers)[0]];
    const replicasSeen = (s: (typeof servers)[number]) => metricValue(s.metricsUrl, "rate_limit_replicas");
    const allSee = async (live: typeof servers, n: number, timeoutMs: number) => {
      const started = performance.now();
      await waitFor(
        `every live server's rate_limit_replicas to be ${n}`,
        () => Promise.all(live.map(replicasSeen)),
        (counts) => counts.every((c) => c === n),
        timeoutMs,
        100,
      );
      return (performance.now() - started) / 1000;
    };

    /** WINDOW_S seconds of paced batches over `live`, round robin; events accepted and the time taken. */
    const drive = async (live: typeof servers) => {
      const body = () => JSON.stringify(Array.from({ length: BATCH }, () => scan()));
      const statuses: Promise<number>[] = [];
      const started = performance.now();
      for (let i = 0; performance.now() - started < WINDOW_S * 1000; i++) {
        const s = live[i % live.length] as (typeof servers)[number];
        statuses.push(
          fetch(`${s.url}/v1/scans`, {
            method: "POST",
            body: body(),
            headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
          }).then(async (r) => {
            await r.arrayBuffer();
            return r.status;
          }),
        );
        await Bun.sleep(40);
      }
      const all = await Promise.all(statuses);
      const seconds = (performance.now() - started) / 1000;
      expect(all.filter((s) => s !== 202 && s !== 429)).toEqual([]);
      const accepted = all.filter((s) => s === 202).length * BATCH;
      return { replicas: live.length, accepted, seconds, perSecond: accepted / seconds, sent: all.length * BATCH };
    };
    const produced = () =>
      createAdmin()
        .groupLag("unused-group", topic)
        .reduce((n, p) => n + p.highWatermark, 0);

    // Each replica saw the others before the first request, so every bucket started at its share.
    await allSee(servers, 3, 10_000);

    // The exact split, at 3 replicas: each holds a third of the split key's burst (30 / 3 = 10).
    // A batch of 11 is above that share (429 naming Max-Batch-Events: 10, no Retry-After), though
    // within the configured burst; then 12 single events: 10 accepted, 2 refused (the share refills
    // at 1/3 event/s, far less than one event in the time they take). Each replica enforcing the
    // whole limit would accept the batch and all 12.
    const split: Record<string, unknown>[] = [];
    for (const s of servers) {
      const send = async (events: number) => {
        const r = await fetch(`${s.url}/v1/scans`, {
          method: "POST",
          body: JSON.stringify(Array.from({ length: events }, () => scan())),
          headers: { authorization: `Bearer ${splitSecret}`, "content-type": "application/json" },
        });
        await r.arrayBuffer();
        return r;
      };
      const started = performance.now();
      const batch = await send(SPLIT_BURST / 3 + 1);
      const singles: number[] = [];
      for (let i = 0; i < SPLIT_BURST / 3 + 2; i++) singles.push((await send(1)).status);
      split.push({
        batch: batch.status,
        maxBatchEvents: batch.headers.get("max-batch-events"),
        retryAfter: batch.headers.get("retry-after"),
        singles: singles.join(","),
        // Within 2.5 s, so the share refilled less than one event: the split below is exact.
        quick: performance.now() - started < 2_500,
      });
    }
    const share = SPLIT_BURST / 3;
    expect(split).toEqual(
      servers.map(() => ({
        batch: 429,
        maxBatchEvents: String(share),
        retryAfter: null,
        singles: [...Array(share).fill(202), 429, 429].join(","),
        quick: true,
      })),
    );
    const splitAccepted = servers.length * share;

    const measured = [await drive(servers)];

    // A graceful stop deletes the row: the others count 2 at their next beat. Without the goodbye
    // the row would count until LIVE_INTERVALS beats old: 4 s at the very least after the stop.
    // Counted from the SIGTERM: the row goes as the drain begins, not when the process exits.
    const stopping = stopProcess(third.proc);
    const afterStop = await allSee([first, second], 2, HEARTBEAT_S * 1000 + 1_500);
    await stopping;
    measured.push(await drive([first, second]));

    // A killed one's row stays: it stops counting once LIVE_INTERVALS old.
    second.proc.kill("SIGKILL");
    const afterKill = await allSee([first], 1, ((LIVE_INTERVALS + 1) * HEARTBEAT_S + 2) * 1000);
    measured.push(await drive([first]));

    console.log(
      [
        `limit ${RATE} events/s, burst ${BURST}; ${BATCH}-event batches, ${75} events/s offered, ${WINDOW_S} s per window`,
        ...measured.map(
          (m) =>
            `${m.replicas} replica(s): accepted ${m.accepted} of ${m.sent} events in ${m.seconds.toFixed(2)} s = ${m.perSecond.toFixed(1)}/s (${((100 * m.perSecond) / RATE).toFixed(0)}% of the limit; bound ${Math.floor(RATE * m.seconds + BURST)})`,
        ),
        `shares grew ${afterStop.toFixed(1)} s after a graceful stop, ${afterKill.toFixed(1)} s after a kill`,
      ].join("\n"),
    );
    for (const m of measured) {
      // At most the rate over the window plus one burst, whatever the replica count...
      expect(m.accepted).toBeLessThanOrEqual(RATE * m.seconds + BURST);
      // ...and, the demand being above it, close to the rate: the shares of the replicas gone went
      // to the ones left (a count stuck at 3 would leave 2/3 and 1/3 of it).
      expect(m.accepted).toBeGreaterThanOrEqual(0.85 * RATE * m.seconds);
    }
    expect(produced()).toBe(splitAccepted + measured.reduce((n, m) => n + m.accepted, 0));
  });
});
