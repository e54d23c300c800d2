// What the auth middleware (server/auth.ts) logs and how it reads credentials, beyond
// test/unit/auth.test.ts: each failure's audit line (reason, the key's shown prefix or length, its
// id, the JWT's kid and sub cut to 64 characters, the request id, the JWKS fetch's error), a
// credential's exact shapes (Bearer anchored and trimmed, a JWT only when JWTs are configured and the
// whole token has the shape), the expiry and lifetime edges on a frozen clock, a non-string scope
// claim, and a remote JWKS served in-process (keys found locally first, the refetch cooldown, an
// endpoint that answers 500 or something that is not a key set).
import { afterAll, describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { Counter, Registry } from "prom-client";
import { type AuthOptions, createAuth } from "../../server/auth.ts";
import type { JwtConfig } from "../../server/config.ts";
import { errorHandler } from "../../server/errors.ts";
import type { KeyRecord, KeyStore } from "../../server/keys.ts";
import type { Principal } from "../../server/principal.ts";
import { newSecret, sha256 } from "../../shared/api-keys.ts";
import { createLogger } from "../../shared/logger.ts";

const digest = (key: string) => sha256(key).toString("hex");
const managed = (id: string, over: Partial<KeyRecord> = {}, p: Partial<Principal> = {}): KeyRecord => ({
  principal: { kind: "api_key", id, name: id, scopes: new Set(["scans:write"]), qrPrefix: null, rateLimit: null, ...p },
  expiresAt: null,
  revoked: false,
  usedAt: 0,
  ...over,
});
const storeOf = (records: Record<string, KeyRecord>): KeyStore =>
  ({
    lookup: (d: string) => new Map(Object.entries(records).map(([k, r]) => [digest(k), r])).get(d),
    loaded: true,
  }) as unknown as KeyStore;

type Config = AuthOptions["config"];

function setup(config: Partial<Config> = {}, keyStore: KeyStore | null = null) {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("test", "warn", { write: (s: string) => lines.push(JSON.parse(s)) });
  const failures = new Counter({ name: "af", help: "h", labelNames: ["reason"], registers: [new Registry()] });
  const auth = createAuth({
    config: { AUTH_DISABLED: false, apiKeyHashes: [], jwt: null, RETRY_AFTER_SECONDS: 7, ...config },
    keyStore,
    metrics: { authFailures: failures },
    logger,
  });
  const app = new Hono();
  app.onError(errorHandler({ logger: createLogger("test", "silent") }));
  app.use(async (c, next) => {
    c.set("requestId", "req-1");
    await next();
  });
  app.get("/write", auth.require("scans:write"), (c) =>
    c.json({ ...c.get("principal"), scopes: [...c.get("principal").scopes] }),
  );
  app.get("/stats/:qr", auth.require("stats:read", { qrIdParam: "qr" }), (c) => c.json({ id: c.get("principal").id }));
  const call = async (path: string, headers: Record<string, string> = {}) => {
    const res = await app.request(path, { headers });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const audits = () => lines.filter((l) => l.reason !== undefined);
  return { auth, call, audits };
}
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

/** Runs `fn` with Date.now fixed at `ms`. */
async function frozenAt<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const real = Date.now;
  Date.now = () => ms;
  try {
    return await fn();
  } finally {
    Date.now = real;
  }
}

describe("API keys: reading the credential, and the audit line", () => {
  test("Bearer is anchored and its key trimmed; anything else in Authorization is no credential", async () => {
    const key = newSecret();
    const { call } = setup({ apiKeyHashes: [digest(key)] });
    expect((await call("/write", { authorization: `Bearer   ${key}   ` })).status).toBe(200);
    const notBearer = await call("/write", { authorization: `xBearer ${key}` });
    expect([notBearer.status, notBearer.body.error]).toEqual([
      401,
      "missing credentials: send Authorization: Bearer <API key or JWT>, or X-API-Key: <API key>",
    ]);
  });

  test("without a key store, an unknown key is a 401; a dotted bearer is a key when no JWT is configured", async () => {
    const { call, audits } = setup({ apiKeyHashes: [digest(newSecret())] });
    for (const credential of ["qrs_unknown-0000000000000", "aaa.bbb.ccc"]) {
      const r = await call("/write", bearer(credential));
      expect([r.status, r.body.error]).toEqual([401, "invalid API key"]);
    }
    expect(audits()).toEqual([
      expect.objectContaining({
        level: "warn",
        msg: "authentication failed; answered 401",
        reason: "unknown_key",
        key_prefix: "qrs_unkn",
        request_id: "req-1",
      }),
    ]);
  });

  test("refusals of a known key log its id; a weak static key's line never shows the key", async () => {
    const weak = "qrs_short-and-guessable";
    const { call, audits } = setup(
      { apiKeyHashes: [digest(weak)] },
      storeOf({ "qrs_revoked-key-0000000": managed("k-revoked", { revoked: true }) }),
    );
    await call("/write", bearer(weak));
    await call("/write", bearer("qrs_revoked-key-0000000"));
    expect(
      audits().map(({ reason, key_id, key_prefix, key_length }) => ({ reason, key_id, key_prefix, key_length })),
    ).toEqual([
      {
        reason: "weak_key",
        key_id: `static:${digest(weak).slice(0, 8)}`,
        key_prefix: "qrs_shor",
        key_length: undefined,
      },
      { reason: "revoked_key", key_id: "k-revoked", key_prefix: "qrs_revo", key_length: undefined },
    ]);
    expect(JSON.stringify(audits())).not.toContain(weak);
  });

  test("a key expiring at this very millisecond is expired; one a millisecond later is not", async () => {
    const t = 1_800_000_000_000;
    const store = storeOf({
      "qrs_edge-key-000000000": managed("k-edge", { expiresAt: t }),
      "qrs_next-key-000000000": managed("k-next", { expiresAt: t + 1 }),
    });
    const { call } = setup({}, store);
    await frozenAt(t, async () => {
      expect((await call("/write", bearer("qrs_edge-key-000000000"))).status).toBe(401);
      expect((await call("/write", bearer("qrs_next-key-000000000"))).status).toBe(200);
    });
  });

  test("a key store that fails is the server's error (500), not a 401", async () => {
    const store = {
      lookup: () => {
        throw new Error("key store broken");
      },
      loaded: true,
    } as unknown as KeyStore;
    const { call, audits } = setup({}, store);
    const r = await call("/write", bearer("qrs_any-key-00000000000"));
    expect([r.status, r.body.error]).toEqual([500, "internal error"]);
    expect(audits()).toEqual([]);
  });

  test("403s are logged with the principal, its kind, and the scope or the QR id (cut to 64 characters)", async () => {
    const store = storeOf({
      "qrs_writer-00000000000": managed("k-writer"),
      "qrs_tenant-00000000000": managed("k-tenant", {}, { scopes: new Set(["stats:read"]), qrPrefix: "acme:" }),
    });
    const { call, audits } = setup({}, store);
    expect((await call("/stats/acme:1", bearer("qrs_writer-00000000000"))).status).toBe(403);
    const longQr = `globex:${"x".repeat(100)}`;
    expect((await call(`/stats/${longQr}`, bearer("qrs_tenant-00000000000"))).status).toBe(403);
    expect(audits()).toEqual([
      expect.objectContaining({
        msg: "request forbidden; answered 403",
        reason: "scope",
        principal: "k-writer",
        kind: "api_key",
        scope: "stats:read",
      }),
      expect.objectContaining({
        msg: "request forbidden; answered 403",
        reason: "tenant",
        principal: "k-tenant",
        kind: "api_key",
        qr_id: longQr.slice(0, 64),
      }),
    ]);
  });

  test("AUTH_DISABLED's principal is named so", async () => {
    const { call } = setup({ AUTH_DISABLED: true });
    expect((await call("/write")).body).toMatchObject({ kind: "disabled", id: "disabled", name: "AUTH_DISABLED" });
  });
});

describe("JWTs", async () => {
  const rsa = await generateKeyPair("RS256", { extractable: true });
  const rotated = await generateKeyPair("RS256", { extractable: true });
  const later = await generateKeyPair("RS256", { extractable: true });
  const jwkOf = async (k: CryptoKey, kid: string) => ({ ...(await exportJWK(k)), kid, alg: "RS256" });
  const K1 = await jwkOf(rsa.publicKey, "k1");
  const K2 = await jwkOf(rotated.publicKey, "k2");
  const K3 = await jwkOf(later.publicKey, "k3");
  const jwt: JwtConfig = {
    jwksUrl: null,
    keys: [K1],
    issuer: "https://idp.test",
    audience: "qrscan",
    algorithms: ["RS256"],
    clockSkewSeconds: 30,
    tenantClaim: "qr_prefix",
    allowGlobalTokens: false,
    maxLifetimeSeconds: 3600,
    jwksCooldownSeconds: 30,
  };
  const now = () => Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown> = {}, kid = "k1", key: CryptoKey = rsa.privateKey) =>
    new SignJWT({
      iss: "https://idp.test",
      aud: "qrscan",
      sub: "gate-7",
      exp: now() + 600,
      scope: "scans:write",
      qr_prefix: "acme:",
      ...claims,
    })
      .setProtectedHeader({ alg: "RS256", kid })
      .sign(key);

  // A JWKS endpoint in this process: what it serves, and how often it was asked.
  let served: { keys: unknown[] } | string | number = { keys: [K2] };
  let fetches = 0;
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch() {
      fetches++;
      if (typeof served === "number") return new Response("down", { status: served });
      if (typeof served === "string") return new Response(served, { headers: { "content-type": "application/json" } });
      return Response.json(served);
    },
  });
  afterAll(() => server.stop(true));
  const remote = (keys: unknown[]): JwtConfig => ({
    ...jwt,
    keys: keys as JwtConfig["keys"],
    jwksUrl: `http://127.0.0.1:${server.port}/jwks`,
  });

  test("only a whole token of the JWT shape is taken for a JWT; anything else is an API key", async () => {
    const { call, audits } = setup({ jwt });
    for (const token of ["$aaa.bbb.ccc", "aaa.bbb.ccc$"]) {
      const r = await call("/write", bearer(token));
      expect({ token, r: [r.status, r.body.error] }).toEqual({ token, r: [401, "invalid API key"] });
    }
    expect(audits().map((l) => l.reason)).toEqual(["unknown_key"]);
  });

  test("a failing token's audit line has its kid and sub, cut to 64 characters, never the token", async () => {
    const { call, audits } = setup({ jwt });
    const kid = "k".repeat(100);
    const sub = "s".repeat(100);
    const token = await sign({ sub }, kid);
    expect((await call("/write", bearer(token))).body.error).toBe("JWT signed with an unknown key");
    const bad = await sign({ sub: "gate-9" }, "k1", rotated.privateKey);
    expect((await call("/write", bearer(bad))).body.error).toBe("JWT signature invalid");
    expect((await call("/write", bearer("aaa.bbb.ccc"))).body.error).toBe("JWT malformed");
    expect(audits().map(({ reason, jwt_kid, jwt_sub }) => ({ reason, jwt_kid, jwt_sub }))).toEqual([
      { reason: "jwt_unknown_kid", jwt_kid: "k".repeat(64), jwt_sub: "s".repeat(64) },
      { reason: "jwt_signature", jwt_kid: "k1", jwt_sub: "gate-9" },
      { reason: "jwt_malformed", jwt_kid: undefined, jwt_sub: undefined },
    ]);
    expect(JSON.stringify(audits())).not.toContain(token);
  });

  test("a token without a kid or a sub logs neither", async () => {
    const { call, audits } = setup({ jwt });
    const noKid = await new SignJWT({ iss: jwt.issuer, aud: jwt.audience, sub: "gate-8", exp: now() + 60 })
      .setProtectedHeader({ alg: "RS256" })
      .sign(rotated.privateKey);
    expect((await call("/write", bearer(noKid))).status).toBe(401);
    expect((await call("/write", bearer(await sign({ sub: undefined })))).status).toBe(401);
    expect(audits().map((l) => [l.reason, "jwt_kid" in l, l.jwt_sub, "jwt_sub" in l])).toEqual([
      ["jwt_signature", false, "gate-8", true],
      ["jwt_claims", true, undefined, false],
    ]);
  });

  test("the lifetime cap on a frozen clock: exp exactly at cap + skew is accepted, a second more is refused with the figures", async () => {
    const t = 1_800_000_000;
    await frozenAt(t * 1000, async () => {
      const { call } = setup({ jwt });
      expect((await call("/write", bearer(await sign({ exp: t + 3630 })))).status).toBe(200);
      const r = await call("/write", bearer(await sign({ exp: t + 3631 })));
      expect([r.status, r.body.error]).toEqual([
        401,
        "JWT lifetime too long: exp is 3631 s away, at most JWT_MAX_LIFETIME_SECONDS (3600) accepted; issue shorter-lived tokens",
      ]);
    });
  });

  test("a scope claim that is not a string grants no scope", async () => {
    const { call } = setup({ jwt });
    const r = await call("/write", bearer(await sign({ scope: ["scans:write"] })));
    expect([r.status, r.body.error]).toEqual([403, "this credential lacks the scope scans:write"]);
  });

  test("trusted(): a JWT configuration alone is enough", () => {
    expect(setup({ jwt }).auth.trusted()).toBe(true);
  });

  test("remote keys: fetched when no local key matches, and not again within the cooldown for an unknown kid", async () => {
    served = { keys: [K2] };
    fetches = 0;
    const { call } = setup({ jwt: remote([K1]) });
    expect((await call("/write", bearer(await sign()))).status).toBe(200);
    expect(fetches).toBe(0);
    const viaRemote = await call("/write", bearer(await sign({}, "k2", rotated.privateKey)));
    expect([viaRemote.status, viaRemote.body.id]).toEqual([200, "https://idp.test#gate-7"]);
    expect(fetches).toBe(1);
    // A new key appears at the IdP; within the 30 s cooldown it is not fetched for.
    served = { keys: [K2, K3] };
    await Bun.sleep(50);
    const tooSoon = await call("/write", bearer(await sign({}, "k3", later.privateKey)));
    expect([tooSoon.status, tooSoon.body.error]).toEqual([401, "JWT signed with an unknown key"]);
    expect(fetches).toBe(1);
  });

  test("remote keys only: verified against the fetched set", async () => {
    served = { keys: [K2] };
    const { call } = setup({ jwt: remote([]) });
    expect((await call("/write", bearer(await sign({}, "k2", rotated.privateKey)))).status).toBe(200);
  });

  test("a JWKS endpoint answering 500 or something that is not a key set: 503, logged with the fetch's error", async () => {
    for (const answer of [500, '{"keys": "no"}']) {
      served = answer;
      const { call, audits } = setup({ jwt: remote([]) });
      const r = await call("/write", bearer(await sign({}, "k2", rotated.privateKey)));
      expect({ answer, r: [r.status, r.body.error] }).toEqual({
        answer,
        r: [503, "JWT keys unavailable; retry later"],
      });
      expect(audits()).toEqual([
        expect.objectContaining({
          msg: "could not fetch the JWT verification keys; answered 503",
          reason: "jwt_keys_unavailable",
          jwt_kid: "k2",
          err: expect.objectContaining({ message: expect.any(String) }),
        }),
      ]);
    }
  });
});
