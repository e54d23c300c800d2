// The edge's rate limits (server/rate-limit.ts) in-process, against docs/security.md "Rate limits":
// the per-address failed-auth limit around a stand-in auth (who is refused before auth, who goes on,
// what a 401 costs, the debt bound, IPv6 /64s), the per-key limit (keyGuard before the body, the
// batch charge, Max-Batch-Events, AUTH_DISABLED), every 429's fields, message, counter and audit
// line, and the bucket store's memory bound. A fake clock; Stryker runs this file per mutant.
import { describe, expect, test } from "bun:test";
import { Hono, type MiddlewareHandler } from "hono";
import { Counter, Registry } from "prom-client";
import { ApiError, errorHandler } from "../../server/errors.ts";
import type { Principal } from "../../server/principal.ts";
import { type BucketLimit, TokenBuckets, rateLimits } from "../../server/rate-limit.ts";
import { createLogger } from "../../shared/logger.ts";

const principal = (kind: Principal["kind"], id: string, rateLimit: Principal["rateLimit"] = null): Principal => ({
  kind,
  id,
  name: id,
  scopes: new Set(["scans:write", "stats:read"]),
  qrPrefix: null,
  rateLimit,
});

/** What the stand-in auth accepts: credential -> principal (one record each, as the key store keeps them). */
const PRINCIPALS = new Map<string, Principal>([
  ["qrs_good", principal("api_key", "key-good")],
  ["qrs_small", principal("api_key", "key-small", { eventsPerSecond: 1, burst: 4 })],
  ["aaa.bbb.ccc", principal("jwt", "issuer|subject")],
  ["0123abcd", principal("static_key", "static:0123abcd")],
  // Not shapes auth gives these kinds, but what ipGate must refuse if it ever did.
  ["static.dotted", principal("static_key", "static:dotted")],
  ["anon.ymous", principal("disabled", "anonymous")],
]);

interface Req {
  key?: string;
  authorization?: string;
  peer?: string;
  events?: number;
  method?: "GET" | "POST";
}

/** rateLimits() in the order server/app.ts chains it: ipGuard, auth, ipGate, keyGuard, the route. */
function edge(o: { perKey?: BucketLimit | null; perIp?: BucketLimit | null; replicas?: number }) {
  let t = 1_000_000;
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("test", "warn", { write: (s: string) => lines.push(JSON.parse(s)) });
  const counter = new Counter({ name: "rl", help: "h", labelNames: ["scope"], registers: [new Registry()] });
  const calls = { auth: 0, handler: 0, clientIp: 0 };
  const limits = rateLimits({
    perKey: o.perKey ?? null,
    perIp: o.perIp ?? null,
    ...(o.replicas ? { replicas: o.replicas } : {}),
    maxBuckets: 100,
    rateLimited: counter,
    logger,
    clientIp: (c) => {
      calls.clientIp++;
      return c.req.header("x-peer") ?? null;
    },
    logIp: (ip) => `logged:${ip}`,
    now: () => t,
  });
  // The credential parsing of server/auth.ts; anything it does not know is a 401.
  const auth: MiddlewareHandler = async (c, next) => {
    calls.auth++;
    const header = c.req.header("authorization");
    const bearer = header && /^bearer /i.test(header) ? header.slice(7).trim() : undefined;
    const p = PRINCIPALS.get(bearer || c.req.header("x-api-key") || "");
    if (!p) throw new ApiError(401, "invalid API key");
    c.set("principal", p);
    await next();
  };
  const app = new Hono();
  app.onError(errorHandler({ logger }));
  app.post("/v1/scans", limits.ipGuard, auth, limits.ipGate, limits.keyGuard, (c) => {
    calls.handler++;
    limits.chargeEvents(c, Number(c.req.query("events") ?? 1));
    return c.json({ accepted: 1 }, 202);
  });
  app.get("/v1/qr/x/stats", limits.ipGuard, auth, limits.ipGate, limits.keyGuard, limits.chargeRequest, (c) => {
    calls.handler++;
    return c.json({ buckets: [] });
  });
  const send = async (r: Req) => {
    const headers: Record<string, string> = {};
    if (r.key !== undefined) headers["x-api-key"] = r.key;
    if (r.authorization !== undefined) headers.authorization = r.authorization;
    if (r.peer !== undefined) headers["x-peer"] = r.peer;
    const res =
      r.method === "GET"
        ? await app.request("/v1/qr/x/stats", { headers })
        : await app.request(`/v1/scans?events=${r.events ?? 1}`, { method: "POST", headers });
    const body = (await res.json()) as { error?: string };
    const h = (name: string) => res.headers.get(name);
    return {
      status: res.status,
      error: body.error,
      retryAfter: h("retry-after"),
      policy: h("ratelimit-policy"),
      state: h("ratelimit"),
      maxBatch: h("max-batch-events"),
    };
  };
  const hits = async () =>
    Object.fromEntries((await counter.get()).values.map((v) => [v.labels.scope as string, v.value]));
  const advance = (ms: number) => {
    t += ms;
  };
  const audits = () => lines.filter((l) => l.msg === "rate limit hit; answered 429");
  return { limits, send, calls, hits, audits, advance };
}

const IP = { rate: 0.5, burst: 2 };
const A = "203.0.113.7";
const B = "203.0.113.8";
const ipRefusal = (seconds: number) => ({
  status: 429,
  error: `too many failed authentications from this address; retry after ${seconds} s`,
  retryAfter: String(seconds),
  policy: '"ip";q=2;w=4',
  state: `"ip";r=0;t=${seconds}`,
  maxBatch: null,
});

describe("per address: failed authentications", () => {
  test("each 401 takes a token; then a static key, or none, is refused before auth with the ip fields", async () => {
    const e = edge({ perIp: IP });
    // Nothing has failed yet: no address is even resolved.
    expect((await e.send({ key: "0123abcd", peer: A })).status).toBe(202);
    expect(e.calls.clientIp).toBe(0);
    expect((await e.send({ key: "deadbeef", peer: A })).status).toBe(401);
    expect((await e.send({ key: "deadbeef", peer: A })).status).toBe(401);
    expect(e.limits.sizes()).toEqual({ key: 0, ip: 1 });
    const authCalls = e.calls.auth;
    expect(await e.send({ key: "0123abcd", peer: A })).toEqual(ipRefusal(2));
    expect(await e.send({ peer: A })).toEqual(ipRefusal(2));
    expect(await e.send({ authorization: "Bearer 0123abcd", peer: A })).toEqual(ipRefusal(2));
    expect(e.calls.auth).toBe(authCalls);
    // Another address has its own bucket.
    expect((await e.send({ key: "0123abcd", peer: B })).status).toBe(202);
    expect(await e.hits()).toEqual({ ip: 3 });
    // The audit line: once per scope per 10 s, the address as logIp shows it.
    expect(e.audits()).toEqual([
      expect.objectContaining({ level: "warn", scope: "ip", client_ip: `logged:${A}`, retry_after_s: 2 }),
    ]);
    // One token back (2 s at 0.5/s) is enough for one request, not two.
    e.advance(1_999);
    expect((await e.send({ key: "0123abcd", peer: A })).status).toBe(429);
    e.advance(1);
    expect((await e.send({ key: "0123abcd", peer: A })).status).toBe(202);
    expect((await e.send({ key: "deadbeef", peer: A })).status).toBe(401);
    expect((await e.send({ key: "0123abcd", peer: A })).status).toBe(429);
  });

  test("good requests cost nothing, however many", async () => {
    const e = edge({ perIp: IP });
    expect((await e.send({ key: "deadbeef", peer: A })).status).toBe(401);
    for (let i = 0; i < 5; i++) expect((await e.send({ key: "0123abcd", peer: A })).status).toBe(202);
    expect((await e.send({ key: "deadbeef", peer: A })).status).toBe(401);
    expect((await e.send({ key: "0123abcd", peer: A })).status).toBe(429);
  });

  test("over the limit, a managed key or a JWT goes on to auth: proven, served; failed, the ip 429", async () => {
    const e = edge({ perIp: IP });
    await e.send({ key: "deadbeef", peer: A });
    await e.send({ key: "deadbeef", peer: A });
    for (const r of [
      { key: "qrs_good" },
      { authorization: "Bearer qrs_good" },
      { authorization: "Bearer   qrs_good  " },
      { authorization: "Bearer aaa.bbb.ccc" },
      { authorization: "BEARER aaa.bbb.ccc" },
    ])
      expect({ r, status: (await e.send({ ...r, peer: A })).status }).toEqual({ r, status: 202 });
    const authCalls = e.calls.auth;
    expect((await e.send({ key: "qrs_wrong", peer: A })).status).toBe(429);
    expect((await e.send({ authorization: "Bearer x.y.z", peer: A })).status).toBe(429);
    expect(e.calls.auth).toBe(authCalls + 2);
    // Authenticated, but neither a managed key nor a JWT: ipGate refuses it after auth.
    expect((await e.send({ authorization: "Bearer static.dotted", peer: A })).status).toBe(429);
    expect((await e.send({ authorization: "Bearer anon.ymous", peer: A })).status).toBe(429);
    expect(e.calls.auth).toBe(authCalls + 4);
    // Not shaped like either: refused before auth.
    for (const r of [
      { authorization: "Bearer deadbeef" },
      { key: "deadbeef" },
      { authorization: "Basic qrs.good" },
      { authorization: "xBearer aaa.bbb.ccc" },
      { key: "x_qrs_" },
    ])
      expect({ r, status: (await e.send({ ...r, peer: A })).status }).toEqual({ r, status: 429 });
    expect(e.calls.auth).toBe(authCalls + 4);
  });

  test("under the limit, ipGate lets every authenticated kind through", async () => {
    const e = edge({ perIp: IP });
    await e.send({ key: "deadbeef", peer: A });
    expect((await e.send({ authorization: "Bearer static.dotted", peer: A })).status).toBe(202);
    expect((await e.send({ key: "0123abcd", peer: A })).status).toBe(202);
  });

  test("each 401 is charged even over the limit, into a debt of at most one burst: the wait is then (burst + 1) / rate", async () => {
    const e = edge({ perIp: IP });
    await e.send({ key: "deadbeef", peer: A });
    await e.send({ key: "deadbeef", peer: A });
    for (let i = 0; i < 10; i++) expect((await e.send({ key: "qrs_wrong", peer: A })).status).toBe(429);
    expect(await e.send({ key: "0123abcd", peer: A })).toEqual(ipRefusal(6));
    e.advance(5_000);
    expect(await e.send({ key: "0123abcd", peer: A })).toEqual(ipRefusal(1));
    e.advance(1_000);
    expect((await e.send({ key: "0123abcd", peer: A })).status).toBe(202);
  });

  test("an IPv6 address counts by its /64; addresses not known count as one, logged as unknown", async () => {
    const e = edge({ perIp: IP });
    await e.send({ key: "deadbeef", peer: "2001:db8:1:2::1" });
    await e.send({ key: "deadbeef", peer: "2001:db8:1:2:ffff::9" });
    expect((await e.send({ key: "0123abcd", peer: "2001:db8:1:2:aaaa::1" })).status).toBe(429);
    expect((await e.send({ key: "0123abcd", peer: "2001:db8:1:3::1" })).status).toBe(202);

    const u = edge({ perIp: IP });
    await u.send({ key: "deadbeef" });
    await u.send({ key: "deadbeef" });
    expect((await u.send({ key: "0123abcd", peer: A })).status).toBe(202);
    expect((await u.send({ key: "0123abcd" })).status).toBe(429);
    expect(u.audits()).toEqual([expect.objectContaining({ scope: "ip", client_ip: "logged:unknown" })]);
  });

  test("without a per-address limit, failures stay 401 and hold no bucket", async () => {
    const e = edge({ perIp: null });
    for (let i = 0; i < 5; i++) expect((await e.send({ key: "deadbeef", peer: A })).status).toBe(401);
    expect((await e.send({ key: "0123abcd", peer: A })).status).toBe(202);
    expect(e.limits.sizes()).toEqual({ key: 0, ip: 0 });
    expect(e.calls.clientIp).toBe(0);
  });
});

describe("per key: events", () => {
  const KEY = { rate: 1, burst: 20 };

  test("accepted requests carry RateLimit-Policy and RateLimit", async () => {
    const e = edge({ perKey: KEY });
    const ok = await e.send({ key: "qrs_good", events: 17 });
    expect(ok).toEqual({
      status: 202,
      error: undefined,
      retryAfter: null,
      policy: '"key";q=20;w=20',
      state: '"key";r=3;t=17',
      maxBatch: null,
    });
    expect(e.limits.sizes()).toEqual({ key: 1, ip: 0 });
  });

  test("a batch above the tokens left (within the burst) is refused with the wait for what it lacks, and costs nothing", async () => {
    const e = edge({ perKey: KEY });
    await e.send({ key: "qrs_good", events: 17 });
    const handled = e.calls.handler;
    expect(await e.send({ key: "qrs_good", events: 5 })).toEqual({
      status: 429,
      error: "this API key's event rate limit; retry after 2 s",
      retryAfter: "2",
      policy: '"key";q=20;w=20',
      state: '"key";r=0;t=2',
      maxBatch: null,
    });
    expect(e.calls.handler).toBe(handled + 1);
    expect(e.audits()).toEqual([
      expect.objectContaining({ scope: "key", principal: "key-good", events: 5, retry_after_s: 2 }),
    ]);
    expect(await e.hits()).toEqual({ key: 1 });
    expect((await e.send({ key: "qrs_good", events: 3 })).state).toBe('"key";r=0;t=20');
  });

  test("an empty bucket is refused before the body is read, with a single event's Retry-After", async () => {
    const e = edge({ perKey: KEY });
    await e.send({ key: "qrs_good", events: 20 });
    const handled = e.calls.handler;
    expect(await e.send({ key: "qrs_good", events: 5 })).toEqual({
      status: 429,
      error: "this API key's event rate limit; retry after 1 s",
      retryAfter: "1",
      policy: '"key";q=20;w=20',
      state: '"key";r=0;t=1',
      maxBatch: null,
    });
    expect(e.calls.handler).toBe(handled);
    expect(e.audits()).toEqual([expect.objectContaining({ scope: "key", principal: "key-good", retry_after_s: 1 })]);
    expect(await e.hits()).toEqual({ key: 1 });
    // A key's own limit: its own policy in the refusal.
    for (let i = 0; i < 4; i++) expect((await e.send({ key: "qrs_small" })).policy).toBe('"key";q=4;w=4');
    const own = await e.send({ key: "qrs_small" });
    expect([own.status, own.policy, own.retryAfter]).toEqual([429, '"key";q=4;w=4', "1"]);
    expect(e.calls.handler).toBe(handled + 4);
  });

  test("a batch above the burst: 429 naming the largest batch in the message and Max-Batch-Events, no Retry-After", async () => {
    const e = edge({ perKey: KEY });
    expect(await e.send({ key: "qrs_good", events: 21 })).toEqual({
      status: 429,
      error:
        "a batch of 21 events is more than this API key may send at once (20); it will never be accepted as it is: split it into batches of at most 20 events (Max-Batch-Events)",
      retryAfter: null,
      policy: '"key";q=20;w=20',
      state: null,
      maxBatch: "20",
    });
    expect(e.audits()).toEqual([
      expect.objectContaining({ scope: "key", principal: "key-good", events: 21, max_batch_events: 20 }),
    ]);
    expect(await e.hits()).toEqual({ key: 1 });
    expect((await e.send({ key: "qrs_good", events: 20 })).status).toBe(202);
    // The next hit of the scope within 10 s is counted but not logged again.
    expect((await e.send({ key: "qrs_good", events: 1 })).status).toBe(429);
    expect(await e.hits()).toEqual({ key: 2 });
    expect(e.audits()).toHaveLength(1);
  });

  test("the stats route is charged one request per call", async () => {
    const e = edge({ perKey: { rate: 10, burst: 2 } });
    expect((await e.send({ key: "qrs_good", method: "GET" })).state).toBe('"key";r=1;t=1');
    expect((await e.send({ key: "qrs_good", method: "GET" })).state).toBe('"key";r=0;t=1');
    const third = await e.send({ key: "qrs_good", method: "GET" });
    expect([third.status, third.retryAfter]).toEqual([429, "1"]);
  });

  test("AUTH_DISABLED's anonymous principal is never limited (a per-key limit would be a global one)", async () => {
    const e = edge({ perKey: { rate: 1, burst: 2 } });
    for (let i = 0; i < 3; i++) {
      const r = await e.send({ authorization: "Bearer anon.ymous", events: 1_000 });
      expect([r.status, r.policy, r.state]).toEqual([202, null, null]);
    }
    expect(e.limits.sizes()).toEqual({ key: 0, ip: 0 });
  });

  test("both scopes count in rate_limited_total by scope", async () => {
    const e = edge({ perKey: { rate: 1, burst: 1 }, perIp: IP });
    await e.send({ key: "qrs_good", peer: A });
    await e.send({ key: "qrs_good", peer: A });
    await e.send({ key: "deadbeef", peer: B });
    await e.send({ key: "deadbeef", peer: B });
    await e.send({ key: "deadbeef", peer: B });
    expect(await e.hits()).toEqual({ key: 1, ip: 1 });
  });
});

describe("the bucket store's memory bound", () => {
  const LIMIT = { rate: 2, burst: 20 }; // full 10 s after being emptied

  test("up to maxBuckets are kept, full ones too", () => {
    let t = 0;
    const b = new TokenBuckets(8, () => t);
    b.take("a", 20, LIMIT);
    t = 20_000;
    for (const id of ["b", "c", "d"]) b.take(id, 20, LIMIT);
    expect(b.size).toBe(4);
  });

  test("past the cap, buckets idle long enough to be full go first, and only they", () => {
    let t = 0;
    const b = new TokenBuckets(8, () => t);
    b.take("a", 20, LIMIT);
    t = 5_000;
    for (const id of ["b", "c", "d", "e", "f", "g", "h"]) b.take(id, 20, LIMIT);
    t = 10_000;
    b.take("i", 1, LIMIT);
    expect(b.size).toBe(8);
    // b..h kept their (half refilled) tokens.
    for (const id of ["b", "c", "d", "e", "f", "g", "h"])
      expect({ id, tokens: b.peek(id, LIMIT) }).toEqual({ id, tokens: 10 });
  });

  test("past the cap with none full, the least recently used quarter goes", () => {
    let t = 0;
    const b = new TokenBuckets(8, () => t);
    for (const id of ["a", "b", "c", "d", "e", "f", "g", "h"]) b.take(id, 20, LIMIT);
    b.take("a", 0, LIMIT); // a is now the most recently used
    t = 1_000;
    b.take("i", 1, LIMIT);
    expect(b.size).toBe(7);
    // b and c (the oldest) went: a new bucket is full.
    expect(["a", "b", "c", "d"].map((id) => b.peek(id, LIMIT))).toEqual([2, 20, 20, 2]);
  });
});
