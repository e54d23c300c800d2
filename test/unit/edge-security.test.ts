// The edge's security logic that needs no stack: tenant prefixes and their matching, token buckets on a fake clock, the RateLimit
// fields, client-address truncation, the CORS and metrics-auth configuration, the metrics check.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hono } from "hono";
import { Counter, Registry } from "prom-client";
import { addressKey, storedClientIp } from "../../server/client-ip.ts";
import { loadServerConfig } from "../../server/config.ts";
import { errorHandler } from "../../server/errors.ts";
import type { Principal } from "../../server/principal.ts";
import { TokenBuckets, policyField, rateLimitField, rateLimits } from "../../server/rate-limit.ts";
import { inTenant, isTenantPrefix } from "../../shared/api-keys.ts";
import { createLogger } from "../../shared/logger.ts";
import { metricsAuthCheck } from "../../shared/metrics.ts";
import { loadWorkerConfig } from "../../worker/config.ts";

const KEY = { API_KEY_SHA256: "a".repeat(64) };

describe("tenants", () => {
  test("a tenant prefix is segments each ending in ':'; nothing else has the shape", () => {
    for (const ok of ["acme:", "acme:eu:", "gate-7:", "a.b_c-d:", `${"a".repeat(126)}:`])
      expect(isTenantPrefix(ok)).toBe(true);
    for (const bad of [
      "",
      "acme",
      "acme-",
      "acme:eu",
      ":",
      "acme::",
      "ac me:",
      "acme/*:",
      `${"a".repeat(127)}:`,
      42,
      null,
      ["acme:"],
    ]) {
      expect({ bad, ok: isTenantPrefix(bad) }).toEqual({ bad, ok: false });
    }
  });

  test("matching is by whole segments, and a prefix without the delimiter (a row from before migration 0007) matches nothing", () => {
    const cases: [string, string, boolean][] = [
      ["acme:1", "acme:", true],
      ["acme:eu:7", "acme:", true],
      ["acme:eu:7", "acme:eu:", true],
      ["acme2:1", "acme:", false],
      ["acme2-secret", "acme:", false],
      ["acme-1", "acme:", false],
      ["acme:us:1", "acme:eu:", false],
      // Fail closed: the acme / acme2-secret and acme- / acme-eu-… cases.
      ["acme2-secret", "acme", false],
      ["acme-eu-1", "acme-", false],
      ["acme", "acme", false],
    ];
    expect(cases.map(([qr, prefix]) => [qr, prefix, inTenant(qr, prefix)])).toEqual(cases);
  });
});

describe("token buckets", () => {
  const clock = () => {
    let t = 0;
    return {
      now: () => t,
      advance: (ms: number) => {
        t += ms;
      },
    };
  };

  test("a burst is served at once, then the rate; refused takes say when to come back", () => {
    const c = clock();
    const b = new TokenBuckets(100, c.now);
    const limit = { rate: 10, burst: 20 };
    expect(b.take("k", 15, limit)).toEqual({ ok: true, remaining: 5, seconds: 2 });
    expect(b.take("k", 5, limit).ok).toBe(true);
    // Empty: 1 token comes back in 0.1 s, so Retry-After rounds up to 1 s; 10 tokens take 1 s.
    expect(b.take("k", 1, limit)).toEqual({ ok: false, remaining: 0, seconds: 1 });
    expect(b.take("k", 20, limit)).toEqual({ ok: false, remaining: 0, seconds: 2 });
    c.advance(1_000);
    expect(b.take("k", 10, limit)).toEqual({ ok: true, remaining: 0, seconds: 2 });
    expect(b.take("k", 1, limit).ok).toBe(false);
    // Other ids have buckets of their own.
    expect(b.take("other", 20, limit).ok).toBe(true);
  });

  test("a batch is charged its whole cost: a cost above the burst is never served, one within it waits for its tokens", () => {
    const c = clock();
    const b = new TokenBuckets(100, c.now);
    const limit = { rate: 10, burst: 10 };
    // A full bucket of 10 does not serve 1,000 (it used to, charged as 10): no wait ever will.
    expect(b.take("k", 1_000, limit)).toEqual({ ok: false, remaining: 0, seconds: Number.POSITIVE_INFINITY });
    c.advance(3_600_000);
    expect(b.take("k", 1_000, limit).ok).toBe(false);
    // Nothing was taken by the refusals: the full burst is still there, and costs what it weighs.
    expect(b.take("k", 10, limit)).toEqual({ ok: true, remaining: 0, seconds: 1 });
    expect(b.take("k", 6, limit)).toEqual({ ok: false, remaining: 0, seconds: 1 });
    c.advance(300);
    expect(b.take("k", 6, limit)).toEqual({ ok: false, remaining: 0, seconds: 1 });
    c.advance(300);
    expect(b.take("k", 6, limit)).toEqual({ ok: true, remaining: 0, seconds: 1 });
    expect(b.peek("k", limit)).toBeCloseTo(0, 9);
  });

  test("charge goes into debt (bounded), which later takes wait out", () => {
    const c = clock();
    const b = new TokenBuckets(100, c.now);
    const limit = { rate: 1, burst: 3 };
    for (let i = 0; i < 10; i++) b.charge("ip", 1, limit);
    expect(b.peek("ip", limit)).toBe(-7);
    expect(b.take("ip", 1, limit)).toEqual({ ok: false, remaining: 0, seconds: 8 });
    c.advance(8_000);
    expect(b.take("ip", 1, limit).ok).toBe(true);
    b.charge("ip", 1_000_000, limit, 60);
    expect(b.peek("ip", limit)).toBe(-60);
  });

  test("peek refills without taking; an unknown id has a full bucket", () => {
    const c = clock();
    const b = new TokenBuckets(100, c.now);
    const limit = { rate: 2, burst: 4 };
    expect(b.peek("new", limit)).toBe(4);
    b.take("k", 4, limit);
    expect(b.peek("k", limit)).toBe(0);
    c.advance(500);
    expect(b.peek("k", limit)).toBe(1);
    expect(b.peek("k", limit)).toBe(1);
  });

  test("memory is bounded: idle (full) buckets go first, then the least recently used", () => {
    const c = clock();
    const b = new TokenBuckets(100, c.now);
    const limit = { rate: 1, burst: 10 };
    for (let i = 0; i < 1_000; i++) b.take(`id-${i}`, 1, limit);
    expect(b.size).toBeLessThanOrEqual(100);
    // An id in use keeps its (partly spent) bucket while the others churn, if it stays recent.
    for (let round = 0; round < 10; round++) {
      b.take("busy", 1, limit);
      for (let i = 0; i < 30; i++) b.take(`churn-${round}-${i}`, 1, limit);
    }
    expect(b.peek("busy", limit)).toBe(0);
    expect(b.size).toBeLessThanOrEqual(100);
    // Once idle long enough to be full, buckets are dropped wholesale at the next insert past the cap.
    c.advance(10_000);
    for (let i = 0; i < 101; i++) b.take(`fresh-${i}`, 1, limit);
    expect(b.size).toBeLessThanOrEqual(100);
    expect(b.peek("busy", limit)).toBe(10);
  });
});

const principal = (id: string, rateLimit: Principal["rateLimit"]): Principal => ({
  kind: "api_key",
  id,
  name: id,
  scopes: new Set(["scans:write"]),
  qrPrefix: null,
  rateLimit,
});

/** rateLimits() behind a route that charges `?events=` (default 1) to the principal of x-who. */
function limitedApp(replicas: number, now?: () => number) {
  const logger = createLogger("test", "silent");
  const limits = rateLimits({
    perKey: { rate: 1_000, burst: 1_000 },
    perIp: null,
    replicas,
    maxBuckets: 100,
    rateLimited: new Counter({ name: "rl", help: "h", labelNames: ["scope"], registers: [new Registry()] }),
    logger,
    clientIp: () => null,
    logIp: (ip) => ip,
    ...(now ? { now } : {}),
  });
  // One record per key, as the key store keeps them (its rateLimit object is reused per request).
  const small = principal("small", { eventsPerSecond: 1, burst: 4 });
  const app = new Hono();
  app.onError(errorHandler({ logger }));
  app.use(async (c, next) => {
    const id = c.req.header("x-who") ?? "default";
    c.set("principal", id === "small" ? small : principal(id, null));
    await next();
  });
  app.get("/", limits.keyGuard, (c) => {
    limits.chargeEvents(c, Number(c.req.query("events") ?? 1));
    return c.text("ok");
  });
  const get = (who: string, events = 1) => app.request(`/?events=${events}`, { headers: { "x-who": who } });
  return { limits, get };
}

test("a principal's own rate limit overrides the default (and is split across replicas too)", async () => {
  const { get } = limitedApp(2);
  // "small": 4 per burst over 2 replicas = 2 here.
  const first = await get("small");
  expect(first.headers.get("ratelimit-policy")).toBe('"key";q=2;w=4');
  expect((await get("small")).status).toBe(200);
  const third = await get("small");
  expect(third.status).toBe(429);
  expect(third.headers.get("ratelimit-policy")).toBe('"key";q=2;w=4');
  // Everyone else: the default, halved (500).
  expect((await get("default")).headers.get("ratelimit-policy")).toBe('"key";q=500;w=1');
});

test("a batch above this replica's share of the burst: 429 naming the largest batch, and no Retry-After", async () => {
  const { get } = limitedApp(2);
  const res = await get("default", 501);
  expect(res.status).toBe(429);
  expect(res.headers.get("max-batch-events")).toBe("500");
  expect(res.headers.get("retry-after")).toBeNull();
  expect(res.headers.get("ratelimit-policy")).toBe('"key";q=500;w=1');
  expect(((await res.json()) as { error: string }).error).toContain("split it into batches of at most 500 events");
  // It cost nothing: the whole share is still there for batches that fit.
  expect((await get("default", 500)).status).toBe(200);
  const within = await get("default", 2);
  expect(within.status).toBe(429);
  expect(within.headers.get("retry-after")).toBe("1");
  expect(within.headers.get("max-batch-events")).toBeNull();
});

test("setReplicas re-shares every limit when the live replica count changes", async () => {
  let t = 0;
  const { limits, get } = limitedApp(1, () => t);
  expect((await get("default", 1_000)).status).toBe(200);
  expect((await get("small", 4)).status).toBe(200);
  limits.setReplicas(4);
  t += 10_000;
  // Quarters now: the default 250 (a 251-event batch never fits), "small" 1 per 4 s.
  expect((await get("default", 251)).headers.get("max-batch-events")).toBe("250");
  const d = await get("default", 250);
  expect([d.status, d.headers.get("ratelimit-policy")]).toEqual([200, '"key";q=250;w=1']);
  expect((await get("small", 2)).headers.get("max-batch-events")).toBe("1");
  expect((await get("small")).headers.get("ratelimit-policy")).toBe('"key";q=1;w=4');
  // Back to one replica: the whole limit again, refilled at the whole rate.
  limits.setReplicas(1);
  t += 1_000;
  const whole = await get("default", 1_000);
  expect([whole.status, whole.headers.get("ratelimit-policy")]).toEqual([200, '"key";q=1000;w=1']);
  t += 4_000;
  expect((await get("small", 4)).status).toBe(200);
});

describe("RateLimit fields (draft-ietf-httpapi-ratelimit-headers-10)", () => {
  test("policy: quota and the window that refills it; state: remaining and reset", () => {
    expect(policyField("key", { rate: 100, burst: 200 })).toBe('"key";q=200;w=2');
    expect(policyField("ip", { rate: 1 / 60, burst: 20 })).toBe('"ip";q=20;w=1200');
    expect(rateLimitField("key", { ok: true, remaining: 50, seconds: 1 })).toBe('"key";r=50;t=1');
  });
});

describe("client address storage (CLIENT_IP_STORAGE)", () => {
  test("truncated: /24 for IPv4, /48 for IPv6, IPv4-mapped as IPv4", () => {
    const t = (ip: string) => storedClientIp(ip, "truncated");
    expect(t("203.0.113.77")).toBe("203.0.113.0");
    expect(t("10.1.2.3")).toBe("10.1.2.0");
    expect(t("2001:db8:abcd:12:34:56:78:9")).toBe("2001:db8:abcd::");
    expect(t("2001:db8::1")).toBe("2001:db8:0::");
    expect(t("2001:0db8:00ab:ffff::")).toBe("2001:db8:ab::");
    expect(t("::1")).toBe("0:0:0::");
    expect(t("::ffff:203.0.113.77")).toBe("::ffff:203.0.113.0");
    expect(t("fe80::1%eth0")).toBeNull();
  });

  test("the per-address limit counts an IPv6 client by its /64, IPv4 by its address", () => {
    expect(addressKey("203.0.113.77")).toBe("203.0.113.77");
    expect(addressKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:db8:1:2:bbbb::9")).toBe("2001:db8:1:2::/64");
    expect(addressKey("::ffff:203.0.113.77")).toBe("::ffff:203.0.113.77");
  });

  test("full keeps it, none drops it, an unknown address stays unknown", () => {
    expect(storedClientIp("203.0.113.77", "full")).toBe("203.0.113.77");
    expect(storedClientIp("203.0.113.77", "none")).toBeNull();
    expect(storedClientIp(null, "truncated")).toBeNull();
    expect(loadServerConfig(KEY).CLIENT_IP_STORAGE).toBe("full");
    expect(() => loadServerConfig({ ...KEY, CLIENT_IP_STORAGE: "hashed" })).toThrow(
      'CLIENT_IP_STORAGE="hashed": must be full, truncated or none',
    );
  });
});

describe("CORS configuration", () => {
  test("none by default; origins are scheme://host[:port]; * stands alone and never with credentials", () => {
    expect(loadServerConfig(KEY).CORS_ORIGINS).toEqual([]);
    expect(loadServerConfig({ ...KEY, CORS_ORIGINS: "https://a.example, http://127.0.0.1:3000" }).CORS_ORIGINS).toEqual(
      ["https://a.example", "http://127.0.0.1:3000"],
    );
    expect(() => loadServerConfig({ ...KEY, CORS_ORIGINS: "https://a.example/app" })).toThrow(
      "must be comma-separated origins",
    );
    expect(() => loadServerConfig({ ...KEY, CORS_ORIGINS: "*,https://a.example" })).toThrow("* stands alone");
    expect(loadServerConfig({ ...KEY, CORS_ORIGINS: "*" }).CORS_ALLOW_CREDENTIALS).toBe(false);
    expect(() => loadServerConfig({ ...KEY, CORS_ORIGINS: "*", CORS_ALLOW_CREDENTIALS: "true" })).toThrow(
      "CORS_ALLOW_CREDENTIALS=true: not allowed with CORS_ORIGINS=*",
    );
    expect(
      loadServerConfig({ ...KEY, CORS_ORIGINS: "https://a.example", CORS_ALLOW_CREDENTIALS: "true" })
        .CORS_ALLOW_CREDENTIALS,
    ).toBe(true);
  });
});

describe("metrics listener credentials", () => {
  const dir = mkdtempSync(join(tmpdir(), "metrics-auth-"));
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  test("read once from the files the server and the worker are given; a bad file stops start-up", () => {
    const token = file("token", "tok-123\n");
    const basic = file("basic", "prom:pa ss:word\n");
    expect(loadServerConfig({ ...KEY, METRICS_BEARER_TOKEN_FILE: token }).metricsAuth).toEqual({
      bearerToken: "tok-123",
    });
    expect(loadWorkerConfig({ METRICS_BASIC_AUTH_FILE: basic }).metricsAuth).toEqual({ basic: "prom:pa ss:word" });
    expect(loadWorkerConfig({}).metricsAuth).toEqual({});
    expect(() => loadServerConfig({ ...KEY, METRICS_BEARER_TOKEN_FILE: join(dir, "missing") })).toThrow(
      "METRICS_BEARER_TOKEN_FILE=",
    );
    expect(() => loadWorkerConfig({ METRICS_BEARER_TOKEN_FILE: file("empty", "\n") })).toThrow("the file is empty");
    expect(() => loadWorkerConfig({ METRICS_BASIC_AUTH_FILE: file("nocolon", "prom\n") })).toThrow("user:password");
  });

  test("the check: open without credentials; otherwise the token or user:password, nothing else", () => {
    expect(metricsAuthCheck({})).toBeNull();
    const check = metricsAuthCheck({ bearerToken: "tok-123", basic: "prom:pw" });
    if (!check) throw new Error("expected a check");
    expect(check("Bearer tok-123")).toBe(true);
    expect(check("bearer tok-123")).toBe(true);
    expect(check(`Basic ${btoa("prom:pw")}`)).toBe(true);
    expect(check("Bearer tok-1234")).toBe(false);
    expect(check(`Basic ${btoa("prom:pw2")}`)).toBe(false);
    expect(check("tok-123")).toBe(false);
    expect(check(null)).toBe(false);
  });
});
