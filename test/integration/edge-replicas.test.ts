// Edge replicas behind HAProxy (deploy/haproxy/edge.cfg, the shipped file run as is): three edge
// processes on one database and topic, a worker, and HAProxy health-checking them on /ready. Under
// open-loop load through the balancer (tools/scan-traffic.ts resending the same events on failure,
// and the scanner SDK), one replica is killed (kill -9) and restarted, then another is stopped
// (SIGTERM, drained). Every 202 is stored once and counted once (sql/checks.ts storedOnce), every
// SDK scan is stored, every batch the load generator had to resend ended acknowledged under its own
// event ids, and a key with a small limit never gets more than limit × time + burst accepted
// across the replicas while the killed one's share moves to the others.
//
// DRAIN_DELAY_MS for the servers is the shipped default unless this process' environment sets it
// (DRAIN_DELAY_MS=0 bun test … shows what a drain without the delay does behind the balancer).
//
// Deliberate breakages, each applied alone by hand and caught (2026-12-07):
// | breakage                                                    | caught by                                  |
// |-------------------------------------------------------------|--------------------------------------------|
// | main.ts without the drain delay's sleep (or DRAIN_DELAY_MS=0) | SIGTERM: HAProxy redispatched 9 to 14 requests |
// |                                                             | that met the closed listener (clients saw none) |
// | edge.cfg checking /health instead of /ready                 | SIGTERM: 15 redispatches                   |
// | edge.cfg checking /live (no such route)                     | both: no replica ever UP                   |
// | the load generator resending new event ids                  | kill: the resent batch's 200 ids never     |
// |                                                             | acknowledged (storedOnce still passes)     |
// | share() without the division (rate-limit-no-division)       | kill: the small key got 630 events, bound 297 |
// | edge.cfg without retry-on and redispatch                    | kill: no redispatch, the SDK saw a 503     |
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ScanClient, type ScanClientError } from "scan-client";
import { freshEvents } from "../../bench/requests-in-flight.ts";
import { loadServerConfig } from "../../server/config.ts";
import { LIVE_INTERVALS } from "../../server/replicas.ts";
import { storedOnce } from "../../sql/checks.ts";
import { startEdgeServer } from "../../tools/edge-server.ts";
import { metricValue, stopProcess } from "../../tools/harness.ts";
import { startTraffic } from "../../tools/scan-traffic.ts";
import { sendHeld, spawnEdgeBalancer } from "../helpers/edge-balancer.ts";
import { createDatabase, onCleanup, spawnServer, spawnWorker, workerEnv } from "../helpers/fixtures.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

const DRAIN_DELAY_MS = process.env.DRAIN_DELAY_MS ?? String(loadServerConfig({}).DRAIN_DELAY_MS);
const HEARTBEAT_S = 1;
// The small key: 20 events/s, a burst of 20, over every live replica.
const RATE = 20;
const BURST = 20;
// The load generator's batches: 200 events, about 27 KB, more than HAProxy's buffer (16 KB), so
// HAProxy cannot replay one cut by a kill; its client must.
const BIG_BATCH = 200;

type Db = Awaited<ReturnType<typeof createDatabase>>;

function createKey(db: Db, name: string, rate: number, burst: number): string {
  const r = Bun.spawnSync(
    ["bun", "run", "keys", "create", "--name", name, "--rate", String(rate), "--burst", String(burst)],
    { env: { ...process.env, DATABASE_URL: db.url } },
  );
  if (r.exitCode !== 0) throw new Error(`keys create ${name}: ${r.stderr.toString()}`);
  return r.stdout.toString().trim().split("\n").at(-1) as string;
}

/** A database, topics, a worker, three edge servers and HAProxy (the shipped config) in front. */
async function edgeCluster() {
  const db = await createDatabase();
  const wenv = await workerEnv(db.url, 3);
  spawnWorker(wenv, {}, { output: "ignore" });
  const bigKey = createKey(db, "load", 1_000_000, 1_000_000);
  const smallKey = createKey(db, "small", RATE, BURST);
  const env = {
    AUTH_DISABLED: "false",
    DATABASE_URL: db.url,
    SCANS_TOPIC: wenv.scansTopic,
    RATE_LIMIT_HEARTBEAT_SECONDS: String(HEARTBEAT_S),
    API_KEYS_REFRESH_SECONDS: "1",
    // HAProxy reaches the servers from 127.0.0.1: its X-Forwarded-For names the client.
    TRUSTED_PROXIES: "127.0.0.1",
    DRAIN_DELAY_MS,
    // Each request waits 100 ms for its acknowledgements: requests are in flight at any moment.
    KAFKA_LINGER_MS: "100",
  };
  const servers = [await spawnServer(env), await spawnServer(env), await spawnServer(env)];
  const ports = servers.map((s) => Number(new URL(s.url).port)) as [number, number, number];
  const balancer = await spawnEdgeBalancer(ports);
  const replicasSeen = (metricsUrls: string[]) =>
    Promise.all(metricsUrls.map((u) => metricValue(u, "rate_limit_replicas")));
  await waitFor(
    "every server to count 3 live replicas",
    () => replicasSeen(servers.map((s) => s.metricsUrl)),
    (c) => c.every((n) => n === 3),
    10_000,
    100,
  );
  return { db, env, servers, ports, balancer, bigKey, smallKey, replicasSeen };
}

/** The scanner SDK sending through the balancer: `perSecond` scans queued while running; stop() flushes. */
async function startSdk(endpoint: string, apiKey: string, perSecond: number) {
  const dir = mkdtempSync(join(tmpdir(), "edge-sdk-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const errors: string[] = [];
  const client = await ScanClient.open({
    endpoint,
    apiKey,
    queue: { path: join(dir, "queue.journal") },
    batch: { maxEvents: 20, maxWaitMs: 100 },
    retry: { baseMs: 100, maxMs: 1_000 },
    onError: (e: ScanClientError) => errors.push(`${e.code}${e.status ? ` ${e.status}` : ""}`),
    onRefused: (r) => errors.push(`refused ${r.length}`),
  });
  const scans: string[] = [];
  let running = true;
  onCleanup(() => {
    running = false;
    return client.close().catch(() => {});
  });
  let paused = false;
  const loop = (async () => {
    while (running) {
      if (paused) {
        await Bun.sleep(20);
        continue;
      }
      const queued = await client
        .scan({ qr_id: `QR-SDK-${scans.length % 50}`, scanner_id: "gate-sdk" })
        // Closed by the cleanup of a failed test: stop quietly.
        .catch((error) => {
          if (running) throw error;
          return null;
        });
      if (queued) scans.push(queued.event_id);
      await Bun.sleep(1000 / perSecond);
    }
  })();
  return {
    scans,
    errors,
    /** Stops queueing scans (and so sending, once the queue is acknowledged) until resumed. */
    pause(on: boolean) {
      paused = on;
    },
    async stop() {
      running = false;
      await loop;
      await client.flush({ timeoutMs: 30_000 });
      return client.metrics();
    },
  };
}

/**
 * The small key through the balancer: 3-event batches every 40 ms (75 events/s offered, well above
 * its 20/s), each batch resent (same events) after a status that is neither 202 nor 429.
 */
function startLimited(url: string, key: string) {
  const answers: { at: number; status: string; events: number }[] = [];
  const acknowledged: string[] = [];
  let running = true;
  const post = async (events: Record<string, unknown>[]) => {
    for (let i = 0; i < 50; i++) {
      let status = "error";
      try {
        const r = await fetch(`${url}/v1/scans`, {
          method: "POST",
          body: JSON.stringify(events),
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        });
        await r.arrayBuffer();
        status = String(r.status);
      } catch {}
      answers.push({ at: Date.now(), status, events: events.length });
      if (status === "202") acknowledged.push(...events.map((e) => String(e.event_id)));
      if (status === "202" || status === "429") return;
      await Bun.sleep(100);
    }
  };
  const sent: Promise<void>[] = [];
  const started = Date.now();
  let paused = false;
  const loop = (async () => {
    while (running) {
      if (!paused) sent.push(post(freshEvents(3)));
      await Bun.sleep(40);
    }
  })();
  return {
    answers,
    acknowledged,
    started,
    pause(on: boolean) {
      paused = on;
    },
    async stop() {
      running = false;
      await loop;
      await Promise.all(sent);
      return (Date.now() - started) / 1000;
    },
  };
}

/** Waits until every acknowledged id is stored, then the one-snapshot check of sql/checks.ts. */
async function expectStoredOnce(db: Db, acknowledged: Iterable<string>) {
  const ids = [...new Set([...acknowledged].map((id) => id.toLowerCase()))];
  await waitFor(
    `the worker to store all ${ids.length} acknowledged events`,
    async () => (await storedOnce(db.sql, ids)).missing,
    (missing) => missing === 0,
    30_000,
    250,
  );
  const report = await storedOnce(db.sql, ids);
  expect(report.failures).toEqual([]);
  return report;
}

/** Client answers by status in [from, to), and when (after `from`) the last non-202 came. */
function window(answers: { at: number; status: string }[], from: number, to = Number.POSITIVE_INFINITY) {
  const byStatus: Record<string, number> = {};
  let lastError = from;
  for (const a of answers) {
    if (a.at < from || a.at >= to) continue;
    byStatus[a.status] = (byStatus[a.status] ?? 0) + 1;
    if (a.status !== "202" && a.status !== "429") lastError = Math.max(lastError, a.at);
  }
  return { byStatus, recoveredAfterS: (lastError - from) / 1000 };
}

describe("edge replicas behind HAProxy (deploy/haproxy/edge.cfg)", () => {
  test("kill -9 of one replica under load: clients resend the same events through the balancer, every 202 stored and counted once, the small key's limit holds while the dead replica's share moves to the others", async () => {
    const c = await edgeCluster();
    const [first, victim, third] = c.servers as [(typeof c.servers)[0], (typeof c.servers)[0], (typeof c.servers)[0]];
    const answers: { at: number; status: string }[] = [];
    const traffic = startTraffic({
      url: c.balancer.url,
      apiKey: c.bigKey,
      rate: 2_000,
      batchSize: BIG_BATCH,
      invalidRatio: 0,
      duplicateRatio: 0,
      resendOnFailure: { delayMs: 100 },
      onAnswer: (status, at) => answers.push({ at, status }),
    });
    const sdk = await startSdk(c.balancer.url, c.bigKey, 40);
    const limited = startLimited(c.balancer.url, c.smallKey);
    await Bun.sleep(2_000);
    // Requests in flight to the victim at the kill: held (all but the last body byte) directly on
    // its port, so the kill cuts them; and whatever the balancer has open to it.
    const heldEvents = Array.from({ length: 3 }, () => freshEvents(5));
    const held = heldEvents.map((events) => sendHeld(c.ports[1], events, c.bigKey));
    await waitFor(
      "the held requests to be sent to the victim",
      async () => held.map((h) => h.request),
      (s) => s.every((r) => r.sent && r.status === null),
      5_000,
      20,
    );
    // Killed while the balancer has a request open to the victim, and only the load generator's
    // (the small requests paused a moment): one HAProxy cannot replay, so the fault reaches a client.
    sdk.pause(true);
    limited.pause(true);
    await Bun.sleep(400);
    const atKill = await waitFor(
      "haproxy to have a request open to edge2",
      async () => (await c.balancer.stats()).get("edge2"),
      (s) => (s?.scur ?? 0) > 0,
      5_000,
      2,
    );
    const killedPid = victim.proc.pid;
    victim.proc.kill("SIGKILL");
    const killAt = Date.now();
    sdk.pause(false);
    limited.pause(false);
    await Promise.race([
      Promise.all(held.map((h) => h.ended)),
      Bun.sleep(5_000).then(() => {
        throw new Error("held requests still open 5 s after the kill");
      }),
    ]);
    // The fault landed: each held request was connected and sent, then cut with no answer.
    expect(held.map((h) => ({ sent: h.request.sent, status: h.request.status }))).toEqual(
      held.map(() => ({ sent: true, status: null })),
    );

    // HAProxy takes it out; the survivors stop counting its heartbeat (their shares grow to 1/2).
    await waitFor(
      "haproxy to mark the killed replica DOWN",
      c.balancer.statusOf,
      (s) => s.edge2 === "DOWN",
      10_000,
      50,
    );
    const downAfterS = (Date.now() - killAt) / 1000;
    await waitFor(
      "the survivors to count 2 live replicas",
      () => c.replicasSeen([first.metricsUrl, third.metricsUrl]),
      (n) => n.every((x) => x === 2),
      ((LIVE_INTERVALS + 1) * HEARTBEAT_S + 3) * 1000,
      100,
    );
    const sharesGrewAfterS = (Date.now() - killAt) / 1000;
    const killedWindow = { from: killAt, to: Date.now() };
    await Bun.sleep(1_000);

    // Restarted on the same port: a new pid, back in rotation once its checks pass.
    const revived = await startEdgeServer({ env: c.env, port: c.ports[1], output: "ignore", readyTimeoutMs: 20_000 });
    onCleanup(() => stopProcess(revived.proc, 3_000));
    expect(revived.proc.pid).not.toBe(killedPid);
    const servedBefore = (await c.balancer.stats()).get("edge2")?.stot ?? 0;
    await waitFor(
      "the restarted replica to be UP and serving",
      async () => (await c.balancer.stats()).get("edge2"),
      (s) => s?.status === "UP" && s.stot > servedBefore,
      10_000,
      100,
    );
    await Bun.sleep(1_000);

    const trafficStats = await traffic.stop();
    const sdkMetrics = await sdk.stop();
    const limitedSeconds = await limited.stop();
    const after = (await c.balancer.stats()).get("edge2");

    // The held requests' events, resent by their client through the balancer: the same events.
    const heldIds = held.flatMap((h) => h.request.ids);
    for (const events of heldEvents) {
      const r = await fetch(`${c.balancer.url}/v1/scans`, {
        method: "POST",
        body: JSON.stringify(events),
        headers: { authorization: `Bearer ${c.bigKey}`, "content-type": "application/json" },
      });
      await r.arrayBuffer();
      expect(r.status).toBe(202);
    }

    const acknowledged = [...trafficStats.acknowledged, ...sdk.scans, ...limited.acknowledged, ...heldIds];
    const report = await expectStoredOnce(c.db, acknowledged);

    // The small key: never more than limit × time + burst over the whole run, across the kill.
    const limitedAccepted = limited.answers.filter((a) => a.status === "202").reduce((n, a) => n + a.events, 0);
    const bound = RATE * limitedSeconds + BURST;
    const killedAccepted = limited.answers
      .filter((a) => a.status === "202" && a.at >= killedWindow.from && a.at < killedWindow.to)
      .reduce((n, a) => n + a.events, 0);
    const killedSeconds = (killedWindow.to - killedWindow.from) / 1000;

    const k = window(answers, killAt);
    console.log(
      [
        `kill -9 of edge2 (pid ${killedPid}; ${atKill?.scur} sessions open to it through haproxy, 3 held requests cut), DRAIN_DELAY_MS=${DRAIN_DELAY_MS}`,
        `  haproxy marked it DOWN ${downAfterS.toFixed(2)} s after; survivors counted 2 replicas ${sharesGrewAfterS.toFixed(1)} s after; restarted as pid ${revived.proc.pid}`,
        `  haproxy on edge2: connection errors ${after?.econ}, response errors ${after?.eresp}; retries ${after?.wretr}, redispatches ${after?.wredis}`,
        `  load generator: ${trafficStats.requests} requests, by status ${JSON.stringify(trafficStats.statuses)}; ${trafficStats.resends} resends of ${trafficStats.resent.size} events; after the kill ${JSON.stringify(k.byStatus)}, all 202 again ${k.recoveredAfterS.toFixed(2)} s after it`,
        `  SDK: ${sdk.scans.length} scans, all acknowledged; errors it retried: ${JSON.stringify(sdk.errors)}`,
        `  stored once: ${report.acknowledged} acknowledged, ${report.rows} rows, counted ${report.counted}`,
        `  small key (${RATE}/s, burst ${BURST}): accepted ${limitedAccepted} events in ${limitedSeconds.toFixed(1)} s (bound ${bound.toFixed(0)}); ${killedAccepted} in the ${killedSeconds.toFixed(1)} s from the kill until the shares grew (bound ${(RATE * killedSeconds + BURST).toFixed(0)}); by status ${JSON.stringify(window(limited.answers, limited.started).byStatus)}`,
      ].join("\n"),
    );
    // Every batch the load generator had to resend ended acknowledged under its own ids...
    expect([...trafficStats.resent].filter((id) => !trafficStats.acknowledged.has(id))).toEqual([]);
    expect(trafficStats.abandoned).toBe(0);
    // The fault reached the load generator: a batch cut at the kill that it had to resend.
    expect(trafficStats.resent.size).toBeGreaterThan(0);
    // ...and nothing stored is an orphan: every stored event was acknowledged to its client.
    expect(report.unacknowledgedStored).toBe(0);
    expect(sdkMetrics.queued).toBe(0);
    expect(sdkMetrics.sent).toBe(sdk.scans.length);
    // The balancer's own retries (retry-on, redispatch): requests that met the dead replica and fit
    // in its buffer were replayed on another; no small request (the SDK's) reached a client as an error.
    expect(after?.wredis ?? 0).toBeGreaterThan(0);
    expect(sdk.errors).toEqual([]);
    expect(limitedAccepted).toBeLessThanOrEqual(bound);
    expect(killedAccepted).toBeLessThanOrEqual(RATE * killedSeconds + BURST);
    // The demand being above it, close to the limit: the dead replica's share went to the others.
    expect(limitedAccepted).toBeGreaterThanOrEqual(0.75 * RATE * limitedSeconds);
  }, 90_000);

  test("SIGTERM of one replica under load: drained behind the balancer, no error any client sees and no retry by HAProxy", async () => {
    const c = await edgeCluster();
    const victim = c.servers[2] as (typeof c.servers)[0];
    const answers: { at: number; status: string }[] = [];
    const traffic = startTraffic({
      url: c.balancer.url,
      apiKey: c.bigKey,
      rate: 400,
      batchSize: 10,
      invalidRatio: 0,
      duplicateRatio: 0,
      resendOnFailure: { delayMs: 100 },
      onAnswer: (status, at) => answers.push({ at, status }),
    });
    const sdk = await startSdk(c.balancer.url, c.bigKey, 40);
    await Bun.sleep(2_000);
    const before = (await c.balancer.stats()).get("edge3");
    const termAt = Date.now();
    const exitCode = await stopProcess(victim.proc, 20_000);
    const exitedAfterS = (Date.now() - termAt) / 1000;
    await Bun.sleep(1_000);
    const trafficStats = await traffic.stop();
    const sdkMetrics = await sdk.stop();
    const after = (await c.balancer.stats()).get("edge3");
    const report = await expectStoredOnce(c.db, [...trafficStats.acknowledged, ...sdk.scans]);
    const t = window(answers, termAt);
    console.log(
      [
        `SIGTERM of edge3 (DRAIN_DELAY_MS=${DRAIN_DELAY_MS}): exited ${exitCode} after ${exitedAfterS.toFixed(2)} s; haproxy sees it ${after?.status}`,
        `  haproxy on edge3: ${(after?.stot ?? 0) - (before?.stot ?? 0)} sessions after the signal; connection errors ${after?.econ}, response errors ${after?.eresp}; retries ${after?.wretr}, redispatches ${after?.wredis}`,
        `  load generator after the signal: ${JSON.stringify(t.byStatus)}; SDK errors: ${JSON.stringify(sdk.errors)}`,
        `  stored once: ${report.acknowledged} acknowledged, ${report.rows} rows, counted ${report.counted}`,
      ].join("\n"),
    );
    expect(exitCode).toBe(0);
    // No client saw an error: every answer a 202, nothing resent, nothing the SDK had to retry...
    expect(trafficStats.statuses).toEqual({ "202": trafficStats.requests });
    expect(trafficStats.resends).toBe(0);
    expect(sdk.errors).toEqual([]);
    expect(sdkMetrics.sent).toBe(sdk.scans.length);
    // ...and HAProxy never hit a closed listener or a cut connection to hide one: it stopped
    // sending to the replica before the replica stopped accepting.
    expect({ econ: after?.econ, eresp: after?.eresp, wretr: after?.wretr, wredis: after?.wredis }).toEqual({
      econ: 0,
      eresp: 0,
      wretr: 0,
      wredis: 0,
    });
    // The drain happened: the replica kept serving what HAProxy sent it after the signal, and
    // exited only after the delay (a replica that served nothing would pass the checks above).
    expect((after?.stot ?? 0) - (before?.stot ?? 0)).toBeGreaterThan(0);
    expect(exitedAfterS).toBeGreaterThanOrEqual(Number(DRAIN_DELAY_MS) / 1000);
  }, 90_000);
});
