// A planned switchover of the Postgres HA cluster (PG_HA=1) under open-loop ingest load and a
// poller of the stats route, through the real server and a supervisor's workers, on a private
// cluster (test/helpers/pg-ha-cluster.ts); Kafka is the main stack's, on a fresh topic.
//
// 1. `bun run pg-switchover` (pgbouncer PAUSE, switchover, HAProxy routes to the new leader,
//    RECONNECT, RESUME): every POST is answered 202 and at most one stats GET fails (the one
//    pgbouncer can fail as the PAUSE begins, below), the leader changed (other member, other
//    postmaster pid), and the pause is printed.
// 2. The plain switchover back (`bun run pg-switchover --no-pause`: Patroni's POST /switchover
//    alone) is measured: the answers other than 2xx the clients got while it ran are printed
//    (HAProxy cuts the old leader's sessions; new ones are refused until it marks the new leader up).
// Every 202 is stored and counted once at the end (storedOnce).
//
// Mutation checked: tools/pg-switchover.ts without PAUSE (nor RECONNECT/RESUME): the paused
// switchover's stats GETs answered 503 79 times ("stats GETs not 200" fails).
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { DB_LOGINS } from "../../shared/local-stack.ts";
import { storedOnce } from "../../sql/checks.ts";
import { runToEnd, scrape } from "../../tools/harness.ts";
import { pgPaths } from "../../tools/stack/pg-paths.ts";
import { onCleanup } from "../helpers/cleanup.ts";
import { spawnServer, spawnSupervisor, workerEnv } from "../helpers/fixtures.ts";
import { type PgHaCluster, asLogin, startPgHaCluster } from "../helpers/pg-ha-cluster.ts";
import { type Outcome, startLoad, startStatsPoller } from "../helpers/pg-ha-load.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

const RATE = 40;
const STATS_RATE = 20;

const retriesOf = async (urls: string[]) => {
  let total = 0;
  for (const url of urls) for (const s of await scrape(url)) if (s.name === "worker_db_retries_total") total += s.value;
  return total;
};

/** `bun run pg-switchover` against the private cluster; its output line. */
async function pgSwitchover(cluster: PgHaCluster, args: string[]): Promise<string> {
  const { code, stdout, stderr } = await runToEnd({
    cmd: ["bun", "tools/pg-switchover.ts", ...args],
    env: cluster.env,
    timeoutMs: 60_000,
  });
  if (code !== 0) throw new Error(`pg-switchover ${args.join(" ")} exited ${code}: ${stdout}${stderr}`);
  return stdout.trim();
}

const failedIn = (outcomes: Outcome[], ok: number, from: number, to: number) =>
  outcomes.filter((o) => o.status !== ok && o.sentAt >= from && o.sentAt < to);

test("planned switchover under load: the plain one measured, the paused one (pg-switchover) with no failed POST and at most one failed stats read", async () => {
  const t0 = performance.now();
  const cluster = await startPgHaCluster();
  const first = await cluster.leader();
  const standby = cluster.stack.patroniMembers.map((m) => m.name).find((n) => n !== first) as string;
  await cluster.waitSyncStandby(standby);
  const { db } = cluster;
  const env = await workerEnv(asLogin(db.url, DB_LOGINS.worker));
  const workers = await spawnSupervisor(env, { workers: 2, output: "ignore" });
  const workerUrls = [0, 1].map((i) => `${workers.workerUrl(i)}/metrics`);
  const serverLog = join(cluster.stack.dir, "server.log");
  const server = await spawnServer(
    { SCANS_TOPIC: env.scansTopic, DATABASE_URL: asLogin(db.url, DB_LOGINS.edge) },
    { output: { file: serverLog } },
  );
  const load = startLoad(server.url, RATE);
  const stats = startStatsPoller(server.url, STATS_RATE);
  await waitFor(
    "the warm-up: 80 POSTs answered 202",
    async () => load.accepted(),
    (n) => n >= RATE * 2,
    30_000,
    100,
  );

  // 1. The paused switchover (first, on a pool that has seen no failed server login: pgbouncer
  // answers a new client of a pool whose last server login failed at once with an error while
  // paused, server_login_retry; the plain switchover below leaves pools in that state).
  const leaderPid = cluster.postmasterPid(first);
  const retries0 = await retriesOf(workerUrls);
  const pausedFrom = Date.now();
  const pausedOut = await pgSwitchover(cluster, []);
  await Bun.sleep(2_000);
  const pausedTo = Date.now();
  const retries1 = await retriesOf(workerUrls);
  const afterPaused = await cluster.leader();
  const newPid = cluster.postmasterPid(afterPaused);
  await cluster.waitSyncStandby(first, 60_000);

  // 2. The plain switchover, back to the first leader: measured.
  const plainFrom = Date.now();
  const plainOut = await pgSwitchover(cluster, ["--no-pause"]);
  await Bun.sleep(2_000);
  const plainTo = Date.now();
  const retries2 = await retriesOf(workerUrls);
  const afterPlain = await cluster.leader();
  const outcomes = await load.stop();
  const statsOutcomes = await stats.stop();

  const plain = {
    posts: failedIn(outcomes, 202, plainFrom, plainTo),
    gets: failedIn(statsOutcomes, 200, plainFrom, plainTo),
  };
  const paused = {
    posts: failedIn(outcomes, 202, pausedFrom, pausedTo),
    gets: failedIn(statsOutcomes, 200, pausedFrom, pausedTo),
  };
  /** The slowest answer among those sent in [from, to): its time, and when it was sent from `from`. */
  const slowest = (o: Outcome[], from: number, to: number) => {
    const worst = o
      .filter((x) => x.sentAt >= from && x.sentAt < to)
      .sort((a, b) => b.answeredAt - b.sentAt - (a.answeredAt - a.sentAt))[0];
    return worst ? `${worst.answeredAt - worst.sentAt} ms (sent at +${worst.sentAt - from} ms)` : "none";
  };
  const tally = (o: Outcome[]) => {
    const t: Record<string, number> = {};
    for (const x of o) t[String(x.status)] = (t[String(x.status)] ?? 0) + 1;
    return t;
  };
  const sql = postgres(db.url, { max: 1, prepare: false, onnotice: () => {} });
  onCleanup(() => sql.end({ timeout: 1 }));
  await waitFor(
    "the workers to store every acknowledged event",
    async () =>
      (
        await storedOnce(
          sql,
          outcomes.filter((o) => o.status === 202).map((o) => o.eventId),
        )
      ).missing,
    (n) => n === 0,
    60_000,
    500,
  );
  const check = await storedOnce(
    sql,
    outcomes.filter((o) => o.status === 202).map((o) => o.eventId),
  );
  const story = [
    `plain: ${plainOut}; ${afterPaused} → ${afterPlain}; in ${plainTo - plainFrom} ms: POSTs not 202 ${JSON.stringify(tally(plain.posts))}, ` +
      `stats GETs not 200 ${JSON.stringify(tally(plain.gets))}, slowest GET ${slowest(statsOutcomes, plainFrom, plainTo)}; worker retries +${retries2 - retries1}`,
    `paused: ${pausedOut}; ${first} (postmaster ${leaderPid}) → ${afterPaused} (postmaster ${newPid}); in ${pausedTo - pausedFrom} ms: ` +
      `POSTs not 202 ${JSON.stringify(tally(paused.posts))}, stats GETs not 200 ${JSON.stringify(tally(paused.gets))}, ` +
      `slowest GET ${slowest(statsOutcomes, pausedFrom, pausedTo)}, slowest POST ${slowest(outcomes, pausedFrom, pausedTo)}; worker retries +${retries1 - retries0}`,
    `load: ${outcomes.length} POSTs, ${statsOutcomes.length} stats GETs; storedOnce: ${check.acknowledged} acknowledged, ${check.rows} rows, counted ${check.counted}`,
    `test took ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  ].join("\n");
  console.log(story);

  // Both switchovers moved the leader (another member, another postmaster).
  expect(afterPaused).toBe(standby);
  expect(afterPlain).toBe(first);
  expect(newPid).not.toBe(leaderPid);
  // The paused one: no client saw an error (the edge's log says why, when one did).
  const why = () =>
    readFileSync(serverLog, "utf8")
      .split("\n")
      .filter((l) => l.includes("answered 503"))
      .slice(-3)
      .map((l) => JSON.parse(l) as { time: number; err?: { message?: string } })
      .map((l) => `${l.time - pausedFrom} ms: ${l.err?.message}`)
      .join("; ");
  expect(paused.posts, story).toEqual([]);
  const bouncerLog = () =>
    readFileSync(pgPaths(cluster.stack).bouncerLog, "utf8")
      .split("\n")
      .filter((l) => /login|WARNING|ERROR|pause|resume|RECONNECT/i.test(l))
      .slice(-12)
      .join("\n");
  // Stats reads: none failed in most runs; in 2 of 11 (both times the switchover from pg1 to pg2)
  // one read sent as the PAUSE began waited about ten seconds and failed, with pgbouncer logging
  // "server login has been failing" (pgbouncer/pgbouncer#420: a PAUSE that closes a server
  // connection still logging in marks the pool as failing). At most that one, where Patroni's
  // switchover alone fails about 80 (docs/runbooks/postgres-ha.md).
  expect(
    paused.gets.length,
    `${story}\nthe edge's last 503s: ${why()}\npgbouncer:\n${bouncerLog()}`,
  ).toBeLessThanOrEqual(1);
  expect(pausedOut).toContain("pgbouncer paused");
  expect(check.failures, story).toEqual([]);
}, 240_000);
