// Rate limits against the real broker: a key's flood gets 429 with Retry-After and the RateLimit
// fields, and is served again once the client waits as told; a batch weighs its events, and one
// above the burst is refused with the largest batch named (in-process, and through a server with a
// key from `bun run keys create`); failed authentications are throttled per address; the live
// replica count divides the limits (its heartbeats: rate-limit-replicas.test.ts); each hit is
// counted in rate_limited_total{scope}.
import { describe, expect, test } from "bun:test";
import { type KeyObject, generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { type KeysIo, keys } from "../../jobs/keys.ts";
import { createLogger } from "../../shared/logger.ts";
import { metricValue } from "../../tools/harness.ts";
import {
  API_KEY,
  createAdmin,
  createDatabase,
  createKeyStore,
  createTestApp,
  createTopic,
  onCleanup,
  spawnServer,
} from "../helpers/fixtures.ts";
import { scan } from "../helpers/server.ts";
import { brokerConfig, ensureStack } from "../helpers/stack.ts";

await ensureStack();

/** A JWT key file the edge trusts, and tokens: one it signed, one signed by another key. */
async function jwtFixture() {
  const dir = mkdtempSync(join(tmpdir(), "limits-jwt-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const pair = () => generateKeyPairSync("ec", { namedCurve: "P-256" });
  const trusted = pair();
  writeFileSync(join(dir, "idp.pem"), trusted.publicKey.export({ type: "spki", format: "pem" }).toString());
  const sign = async (privateKey: KeyObject) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ scope: "scans:write" })
      .setProtectedHeader({ alg: "ES256", kid: "idp" })
      .setIssuer("https://issuer.test")
      .setAudience("qrscan-edge")
      .setSubject("scanner-1")
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(privateKey);
  };
  return {
    // A token without a tenant (the test's events are of no tenant): allowed explicitly.
    env: {
      JWT_KEY_FILES: join(dir, "idp.pem"),
      JWT_ISSUER: "https://issuer.test",
      JWT_AUDIENCE: "qrscan-edge",
      JWT_ALLOW_GLOBAL_TOKENS: "true",
    },
    valid: () => sign(trusted.privateKey),
    forged: () => sign(pair().privateKey),
  };
}

const batch = (n: number) => JSON.stringify(Array.from({ length: n }, () => scan()));
const limited = async (registry: { getSingleMetricAsString(name: string): Promise<string> }, scope: string) => {
  const text = await registry.getSingleMetricAsString("rate_limited_total");
  const line = text.split("\n").find((l) => l.includes(`scope="${scope}"`));
  if (!line) throw new Error(`no rate_limited_total{scope="${scope}"} in:\n${text}`);
  return Number(line.split(" ").at(-1));
};
/** Messages in `topic` now: the sum of its partitions' high watermarks. */
const produced = (topic: string) =>
  createAdmin()
    .groupLag("unused-group", topic)
    .reduce((n, p) => n + p.highWatermark, 0);

describe("per-key limit, in events", () => {
  test("a flood gets 429 + Retry-After + RateLimit fields; waiting Retry-After is enough to be served again", async () => {
    const { post, registry } = await createTestApp({ RATE_LIMIT_EVENTS_PER_SECOND: "1", RATE_LIMIT_BURST: "10" });
    expect(await limited(registry, "key")).toBe(0);
    const ok = await post(batch(4));
    expect(ok.status).toBe(202);
    expect(ok.headers.get("ratelimit-policy")).toBe('"key";q=10;w=10');
    expect(ok.headers.get("ratelimit")).toMatch(/^"key";r=6;t=\d+$/);

    // 20 single events at once: 6 tokens were left, plus 1 per second the flood lasts.
    const started = performance.now();
    const responses = await Promise.all(Array.from({ length: 20 }, () => post(batch(1))));
    const elapsedS = (performance.now() - started) / 1000;
    const statuses = responses.map((r) => r.status);
    const accepted = statuses.filter((s) => s === 202).length;
    expect(accepted).toBeGreaterThanOrEqual(6);
    expect(accepted).toBeLessThanOrEqual(6 + Math.ceil(elapsedS));
    expect(statuses.filter((s) => s !== 202 && s !== 429)).toEqual([]);
    const refused = responses.find((r) => r.status === 429);
    if (!refused) throw new Error(`no 429 among ${statuses}`);
    const body = (await refused.json()) as { error: string; request_id: string };
    expect(body.error).toContain("rate limit");
    expect(body.request_id).toBeString();
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get("ratelimit")).toBe(`"key";r=0;t=${retryAfter}`);
    expect(refused.headers.get("ratelimit-policy")).toBe('"key";q=10;w=10');
    expect(await limited(registry, "key")).toBe(statuses.filter((s) => s === 429).length);
    expect(await limited(registry, "ip")).toBe(0);

    // Honour Retry-After for a 1-event request: it is served.
    await Bun.sleep(retryAfter * 1000);
    expect((await post(batch(1))).status).toBe(202);
  });

  test("a batch weighs its events: one 8-event batch spends what 8 single events would", async () => {
    const { post } = await createTestApp({ RATE_LIMIT_EVENTS_PER_SECOND: "1", RATE_LIMIT_BURST: "10" });
    expect((await post(batch(8))).status).toBe(202);
    const second = await post(batch(8));
    expect(second.status).toBe(429);
    // 2 tokens left, 8 needed at 1/s: 6 s.
    expect(Number(second.headers.get("retry-after"))).toBeGreaterThanOrEqual(5);
    expect((await post(batch(2))).status).toBe(202);
    // The bucket is empty now: refused before the body is even read (a body that is not JSON).
    const early = await post("not json");
    expect(early.status).toBe(429);
  });

  test("a batch above the burst is refused whole, naming the largest batch, with no Retry-After; nothing is produced", async () => {
    const { post, topic, registry } = await createTestApp({
      RATE_LIMIT_EVENTS_PER_SECOND: "10",
      RATE_LIMIT_BURST: "10",
    });
    // A full bucket of 10: the 1,000-event batch weighs 1,000, which no bucket of 10 ever holds.
    const big = batch(1_000);
    for (let i = 0; i < 2; i++) {
      const res = await post(big);
      expect(res.status).toBe(429);
      expect(res.headers.get("max-batch-events")).toBe("10");
      expect(res.headers.get("retry-after")).toBeNull();
      expect(res.headers.get("ratelimit-policy")).toBe('"key";q=10;w=1');
      expect(((await res.json()) as { error: string }).error).toBe(
        "a batch of 1000 events is more than this API key may send at once (10); it will never be accepted as it is: split it into batches of at most 10 events (Max-Batch-Events)",
      );
    }
    expect(produced(topic)).toBe(0);
    expect(await limited(registry, "key")).toBe(2);
    // The refusals cost nothing: the largest batch named is served at once, and weighs 10.
    expect((await post(batch(10))).status).toBe(202);
    expect(produced(topic)).toBe(10);
    const after = await post(batch(10));
    expect([after.status, after.headers.get("retry-after")]).toEqual([429, "1"]);
  });

  test("two live replicas: each allows half the burst, and a batch above the half is refused as too large", async () => {
    const one = await createTestApp({ RATE_LIMIT_EVENTS_PER_SECOND: "1", RATE_LIMIT_BURST: "10" });
    const two = await createTestApp(
      { RATE_LIMIT_EVENTS_PER_SECOND: "1", RATE_LIMIT_BURST: "10" },
      { replicas: { count: 2, onChange: () => {} } },
    );
    expect((await one.post(batch(10))).status).toBe(202);
    const tooLarge = await two.post(batch(10));
    expect([tooLarge.status, tooLarge.headers.get("max-batch-events")]).toEqual([429, "5"]);
    expect((await two.post(batch(5))).status).toBe(202);
    const res = await two.post(batch(1));
    expect(res.status).toBe(429);
    expect(res.headers.get("ratelimit-policy")).toBe('"key";q=5;w=10');
  });

  test("AUTH_DISABLED: no per-key limit (every request would share one anonymous bucket)", async () => {
    const { post } = await createTestApp({
      AUTH_DISABLED: "true",
      RATE_LIMIT_EVENTS_PER_SECOND: "1",
      RATE_LIMIT_BURST: "1",
    });
    for (let i = 0; i < 5; i++) expect((await post(batch(3))).status).toBe(202);
  });

  test("the stats route costs one request", async () => {
    const { app } = await createTestApp({ RATE_LIMIT_EVENTS_PER_SECOND: "1", RATE_LIMIT_BURST: "2" });
    const get = () =>
      app.request("/v1/qr/QR-1/stats?from=not-a-time", { headers: { authorization: `Bearer ${API_KEY}` } });
    // Charged before the handler: a query it refuses (400, no database needed) still costs one.
    expect((await get()).status).toBe(400);
    expect((await get()).status).toBe(400);
    expect((await get()).status).toBe(429);
  });
});

test("through a server: a key made with `keys create --rate 10 --burst 10` cannot send a 1,000-event batch, and nothing is produced", async () => {
  const db = await createDatabase();
  const topic = await createTopic(3);
  const created = Bun.spawnSync(["bun", "run", "keys", "create", "--name", "small", "--rate", "10", "--burst", "10"], {
    env: { ...process.env, DATABASE_URL: db.url },
  });
  expect(created.exitCode).toBe(0);
  const secret = created.stdout.toString().trim().split("\n").at(-1) as string;
  expect(secret).toMatch(/^qrs_/);
  const server = await spawnServer({
    AUTH_DISABLED: "false",
    DATABASE_URL: db.url,
    SCANS_TOPIC: topic,
    KAFKA_BROKERS: String(brokerConfig["bootstrap.servers"]),
  });
  const post = (body: string) =>
    fetch(`${server.url}/v1/scans`, {
      method: "POST",
      body,
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    });
  const big = await post(batch(1_000));
  expect(big.status).toBe(429);
  expect(big.headers.get("max-batch-events")).toBe("10");
  expect(big.headers.get("retry-after")).toBeNull();
  expect(((await big.json()) as { error: string }).error).toContain("split it into batches of at most 10 events");
  expect(produced(topic)).toBe(0);
  expect((await post(batch(10))).status).toBe(202);
  expect(produced(topic)).toBe(10);
});

test("limit hits are audited, throttled: one line per scope per 10 s, naming the principal, never the key", async () => {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("server-test", "info", { write: (l: string) => void lines.push(JSON.parse(l)) });
  const { post } = await createTestApp(
    {
      RATE_LIMIT_EVENTS_PER_SECOND: "1",
      RATE_LIMIT_BURST: "1",
      AUTH_FAILURES_PER_MINUTE: "1",
      AUTH_FAILURE_BURST: "1",
    },
    { logger },
  );
  // A key's flood, then a key-guessing flood, each all at once.
  const keyFlood = await Promise.all(Array.from({ length: 30 }, () => post(batch(1))));
  expect(keyFlood.filter((r) => r.status === 429).length).toBeGreaterThan(20);
  await Promise.all(Array.from({ length: 10 }, () => post(batch(1), { authorization: "Bearer wrong" })));
  const guessFlood = await Promise.all(
    Array.from({ length: 10 }, () => post(batch(1), { authorization: "Bearer wrong" })),
  );
  expect(guessFlood.map((r) => r.status)).toEqual(Array(10).fill(429));
  const audit = lines.filter((l) => l.msg === "rate limit hit; answered 429");
  expect(audit.map((l) => [l.scope, l.level])).toEqual([
    ["key", "warn"],
    ["ip", "warn"],
  ]);
  expect(audit[0]?.principal).toMatch(/^static:[0-9a-f]{8}$/);
  expect(JSON.stringify(lines)).not.toContain(API_KEY);
});

describe("per-address limit on failed authentication", () => {
  test("key guessing gets 429 after the burst of 401s, for every key from that address; counted as scope ip", async () => {
    const { post, registry } = await createTestApp({ AUTH_FAILURES_PER_MINUTE: "6", AUTH_FAILURE_BURST: "3" });
    const guesses: number[] = [];
    for (let i = 0; i < 6; i++) guesses.push((await post(batch(1), { authorization: `Bearer guess-${i}` })).status);
    expect(guesses).toEqual([401, 401, 401, 429, 429, 429]);
    // From the same address, the right key is refused too until a token is back (10 s at 6/min).
    const blocked = await post(batch(1));
    expect(blocked.status).toBe(429);
    expect(blocked.headers.get("ratelimit-policy")).toBe('"ip";q=3;w=30');
    expect(Number(blocked.headers.get("retry-after"))).toBeGreaterThanOrEqual(9);
    expect(await limited(registry, "ip")).toBe(4);
    expect(await limited(registry, "key")).toBe(0);
  });

  test("concurrent guesses that all passed the check are paid for by a longer wait; concurrent good requests cost nothing", async () => {
    const { post } = await createTestApp({ AUTH_FAILURES_PER_MINUTE: "60", AUTH_FAILURE_BURST: "3" });
    const good = await Promise.all(Array.from({ length: 20 }, () => post(batch(1))));
    expect(good.map((r) => r.status)).toEqual(Array(20).fill(202));
    const guesses = await Promise.all(
      Array.from({ length: 30 }, (_, i) => post(batch(1), { authorization: `Bearer guess-${i}` })),
    );
    const failed = guesses.filter((r) => r.status === 401).length;
    expect(failed + guesses.filter((r) => r.status === 429).length).toBe(30);
    // Far more failed than the burst: all were checked before any was charged.
    expect(failed).toBeGreaterThan(10);
    // Each 401 cost a token, into debt, but at most one burst of it: the address waits for the
    // burst's refill and one more token (4 s at 1/s), not for every concurrent failure (an hour
    // allowed before, which a NAT's other clients would sit out too).
    const after = await post(batch(1));
    expect(after.status).toBe(429);
    const wait = Number(after.headers.get("retry-after"));
    expect(wait).toBeGreaterThanOrEqual(3);
    expect(wait).toBeLessThanOrEqual(4);
  });

  test("over the limit, a valid managed key or JWT still gets 202; a static key, none, a wrong or a forged one get 429", async () => {
    const db = await createDatabase();
    const io: KeysIo = { out: () => {}, audit: createLogger("keys", "silent"), operator: "test" };
    const out: string[] = [];
    expect(await keys(["create", "--name", "limits"], db.sql, { ...io, out: (l) => out.push(l) })).toBe(0);
    const managed = out.at(-1) as string;
    const revokedOut: string[] = [];
    expect(await keys(["create", "--name", "old"], db.sql, { ...io, out: (l) => revokedOut.push(l) })).toBe(0);
    const revokedId = /created (key_[0-9a-f]{12})/.exec(revokedOut[0] as string)?.[1] as string;
    expect(await keys(["revoke", revokedId], db.sql, io)).toBe(0);
    const { store } = await createKeyStore(db.url);
    const jwt = await jwtFixture();
    const { post, registry } = await createTestApp(
      { AUTH_FAILURES_PER_MINUTE: "1", AUTH_FAILURE_BURST: "2", ...jwt.env },
      { keyStore: store, sql: db.sql },
    );
    const status = async (headers: Record<string, string>) => (await post(batch(1), headers)).status;
    expect([await status({ authorization: "Bearer a" }), await status({ authorization: "Bearer b" })]).toEqual([
      401, 401,
    ]);
    // The address is over its limit now.
    expect(await status({})).toBe(429); // the static key (the fixture's default)
    expect(await status({ authorization: "" })).toBe(429); // no credential
    expect(await status({ authorization: "Bearer c" })).toBe(429);
    expect(await status({ authorization: `Bearer ${revokedOut.at(-1)}` })).toBe(429);
    expect(await status({ authorization: `Bearer ${await jwt.forged()}` })).toBe(429);
    expect(await status({ authorization: `Bearer ${managed}` })).toBe(202);
    expect(await status({ "x-api-key": managed, authorization: "" })).toBe(202);
    expect(await status({ authorization: `Bearer ${await jwt.valid()}` })).toBe(202);
    // Still limited for the rest, and the valid ones cost nothing.
    expect(await status({})).toBe(429);
    expect(await status({ authorization: `Bearer ${managed}` })).toBe(202);
    expect(await limited(registry, "ip")).toBe(6);
  });

  test("successful requests cost the address nothing", async () => {
    const { post } = await createTestApp({ AUTH_FAILURES_PER_MINUTE: "6", AUTH_FAILURE_BURST: "1" });
    for (let i = 0; i < 5; i++) expect((await post(batch(1))).status).toBe(202);
  });

  test("over a real socket: each client address has its own bucket, from the peer or a trusted proxy's X-Forwarded-For", async () => {
    const server = await spawnServer({
      AUTH_DISABLED: "false",
      API_KEY_SHA256: new Bun.CryptoHasher("sha256").update(API_KEY).digest("hex"),
      AUTH_FAILURES_PER_MINUTE: "1",
      AUTH_FAILURE_BURST: "2",
      TRUSTED_PROXIES: "127.0.0.1",
    });
    const post = (ip: string, key: string) =>
      fetch(`${server.url}/v1/scans`, {
        method: "POST",
        body: batch(1),
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "x-forwarded-for": ip },
      }).then((r) => r.status);
    expect([await post("198.51.100.1", "x"), await post("198.51.100.1", "y"), await post("198.51.100.1", "z")]).toEqual(
      [401, 401, 429],
    );
    expect(await post("198.51.100.2", "x")).toBe(401);
    expect(await metricValue(server.metricsUrl, "rate_limited_total")).toBe(1);
  });
});
