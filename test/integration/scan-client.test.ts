// The scanner SDK (packages/scan-client) against the real edge, Kafka, worker and Postgres: every
// scan() that resolved is stored exactly once and counted once (scan_counts), with the event_id and
// scanned_at that scan() returned, through a kill -9 between queueing and acknowledgement, wrong
// device clocks, 429/503 bursts, final per-event refusals and a 403 for one event's tenant. The
// catalog of these breakages, re-applied by tools/mutations/run.ts: tools/mutations/catalog/sdk.ts.
//
// Deliberate breakages tried (each applied alone by hand, the test run, then restored):
// | breakage                                                        | caught by                              |
// |-----------------------------------------------------------------|----------------------------------------|
// | FileQueue.open does not replay the journal                      | kill -9 (edge unreachable, half sent)   |
// | scan() resolves before its append is on disk (append not awaited)| kill -9 (edge unreachable)             |
// | scanned_at re-stamped at each attempt                           | 503 burst (stored twice), kill -9      |
// | event_id re-stamped at each attempt                             | 503 burst, kill -9                     |
// | Retry-After ignored (backoff only)                              | 429 burst and 503 burst (a request too soon) |
// | a per-event 400 retried instead of settled                      | final 400 (flush times out)            |
// | refused events removed without onRefused                        | final 400 (onRefused saw nothing)      |
// | sent_at stamped at queue time, not per attempt                   | device clock 3 hours slow, sent 6 s late |
// | a 403 on a batch taken as final for all its events (no bisection) | 403 tenant (16 refused instead of 1)  |
// | the journal's fsync removed                                     | NOT caught: a kill -9 keeps the page    |
// |                                                                 | cache; only a power loss would show it |
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ScanClient, type ScanClientError } from "scan-client";
import { type KeysIo, keys } from "../../jobs/keys.ts";
import { replay } from "../../packages/scan-client/src/queue/file.ts";
import { sha256 } from "../../shared/api-keys.ts";
import { createLogger } from "../../shared/logger.ts";
import { API_KEY, createDatabase, onCleanup, spawnServer, spawnWorker, workerEnv } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

type Db = Awaited<ReturnType<typeof createDatabase>>;
interface Stamped {
  event_id: string;
  scanned_at: string;
}

/** A fresh database, topics, one worker and one edge server writing there. */
async function pipeline(edgeEnv: Record<string, string> = {}) {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 3);
  spawnWorker(env, {}, { output: "ignore" });
  const server = await spawnServer({ SCANS_TOPIC: env.scansTopic, DATABASE_URL: db.url, ...edgeEnv });
  return { db, url: server.url };
}

function journalDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "scan-client-it-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Waits until Postgres holds `atLeast` events, then asserts: each row once per event_id, every
 * `mustHave` event stored with its own scanned_at, nothing else than `mayHave`, and scan_counts
 * summing to the rows (each counted once).
 */
async function expectStoredOnce(db: Db, mustHave: Stamped[], mayHave: Stamped[] = mustHave): Promise<number> {
  await waitFor(
    `${mustHave.length} events in scan_events`,
    async () => Number((await db.sql`select count(*)::int as n from scan_events`)[0]?.n),
    (n) => n >= mustHave.length,
    30_000,
  );
  // The worker may still be writing the last ones: stable means two equal reads in a row.
  let rows: { event_id: string; scanned_at: Date }[] = [];
  let previous = -1;
  for (;;) {
    rows = await db.sql`select event_id::text, scanned_at from scan_events order by event_id`;
    if (rows.length === previous) break;
    previous = rows.length;
    await Bun.sleep(500);
  }
  const counted = Number((await db.sql`select coalesce(sum(count), 0)::int as n from scan_counts`)[0]?.n);
  const byId = new Map<string, number[]>();
  for (const r of rows) byId.set(r.event_id, [...(byId.get(r.event_id) ?? []), r.scanned_at.getTime()]);
  const duplicates = [...byId].filter(([, at]) => at.length > 1);
  expect(duplicates).toEqual([]);
  const missing = mustHave.filter((s) => {
    const at = byId.get(s.event_id);
    return !at || at[0] !== Date.parse(s.scanned_at);
  });
  expect(missing).toEqual([]);
  const allowed = new Set(mayHave.map((s) => s.event_id));
  expect(rows.filter((r) => !allowed.has(r.event_id))).toEqual([]);
  expect(counted).toBe(rows.length);
  return rows.length;
}

/** Runs scanner.ts (a separate Bun process) on `journal`; its stdout lines as they come. */
function spawnScanner(journal: string, endpoint: string, count: number) {
  const proc = Bun.spawn(["bun", join(import.meta.dir, "../../packages/scan-client/test/fixtures/scanner.ts")], {
    env: { ...process.env, JOURNAL: journal, ENDPOINT: endpoint, COUNT: String(count) },
    stdout: "pipe",
    stderr: "inherit",
  });
  onCleanup(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await proc.exited;
  });
  const resolved: Stamped[] = [];
  let sent = 0;
  (async () => {
    let buffer = "";
    for await (const chunk of proc.stdout) {
      buffer += new TextDecoder().decode(chunk);
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        const [kind, a, b] = line.split(" ");
        if (kind === "S") resolved.push({ event_id: a as string, scanned_at: b as string });
        if (kind === "M") sent = Number(a);
      }
    }
  })();
  return { proc, resolved, sent: () => sent };
}

/** A proxy in front of the edge: `answer(n)` may answer request n itself; else it is forwarded (after `delayMs`). */
function proxy(target: string, answer: (n: number) => Response | null, delayMs = 0) {
  let n = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const own = answer(n++);
      if (own) return own;
      if (delayMs) await Bun.sleep(delayMs);
      const headers = new Headers(req.headers);
      headers.delete("host");
      headers.delete("content-length");
      const url = new URL(req.url);
      return fetch(`${target}${url.pathname}`, { method: req.method, headers, body: await req.arrayBuffer() });
    },
  });
  onCleanup(() => server.stop(true));
  return { url: `http://127.0.0.1:${server.port}`, requests: () => n };
}

/** A client of this test process whose requests (time, status, Retry-After) are recorded. */
async function recordingClient(options: Parameters<typeof ScanClient.open>[0]) {
  const requests: { at: number; status: number; retryAfterMs: number | null; events: number }[] = [];
  const errors: ScanClientError[] = [];
  const client = await ScanClient.open({
    onError: (e) => errors.push(e),
    ...options,
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      const ra = res.headers.get("retry-after");
      // A 202 whose RateLimit field says nothing is left (r=0) asks for a wait of t seconds too.
      const limit = /(?:^|;)\s*r=0;\s*t=(\d+)/.exec(res.headers.get("ratelimit") ?? "");
      const asked = ra ? Number(ra) * 1000 : limit ? Number(limit[1]) * 1000 : null;
      const body = init.body as Uint8Array;
      const events = new TextDecoder().decode(body).split("\n").filter(Boolean).length;
      requests.push({ at: performance.now(), status: res.status, retryAfterMs: asked, events });
      return res;
    },
  });
  onCleanup(() => client.close());
  return { client, requests, errors };
}

/** Every request after an answer asking for a wait (Retry-After, RateLimit r=0) came at least that long after it. */
function expectRetryAfterHonoured(requests: { at: number; retryAfterMs: number | null; status: number }[]) {
  const tooSoon = requests.flatMap((r, i) => {
    const next = requests[i + 1];
    if (r.retryAfterMs === null || !next) return [];
    // `at` is taken once the answer arrived: the next request starts later than that.
    return next.at - r.at < r.retryAfterMs ? [{ status: r.status, waitedMs: Math.round(next.at - r.at) }] : [];
  });
  expect(tooSoon).toEqual([]);
}

test("kill -9 while the edge is unreachable: a new process on the same journal sends every resolved scan once", async () => {
  const { db, url } = await pipeline();
  const journal = join(journalDir(), "q.journal");
  const unreachable = `http://127.0.0.1:${freePort()}`;
  const child = spawnScanner(journal, unreachable, 300);
  // Killed mid-way through its scans: some scan() calls resolved, others were being written.
  await waitFor(
    "the scanner to resolve 150 scans",
    async () => child.resolved.length,
    (n) => n >= 150,
    20_000,
    5,
  );
  child.proc.kill("SIGKILL");
  await child.proc.exited;
  const resolved = [...child.resolved];
  expect(resolved.length).toBeLessThan(300);
  // What the journal holds: the resolved scans, and maybe some whose write ended just before the kill.
  const journaled = replay(journal).events.map((q) => ({ event_id: q.event.event_id, scanned_at: q.event.scanned_at }));

  const { client } = await recordingClient({ endpoint: url, queue: { path: journal }, batch: { maxWaitMs: 0 } });
  const queued = client.metrics().queued;
  expect(queued).toBeGreaterThanOrEqual(resolved.length);
  await client.flush({ timeoutMs: 20_000 });
  expect(client.metrics()).toMatchObject({ queued: 0, sent: queued, refused: 0 });
  const stored = await expectStoredOnce(db, resolved, journaled);
  expect(stored).toBe(queued);
});

test("kill -9 after part was sent: the rest is resent by the next process, nothing stored twice", async () => {
  const { db, url } = await pipeline();
  const journal = join(journalDir(), "q.journal");
  // A slow path to the edge, so the kill lands with some batches acknowledged and one in flight.
  const slow = proxy(url, () => null, 100);
  const child = spawnScanner(journal, slow.url, 200);
  await waitFor(
    "the scanner to resolve 200 scans and have 50 acknowledged",
    async () => ({ resolved: child.resolved.length, sent: child.sent() }),
    (s) => s.resolved === 200 && s.sent >= 50,
    30_000,
    5,
  );
  child.proc.kill("SIGKILL");
  await child.proc.exited;
  expect(child.sent()).toBeLessThan(200);

  const { client } = await recordingClient({ endpoint: url, queue: { path: journal }, batch: { maxWaitMs: 0 } });
  expect(client.metrics().queued).toBeGreaterThan(0);
  await client.flush({ timeoutMs: 20_000 });
  expect(await expectStoredOnce(db, child.resolved)).toBe(200);
});

test("429 bursts from a tiny per-key rate limit: the SDK waits Retry-After, splits by Max-Batch-Events, loses nothing", async () => {
  // A real key: the limits are per key (AUTH_DISABLED has none).
  const { db, url } = await pipeline({
    AUTH_DISABLED: "false",
    API_KEYS_DB: "false",
    API_KEY_SHA256: sha256(API_KEY).toString("hex"),
    RATE_LIMIT_EVENTS_PER_SECOND: "40",
    RATE_LIMIT_BURST: "20",
  });
  const { client, requests, errors } = await recordingClient({
    endpoint: url,
    apiKey: API_KEY,
    queue: { path: join(journalDir(), "q.journal") },
    // Sent when 50 are queued (or at flush()), so the first request is a batch of 50.
    batch: { maxEvents: 50, maxWaitMs: 10_000 },
    retry: { baseMs: 10, maxMs: 3_000 }, // above the Retry-After asked: server waits are capped at maxMs
  });
  const stamped: Stamped[] = [];
  for (let i = 0; i < 120; i++) stamped.push(await client.scan({ qr_id: `QR-${i % 5}` }));
  await client.flush({ timeoutMs: 30_000 });
  const statuses = requests.map((r) => r.status);
  expect(statuses).toContain(429);
  // The first batch (50 > burst 20) was answered Max-Batch-Events and split; none larger afterwards.
  expect(requests[0]).toMatchObject({ status: 429, retryAfterMs: null, events: 50 });
  expect(requests.slice(1).every((r) => r.events <= 20)).toBe(true);
  // The edge asked for a wait (Retry-After on a 429, or RateLimit r=0 on a 202) and it was honoured.
  expect(requests.some((r) => r.retryAfterMs !== null)).toBe(true);
  expectRetryAfterHonoured(requests);
  expect(errors.every((e) => e.code === "rate_limited")).toBe(true);
  expect(client.metrics()).toMatchObject({ queued: 0, sent: 120, refused: 0 });
  expect(await expectStoredOnce(db, stamped)).toBe(120);
});

test("503 + Retry-After in a burst: the same events are resent after it, stored once", async () => {
  const { db, url } = await pipeline();
  const burst = proxy(url, (n) =>
    n < 3
      ? new Response(JSON.stringify({ error: "kafka unavailable", request_id: "p" }), {
          status: 503,
          headers: { "retry-after": "1", "content-type": "application/json" },
        })
      : null,
  );
  const { client, requests, errors } = await recordingClient({
    endpoint: burst.url,
    queue: { path: join(journalDir(), "q.journal") },
    batch: { maxEvents: 20, maxWaitMs: 0 },
    retry: { baseMs: 10, maxMs: 3_000 }, // above the Retry-After asked: server waits are capped at maxMs
  });
  const stamped: Stamped[] = [];
  for (let i = 0; i < 60; i++) stamped.push(await client.scan({ qr_id: `QR-${i % 5}` }));
  await client.flush({ timeoutMs: 30_000 });
  expect(requests.slice(0, 3).map((r) => r.status)).toEqual([503, 503, 503]);
  expectRetryAfterHonoured(requests);
  expect(errors.map((e) => e.code)).toEqual(["server_error", "server_error", "server_error"]);
  expect(client.metrics()).toMatchObject({ queued: 0, sent: 60, refused: 0 });
  expect(await expectStoredOnce(db, stamped)).toBe(60);
});

for (const [name, skewMs, offlineS] of [
  ["2 hours fast", 2 * 3_600_000, 0],
  // Sent 6 s after the scans (the first request answered 503 + Retry-After: 6): a sent_at stamped at
  // queue time instead of per attempt would put derived_at at the arrival, 6 s late.
  ["3 hours slow, sent 6 s late", -3 * 3_600_000, 6],
] as const) {
  test(`a device clock ${name}: every scan stored once, derived_at within 5 s of the real scan time`, async () => {
    const { db, url } = await pipeline();
    const edge = proxy(url, (n) =>
      n === 0 && offlineS > 0
        ? new Response(JSON.stringify({ error: "unavailable", request_id: "p" }), {
            status: 503,
            headers: { "retry-after": String(offlineS), "content-type": "application/json" },
          })
        : null,
    );
    const { client } = await recordingClient({
      endpoint: edge.url,
      queue: { path: join(journalDir(), "q.journal") },
      batch: { maxEvents: 10, maxWaitMs: 200 },
      now: () => Date.now() + skewMs,
    });
    const real = new Map<string, number>();
    const stamped: Stamped[] = [];
    for (let i = 0; i < 30; i++) {
      const realAt = Date.now();
      const s = await client.scan({ qr_id: `QR-${i % 3}` });
      real.set(s.event_id, realAt);
      stamped.push(s);
      if (i % 10 === 9) await Bun.sleep(300); // batches sent at other moments than their scans
    }
    await client.flush({ timeoutMs: 20_000 });
    expect(client.metrics()).toMatchObject({ queued: 0, sent: 30, refused: 0 });
    expect(await expectStoredOnce(db, stamped)).toBe(30);
    const rows: { event_id: string; derived_at: Date | null }[] =
      await db.sql`select event_id::text, derived_at from scan_events`;
    const off = rows
      .map((r) => ({ id: r.event_id, errorMs: (r.derived_at?.getTime() ?? 0) - (real.get(r.event_id) ?? 0) }))
      .filter((r) => Math.abs(r.errorMs) > 5_000);
    expect(off).toEqual([]);
  });
}

test("a final 400 per event goes to onRefused once and is removed; the rest are stored", async () => {
  const { db, url } = await pipeline();
  const refused: { qr_id: string; status: number; paths: string[] }[] = [];
  const { client } = await recordingClient({
    endpoint: url,
    queue: { path: join(journalDir(), "q.journal") },
    batch: { maxEvents: 10, maxWaitMs: 0 },
    onRefused: (r) =>
      refused.push(...r.map((x) => ({ qr_id: x.event.qr_id, status: x.status, paths: x.errors.map((e) => e.path) }))),
  });
  const good: Stamped[] = [];
  for (let i = 0; i < 12; i++) {
    if (i % 4 === 1) await client.scan({ qr_id: `bad qr ${i}!` });
    else good.push(await client.scan({ qr_id: `QR-${i}` }));
  }
  await client.flush({ timeoutMs: 20_000 });
  // A batch of bad events only: the edge answers 400 {accepted: 0, rejected}.
  await client.scan({ qr_id: "bad one" });
  await client.flush({ timeoutMs: 20_000 });
  expect(refused.map((r) => r.qr_id).sort()).toEqual(["bad one", "bad qr 1!", "bad qr 5!", "bad qr 9!"]);
  expect(refused.every((r) => r.paths.includes("qr_id") && r.status === 400)).toBe(true);
  expect(client.metrics()).toMatchObject({ queued: 0, sent: 9, refused: 4 });
  expect(await expectStoredOnce(db, good)).toBe(9);
});

test("a 403 for one event outside the key's tenant: the batch is bisected, that event refused, the others stored", async () => {
  const db = await createDatabase();
  const out: string[] = [];
  const io: KeysIo = { out: (l) => out.push(l), audit: createLogger("keys", "silent"), operator: "test" };
  const args = ["create", "--name", "acme", "--scopes", "scans:write", "--qr-prefix", "acme:"];
  expect(await keys(args, db.sql, io)).toBe(0);
  const secret = out.at(-1) as string;
  const env = await workerEnv(db.url, 3);
  spawnWorker(env, {}, { output: "ignore" });
  const server = await spawnServer({
    SCANS_TOPIC: env.scansTopic,
    DATABASE_URL: db.url,
    AUTH_DISABLED: "false",
    API_KEYS_DB: "true",
  });
  const refused: { qr_id: string; status: number }[] = [];
  const { client, requests } = await recordingClient({
    endpoint: server.url,
    apiKey: secret,
    queue: { path: join(journalDir(), "q.journal") },
    batch: { maxEvents: 16, maxWaitMs: 10_000 },
    onRefused: (r) => refused.push(...r.map((x) => ({ qr_id: x.event.qr_id, status: x.status }))),
  });
  const good: Stamped[] = [];
  for (let i = 0; i < 16; i++) {
    if (i === 11) await client.scan({ qr_id: "globex:1" });
    else good.push(await client.scan({ qr_id: `acme:${i}` }));
  }
  await client.flush({ timeoutMs: 20_000 });
  expect(refused).toEqual([{ qr_id: "globex:1", status: 403 }]);
  // 16 -> 8 (accepted) + 8 -> 4 + 4 (accepted) -> 2 + 2 (accepted) -> 1 (403) + 1: a handful of requests.
  expect(requests.filter((r) => r.status === 403).length).toBeLessThanOrEqual(5);
  expect(client.metrics()).toMatchObject({ queued: 0, sent: 15, refused: 1 });
  expect(await expectStoredOnce(db, good)).toBe(15);
});
