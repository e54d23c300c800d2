// The auth middleware's decisions in-process (server/auth.ts): which credential is read, each 401's
// reason and message, the 403s for scope and tenant, static-key shape, revoked and expired managed
// keys, and every JWT check (algorithm allowlist incl. HS256 signed with the server's own RSA
// public key, issuer, audience, exp/nbf with skew, lifetime cap, tenant claim, kid). Each failure
// must count under its own reason. The managed-key store is a Map here (the lookup is pure);
// test/integration/server-keys.test.ts and server-jwt.test.ts run the same through a real server.
import { describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { Hono } from "hono";
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from "jose";
import { Counter, Registry } from "prom-client";
import { type AuthOptions, createAuth, keyHint } from "../../server/auth.ts";
import type { JwtConfig } from "../../server/config.ts";
import { errorHandler } from "../../server/errors.ts";
import type { KeyRecord, KeyStore } from "../../server/keys.ts";
import type { Principal } from "../../server/principal.ts";
import { newSecret, sha256 } from "../../shared/api-keys.ts";
import { createLogger } from "../../shared/logger.ts";

const STATIC_KEY = newSecret();
const digest = (key: string) => sha256(key).toString("hex");

const managed = (id: string, over: Partial<KeyRecord> = {}, p: Partial<Principal> = {}): KeyRecord => ({
  principal: { kind: "api_key", id, name: id, scopes: new Set(["scans:write"]), qrPrefix: null, rateLimit: null, ...p },
  expiresAt: null,
  revoked: false,
  usedAt: 0,
  ...over,
});

function fakeStore(records: Record<string, KeyRecord>, loaded = true): KeyStore {
  const byDigest = new Map(Object.entries(records).map(([key, r]) => [digest(key), r]));
  return { lookup: (d: string) => byDigest.get(d), loaded } as unknown as KeyStore;
}

type Config = AuthOptions["config"];
const baseConfig: Config = { AUTH_DISABLED: false, apiKeyHashes: [], jwt: null, RETRY_AFTER_SECONDS: 7 };

function setup(config: Partial<Config> = {}, keyStore: KeyStore | null = null) {
  const failures = new Counter({ name: "af", help: "h", labelNames: ["reason"], registers: [new Registry()] });
  const logger = createLogger("test", "silent");
  const auth = createAuth({
    config: { ...baseConfig, ...config },
    keyStore,
    metrics: { authFailures: failures },
    logger,
  });
  const app = new Hono();
  app.onError(errorHandler({ logger }));
  const show = (c: { get(k: "principal"): Principal }) => {
    const p = c.get("principal");
    return { kind: p.kind, id: p.id, scopes: [...p.scopes].sort(), qrPrefix: p.qrPrefix };
  };
  app.get("/write", auth.require("scans:write"), (c) => c.json(show(c)));
  app.get("/stats/:qr", auth.require("stats:read", { qrIdParam: "qr" }), (c) => c.json(show(c)));
  app.get("/deny/:i", auth.require("scans:write"), (c) => {
    throw auth.tenantDenied(c, "other:qr", Number(c.req.param("i")));
  });
  const call = async (path: string, headers: Record<string, string> = {}) => {
    const res = await app.request(path, { headers });
    return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
  };
  const counted = async () => {
    const out: Record<string, number> = {};
    for (const v of (await failures.get()).values) if (v.value) out[String(v.labels.reason)] = v.value;
    return out;
  };
  return { auth, call, counted };
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe("API keys", () => {
  test("no credential is a 401 'missing' that says how to send one", async () => {
    const { call, counted } = setup({ apiKeyHashes: [digest(STATIC_KEY)] });
    const r = await call("/write");
    expect(r.status).toBe(401);
    expect(r.body.error).toContain("Authorization: Bearer");
    expect(await counted()).toEqual({ missing: 1 });
    // "Bearer" with nothing after it is no credential either.
    expect((await call("/write", { authorization: "Bearer   " })).status).toBe(401);
    expect((await call("/write", { authorization: STATIC_KEY })).status).toBe(401);
    expect(await counted()).toEqual({ missing: 3 });
  });

  test("a static key is accepted as Bearer (any case) or X-API-Key, with both scopes and no tenant", async () => {
    const { call, counted } = setup({ apiKeyHashes: [digest(STATIC_KEY).toUpperCase()] });
    for (const headers of [
      bearer(STATIC_KEY),
      { authorization: `bEaReR ${STATIC_KEY}` },
      { "x-api-key": STATIC_KEY },
    ]) {
      const r = await call("/write", headers);
      expect(r.status).toBe(200);
      expect(r.body).toEqual({
        kind: "static_key",
        id: `static:${digest(STATIC_KEY).slice(0, 8)}`,
        scopes: ["scans:write", "stats:read"],
        qrPrefix: null,
      });
    }
    expect((await call("/stats/any:qr", { "x-api-key": STATIC_KEY })).status).toBe(200);
    expect(await counted()).toEqual({});
  });

  test("a static key not of the generated shape is refused even when its digest is configured", async () => {
    const weak = "qrs_short-and-guessable";
    const { call, counted } = setup({ apiKeyHashes: [digest(weak)] });
    const r = await call("/write", bearer(weak));
    expect(r.status).toBe(401);
    expect(r.body.error).toContain("bun run keys static");
    expect(await counted()).toEqual({ weak_key: 1 });
  });

  test("managed keys: unknown, revoked and expired are 401s with their own reasons; a live key is used", async () => {
    const now = Date.now();
    const live = managed("k-live", { expiresAt: now + 60_000 });
    const store = fakeStore({
      "qrs_live-key-000000000": live,
      "qrs_revoked-key-0000000": managed("k-revoked", { revoked: true }),
      "qrs_expired-key-0000000": managed("k-expired", { expiresAt: now - 1 }),
    });
    const { call, counted } = setup({}, store);
    expect((await call("/write", bearer("qrs_live-key-000000000"))).body).toMatchObject({
      kind: "api_key",
      id: "k-live",
    });
    expect(live.usedAt).toBeGreaterThanOrEqual(now);
    const unknown = await call("/write", bearer("qrs_nobody-0000000000"));
    expect([unknown.status, unknown.body.error]).toEqual([401, "invalid API key"]);
    const revoked = await call("/write", bearer("qrs_revoked-key-0000000"));
    expect([revoked.status, revoked.body.error]).toEqual([401, "API key revoked: ask for a new one"]);
    const expired = await call("/write", bearer("qrs_expired-key-0000000"));
    expect([expired.status, expired.body.error]).toEqual([401, "API key expired: ask for a new one"]);
    expect(await counted()).toEqual({ unknown_key: 1, revoked_key: 1, expired_key: 1 });
  });

  test("a key expiring this very millisecond is expired", async () => {
    const record = managed("k-edge");
    const { call } = setup({}, fakeStore({ "qrs_edge-key-000000000": record }));
    record.expiresAt = Date.now();
    expect((await call("/write", bearer("qrs_edge-key-000000000"))).status).toBe(401);
  });

  test("a valid key without the route's scope is a 403 'scope'; a QR id outside its tenant a 403 'tenant'", async () => {
    const store = fakeStore({
      "qrs_writer-00000000000": managed("k-writer"),
      "qrs_tenant-00000000000": managed("k-tenant", {}, { scopes: new Set(["stats:read"]), qrPrefix: "acme:" }),
    });
    const { call, counted } = setup({}, store);
    const scope = await call("/stats/acme:1", bearer("qrs_writer-00000000000"));
    expect([scope.status, scope.body.error]).toEqual([403, "this credential lacks the scope stats:read"]);
    expect((await call("/stats/acme:1", bearer("qrs_tenant-00000000000"))).status).toBe(200);
    const other = await call("/stats/globex:1", bearer("qrs_tenant-00000000000"));
    expect(other.status).toBe(403);
    expect(other.body.error).toBe(`qr_id "globex:1" is outside this credential's QR ids (acme:…)`);
    expect(await counted()).toEqual({ scope: 1, tenant: 1 });
  });

  test("tenantDenied names the event's index", async () => {
    const { call } = setup({}, fakeStore({ "qrs_t-000000000000000": managed("k", {}, { qrPrefix: "acme:" }) }));
    const r = await call("/deny/3", bearer("qrs_t-000000000000000"));
    expect([r.status, r.body.error]).toEqual([
      403,
      `event 3: qr_id "other:qr" is outside this credential's QR ids (acme:…)`,
    ]);
  });

  test("AUTH_DISABLED lets every request through with both scopes; trusted() says whether anything can verify", async () => {
    const { call } = setup({ AUTH_DISABLED: true });
    expect((await call("/stats/x")).body).toEqual({
      kind: "disabled",
      id: "disabled",
      scopes: ["scans:write", "stats:read"],
      qrPrefix: null,
    });
    expect(setup({ AUTH_DISABLED: true }).auth.trusted()).toBe(true);
    expect(setup().auth.trusted()).toBe(false);
    expect(setup({}, fakeStore({}, false)).auth.trusted()).toBe(false);
    expect(setup({}, fakeStore({}, true)).auth.trusted()).toBe(true);
    expect(setup({ apiKeyHashes: [digest(STATIC_KEY)] }).auth.trusted()).toBe(true);
  });

  test("a log line may carry a managed key's shown prefix, else only the length", () => {
    expect(keyHint("qrs_abcdefghijklmnop")).toEqual({ key_prefix: "qrs_abcd" });
    expect(keyHint("qrs_abcdefghijkl")).toEqual({ key_length: 16 });
    expect(keyHint("not-a-managed-key-at-all")).toEqual({ key_length: 24 });
  });
});

describe("JWTs", async () => {
  const rsa = await generateKeyPair("RS256", { extractable: true });
  const other = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(rsa.publicKey)), kid: "k1", alg: "RS256" };
  const jwt: JwtConfig = {
    jwksUrl: null,
    keys: [jwk],
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
  const sign = (claims: Record<string, unknown> = {}, opts: { kid?: string; key?: CryptoKey } = {}) =>
    new SignJWT({
      iss: "https://idp.test",
      aud: "qrscan",
      sub: "gate-7",
      iat: now(),
      exp: now() + 600,
      scope: "scans:write stats:read admin",
      qr_prefix: "acme:",
      ...claims,
    })
      .setProtectedHeader({ alg: "RS256", kid: opts.kid ?? "k1" })
      .sign(opts.key ?? rsa.privateKey);

  test("a valid token: principal from iss and sub, known scopes only, tenant from the claim", async () => {
    const { call, counted } = setup({ jwt });
    const r = await call("/stats/acme:1", bearer(await sign()));
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      kind: "jwt",
      id: "https://idp.test#gate-7",
      scopes: ["scans:write", "stats:read"],
      qrPrefix: "acme:",
    });
    expect((await call("/stats/globex:1", bearer(await sign()))).status).toBe(403);
    expect(await counted()).toEqual({ tenant: 1 });
  });

  test("HS256 signed with the server's own RSA public key (algorithm confusion) is refused", async () => {
    const { call, counted } = setup({ jwt });
    // The attacker's secret is the public key exactly as the server holds it (PEM, as published).
    const pem = await exportSPKI(rsa.publicKey);
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const head = enc({ alg: "HS256", kid: "k1", typ: "JWT" });
    const body = enc({
      iss: jwt.issuer,
      aud: jwt.audience,
      sub: "x",
      exp: now() + 60,
      qr_prefix: "acme:",
      scope: "scans:write",
    });
    const sig = createHmac("sha256", pem).update(`${head}.${body}`).digest("base64url");
    const r = await call("/write", bearer(`${head}.${body}.${sig}`));
    expect([r.status, r.body.error]).toEqual([401, "JWT algorithm not accepted"]);
    expect(await counted()).toEqual({ jwt_algorithm: 1 });
  });

  test("each broken claim is a 401 with its own reason", async () => {
    const { call, counted } = setup({ jwt });
    const cases: [string, Promise<string>, string][] = [
      ["jwt_expired", sign({ exp: now() - 120 }), "JWT expired"],
      ["jwt_not_yet_valid", sign({ nbf: now() + 120 }), "JWT not valid yet (nbf)"],
      ["jwt_claims", sign({ iss: "https://evil.test" }), "JWT rejected: iss claim is missing or not accepted"],
      ["jwt_claims", sign({ aud: "someone-else" }), "JWT rejected: aud claim is missing or not accepted"],
      ["jwt_signature", sign({}, { key: other.privateKey }), "JWT signature invalid"],
      ["jwt_unknown_kid", sign({}, { kid: "k9" }), "JWT signed with an unknown key"],
      ["jwt_lifetime", sign({ exp: now() + 3600 + 30 + 120 }), ""],
      ["jwt_tenant", sign({ qr_prefix: undefined }), "JWT rejected: its qr_prefix claim is missing"],
      ["jwt_tenant", sign({ qr_prefix: "acme" }), "JWT rejected: its qr_prefix claim is not a tenant prefix"],
    ];
    for (const [reason, token, message] of cases) {
      const r = await call("/write", bearer(await token));
      expect([reason, r.status]).toEqual([reason, 401]);
      expect(String(r.body.error)).toStartWith(message);
    }
    const malformed = await call("/write", bearer("aaa.bbb.ccc"));
    expect([malformed.status, malformed.body.error]).toEqual([401, "JWT malformed"]);
    expect(await counted()).toEqual({
      jwt_expired: 1,
      jwt_not_yet_valid: 1,
      jwt_claims: 2,
      jwt_signature: 1,
      jwt_unknown_kid: 1,
      jwt_lifetime: 1,
      jwt_tenant: 2,
      jwt_malformed: 1,
    });
  });

  test("the clock skew is honoured both ways; the lifetime cap counts it", async () => {
    const { call } = setup({ jwt });
    expect((await call("/write", bearer(await sign({ exp: now() - 10 })))).status).toBe(200);
    expect((await call("/write", bearer(await sign({ nbf: now() + 10 })))).status).toBe(200);
    expect((await call("/write", bearer(await sign({ exp: now() + 3600 + 20 })))).status).toBe(200);
  });

  test("a token without sub is refused; one without the tenant claim only when global tokens are allowed", async () => {
    const { call } = setup({ jwt });
    const noSub = await sign({ sub: undefined });
    expect((await call("/write", bearer(noSub))).body.error).toBe("JWT rejected: sub claim is missing or not accepted");
    const global = setup({ jwt: { ...jwt, allowGlobalTokens: true } });
    const r = await global.call("/stats/anyone:1", bearer(await sign({ qr_prefix: undefined })));
    expect([r.status, r.body.qrPrefix]).toEqual([200, null]);
    // A claim that is there but broken is refused even then.
    expect((await global.call("/write", bearer(await sign({ qr_prefix: "acme" })))).status).toBe(401);
  });

  test("a qrs_ bearer is always an API key, never parsed as a JWT", async () => {
    const { call, counted } = setup({ jwt }, fakeStore({ "qrs_a.b.c": managed("k-dots") }));
    expect((await call("/write", bearer("qrs_a.b.c"))).body).toMatchObject({ id: "k-dots" });
    expect(await counted()).toEqual({});
  });

  test("JWKS unreachable: 503 with Retry-After, counted as jwt_keys_unavailable, not the client's 401", async () => {
    const { call, counted } = setup({ jwt: { ...jwt, keys: [], jwksUrl: "http://127.0.0.1:9/jwks.json" } });
    const r = await call("/write", bearer(await sign()));
    expect([r.status, r.headers.get("retry-after"), r.body.error]).toEqual([
      503,
      "7",
      "JWT keys unavailable; retry later",
    ]);
    expect(await counted()).toEqual({ jwt_keys_unavailable: 1 });
  });
});
