// JWT bearer tokens at the edge (in-process app, real Kafka): keys generated here with jose, a JWKS
// endpoint served by this test on 127.0.0.1, and the accept/reject matrix of docs/api.md
// "Authentication". Every rejection is a 401 (403 for a missing scope or a foreign tenant) counted
// in auth_failures_total{reason}, and the audit line names the token's kid/sub, never the token.
// Tokens carry the tenant claim qr_prefix "acme:" unless a test says otherwise: without one a
// token is refused (JWT_ALLOW_GLOBAL_TOKENS=false).
// Algorithm confusion is tried with the server's own RSA public key as the HMAC secret, in every
// form an attacker has it (the PEM file the server reads, the JWKS as served, JWK, PEM, DER).
// Mutation (tools/mutations/catalog/edge.ts, jwt-accepts-hs256): HS256 added to the verifier's
// algorithms → each confusion token refused as jwt_malformed instead of jwt_algorithm (still 401:
// jose finds no HMAC key in a set of RSA keys, the second line of defence; the first is gone).
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CryptoKey, type JWK, SignJWT, exportJWK, exportSPKI, generateKeyPair, jwtVerify } from "jose";
import { createLogger } from "../../shared/logger.ts";
import { createTestApp, onCleanup } from "../helpers/fixtures.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

const ISSUER = "https://issuer.test";
const AUDIENCE = "qrscan-edge";

interface SigningKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

async function signingKey(kid: string, alg = "RS256"): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

/** A JWKS endpoint of this test: serves `keys` (change it to rotate); counts its fetches. */
function jwksServer(keys: SigningKey[]) {
  const state = { keys, fetches: 0 };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch() {
      state.fetches++;
      return Response.json({ keys: state.keys.map((k) => k.jwk) });
    },
  });
  onCleanup(() => server.stop(true));
  return { state, url: `http://127.0.0.1:${server.port}/.well-known/jwks.json`, stop: () => server.stop(true) };
}

interface TokenOptions {
  key: SigningKey;
  scope?: string;
  iss?: string;
  aud?: string;
  sub?: string;
  /** Seconds from now. */
  exp?: number;
  /** Absolute exp (epoch seconds) instead. */
  expAt?: number;
  nbf?: number;
  claims?: Record<string, unknown>;
  kid?: string;
}

function token({
  key,
  scope = "scans:write stats:read",
  iss = ISSUER,
  aud = AUDIENCE,
  sub = "client-1",
  exp = 300,
  expAt,
  nbf,
  claims = {},
  kid = key.kid,
}: TokenOptions) {
  const now = Math.floor(Date.now() / 1000);
  // An undefined claim is left out of the token (JSON).
  const jwt = new SignJWT({ scope, qr_prefix: "acme:", ...claims })
    .setProtectedHeader({ alg: key.alg, kid })
    .setIssuer(iss)
    .setAudience(aud)
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(expAt ?? now + exp);
  if (nbf !== undefined) jwt.setNotBefore(now + nbf);
  return jwt.sign(key.privateKey);
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");

async function jwtApp(env: Record<string, string>) {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("server-test", "warn", { write: (l: string) => void lines.push(JSON.parse(l)) });
  const t = await createTestApp({ JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE, ...env }, { logger });
  const post = (jwt: string, events: unknown = [scan({ qr_id: "acme:1" })]) =>
    t.app.request("/v1/scans", {
      method: "POST",
      body: JSON.stringify(events),
      headers: { authorization: `Bearer ${jwt}`, "content-type": "application/json" },
    });
  const stats = (jwt: string, qrId: string) =>
    t.app.request(`/v1/qr/${qrId}/stats?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z`, {
      headers: { authorization: `Bearer ${jwt}` },
    });
  const failures = async () => {
    const values = (await t.registry.getSingleMetric("auth_failures_total")?.get())?.values ?? [];
    return Object.fromEntries(values.filter((v) => v.value > 0).map((v) => [v.labels.reason, v.value]));
  };
  return { t, post, stats, failures, lines };
}

describe("JWT bearer tokens from a JWKS URL", () => {
  test("the accept and reject matrix", async () => {
    const rsa = await signingKey("rsa-1");
    const jwks = jwksServer([rsa]);
    const { post, failures, lines } = await jwtApp({ JWT_JWKS_URL: jwks.url });
    const other = await signingKey("rsa-1"); // same kid, another key: a forged signature

    const now = Math.floor(Date.now() / 1000);
    const none = `${b64({ alg: "none", kid: "rsa-1" })}.${b64({ iss: ISSUER, aud: AUDIENCE, sub: "attacker", exp: now + 300, scope: "scans:write", qr_prefix: "acme:" })}.`;
    // Algorithm confusion: HS256 "signed" with the server's own RSA public key as the HMAC secret,
    // in every form an attacker can have it (the JWKS as the server fetches it, the key's JWK, its
    // PEM and DER), with claims that are otherwise valid. A verifier that let the token pick HS256
    // and used the key bytes it holds as the secret would accept one of them.
    const confusion = await confusionTokens(rsa, await (await fetch(jwks.url)).text());

    const cases: [string, string | Promise<string>, number, string?][] = [
      ["valid", token({ key: rsa }), 202],
      ["expired 10 s ago: within the 30 s clock skew", token({ key: rsa, exp: -10 }), 202],
      ["expired", token({ key: rsa, exp: -120 }), 401, "jwt_expired"],
      ["nbf in the future", token({ key: rsa, nbf: 120 }), 401, "jwt_not_yet_valid"],
      ["wrong issuer", token({ key: rsa, iss: "https://evil.test" }), 401, "jwt_claims"],
      ["wrong audience", token({ key: rsa, aud: "another-api" }), 401, "jwt_claims"],
      ["alg none", none, 401, "jwt_algorithm"],
      ...confusion.map(([form, jwt]): [string, string, number, string] => [
        `HS256 signed with the server's RSA public key (${form})`,
        jwt,
        401,
        "jwt_algorithm",
      ]),
      ["signed by another key under the same kid", token({ key: other }), 401, "jwt_signature"],
      ["a kid the JWKS does not have", token({ key: other, kid: "nope" }), 401, "jwt_unknown_kid"],
      ["not a JWT at all", "eyJhbGciOi.eyJzdWIi.sig", 401, "jwt_malformed"],
      ["missing scope", token({ key: rsa, scope: "stats:read" }), 403, "scope"],
    ];
    // Each case's answer and the auth_failures_total reason it added (none for an accepted token).
    const got: Record<string, [number, string | null]> = {};
    const want: Record<string, [number, string | null]> = {};
    for (const [name, jwt, status, reason] of cases) {
      const before = await failures();
      const answer = (await post(await jwt)).status;
      const after = await failures();
      const added = Object.keys(after).filter((r) => (after[r] ?? 0) > (before[r] ?? 0));
      got[name] = [answer, added.join(",") || null];
      want[name] = [status, reason ?? null];
    }
    expect(got).toEqual(want);

    // The audit trail names the token's kid and sub, never the token.
    const expired = lines.find((l) => l.reason === "jwt_expired");
    expect(expired).toMatchObject({
      jwt_kid: "rsa-1",
      jwt_sub: "client-1",
      msg: "authentication failed; answered 401",
    });
    const all = JSON.stringify(lines);
    const signatures = (await Promise.all(cases.map(([, jwt]) => jwt))).map((j) => j.split(".")[2] ?? "");
    const logged = signatures.filter((sig) => sig.length > 20 && all.includes(sig));
    expect({ checked: signatures.filter((sig) => sig.length > 20).length, logged }).toEqual({
      checked: 9 + confusion.length,
      logged: [],
    });
  }, 60_000);

  test("an unknown kid makes the JWKS be fetched again, at most once per cooldown: a rotated key works without a restart, a flood of made-up kids fetches nothing more", async () => {
    const first = await signingKey("k1", "ES256");
    const jwks = jwksServer([first]);
    const { post, failures } = await jwtApp({ JWT_JWKS_URL: jwks.url, JWT_JWKS_COOLDOWN_SECONDS: "5" });
    expect((await post(await token({ key: first }))).status).toBe(202);
    expect((await post(await token({ key: first }))).status).toBe(202);
    expect(jwks.state.fetches).toBe(1); // cached

    // Made-up kids within the cooldown: refused without a fetch each.
    const stranger = await signingKey("k1");
    for (let i = 0; i < 20; i++)
      expect((await post(await token({ key: stranger, kid: `made-up-${i}` }))).status).toBe(401);
    expect({ fetches: jwks.state.fetches, failures: await failures() }).toEqual({
      fetches: 1,
      failures: { jwt_unknown_kid: 20 },
    });

    const second = await signingKey("k2", "EdDSA");
    jwks.state.keys = [first, second];
    await Bun.sleep(5_100); // the cooldown since the first fetch
    expect((await post(await token({ key: second }))).status).toBe(202);
    expect(jwks.state.fetches).toBe(2);
  }, 30_000);

  test("tenant claim: a token with qr_prefix reads and writes only its QR ids, by whole segments", async () => {
    const key = await signingKey("t1");
    const jwks = jwksServer([key]);
    const { post, stats } = await jwtApp({ JWT_JWKS_URL: jwks.url });
    const jwt = await token({ key, claims: { qr_prefix: "acme:" } });
    expect((await post(jwt, [scan({ qr_id: "acme:9" })])).status).toBe(202);
    for (const other of ["globex:9", "acme2:9", "acme2-secret", "acme-9"]) {
      expect({ other, write: (await post(jwt, [scan({ qr_id: other })])).status }).toEqual({ other, write: 403 });
      expect({ other, read: (await stats(jwt, other)).status }).toEqual({ other, read: 403 });
    }
  }, 30_000);

  test("a token without a valid tenant claim is refused on both routes (401 jwt_tenant), unless JWT_ALLOW_GLOBAL_TOKENS=true lets one without the claim through", async () => {
    const key = await signingKey("t2");
    const jwks = jwksServer([key]);
    const { post, stats, failures } = await jwtApp({ JWT_JWKS_URL: jwks.url });
    const claims: [string, unknown][] = [
      ["missing", undefined],
      ["empty", ""],
      ["an array", ["acme:"]],
      ["a number", 7],
      ["null", null],
      ["without the delimiter", "acme"],
      ["ending in -", "acme-"],
      ["a pattern", "*"],
    ];
    const got: Record<string, [number, number]> = {};
    for (const [name, value] of claims) {
      const jwt = await token({ key, claims: { qr_prefix: value } });
      got[name] = [(await post(jwt, [scan({ qr_id: "globex:1" })])).status, (await stats(jwt, "globex:1")).status];
    }
    expect(got).toEqual(Object.fromEntries(claims.map(([name]) => [name, [401, 401]])));
    expect(await failures()).toEqual({ jwt_tenant: claims.length * 2 });
    const refused = await post(await token({ key, claims: { qr_prefix: undefined } }));
    expect(await refused.json()).toMatchObject({
      error: 'JWT rejected: its qr_prefix claim is missing (one or more segments ending in ":", e.g. "acme:")',
    });

    // Global tokens allowed: a token without the claim writes any tenant's QR ids; a broken claim is still refused.
    const global = await jwtApp({ JWT_JWKS_URL: jwks.url, JWT_ALLOW_GLOBAL_TOKENS: "true" });
    const statuses = async (value: unknown) =>
      (await global.post(await token({ key, claims: { qr_prefix: value } }), [scan({ qr_id: "globex:1" })])).status;
    expect([await statuses(undefined), await statuses(""), await statuses(["acme:"]), await statuses("acme")]).toEqual([
      202, 401, 401, 401,
    ]);
  }, 30_000);

  test("a token whose exp is further than JWT_MAX_LIFETIME_SECONDS away is refused (401 jwt_lifetime)", async () => {
    const key = await signingKey("l1");
    const jwks = jwksServer([key]);
    const { post, failures } = await jwtApp({ JWT_JWKS_URL: jwks.url });
    const in2100 = Date.UTC(2100, 0, 1) / 1000;
    const res = await post(await token({ key, expAt: in2100 }));
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toStartWith("JWT lifetime too long: exp is ");
    // The default is a day (plus the clock skew).
    expect((await post(await token({ key, exp: 86_400 }))).status).toBe(202);
    expect((await post(await token({ key, exp: 86_400 + 120 }))).status).toBe(401);
    expect(await failures()).toEqual({ jwt_lifetime: 2 });
    const short = await jwtApp({ JWT_JWKS_URL: jwks.url, JWT_MAX_LIFETIME_SECONDS: "600" });
    expect([
      (await short.post(await token({ key, exp: 600 }))).status,
      (await short.post(await token({ key, exp: 3_600 }))).status,
    ]).toEqual([202, 401]);
  }, 30_000);

  test("the JWKS unreachable: 503 + Retry-After (not the client's fault), counted as jwt_keys_unavailable", async () => {
    const key = await signingKey("u1");
    const jwks = jwksServer([key]);
    jwks.stop();
    const { post, failures, lines } = await jwtApp({ JWT_JWKS_URL: jwks.url });
    const res = await post(await token({ key }));
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("2");
    expect(await failures()).toEqual({ jwt_keys_unavailable: 1 });
    // Logged with what to fix: the fetch's own error.
    const line = lines.find((l) => l.reason === "jwt_keys_unavailable") as { err?: { message?: string } };
    expect(line?.err?.message).toBeTruthy();
  }, 30_000);
});

describe("JWT keys from files", () => {
  test("a PEM public key and a JWKS file; API keys keep working beside JWTs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jwt-keys-"));
    const rsa = await signingKey("pem-key");
    const ed = await signingKey("ed-1", "EdDSA");
    const { publicKey } = await generateKeyPair("RS256", { extractable: true });
    // A PEM file's key has the file's name (without extension) as its kid.
    const pemFile = await exportSPKI(await importBack(rsa));
    const jwksFile = JSON.stringify({ keys: [ed.jwk, await exportJWK(publicKey)] });
    writeFileSync(join(dir, "pem-key.pem"), pemFile);
    writeFileSync(join(dir, "jwks.json"), jwksFile);
    const { post, t, failures } = await jwtApp({
      JWT_KEY_FILES: `${join(dir, "pem-key.pem")},${join(dir, "jwks.json")}`,
    });
    expect((await post(await token({ key: rsa }))).status).toBe(202);
    expect((await post(await token({ key: ed }))).status).toBe(202);
    const stranger = await signingKey("pem-key");
    expect((await post(await token({ key: stranger }))).status).toBe(401);
    // Algorithm confusion with the very bytes the server was configured with (the PEM file), and
    // the key's other forms: each refused for its algorithm.
    const confusion = await confusionTokens(rsa, jwksFile, pemFile);
    const before = await failures();
    const statuses: Record<string, number> = {};
    for (const [form, jwt] of confusion) statuses[form] = (await post(jwt)).status;
    expect(statuses).toEqual(Object.fromEntries(confusion.map(([form]) => [form, 401])));
    expect((await failures()).jwt_algorithm ?? 0).toBe((before.jwt_algorithm ?? 0) + confusion.length);
    // The static API key of createTestApp still works.
    expect((await t.post(JSON.stringify(scan()))).status).toBe(202);
  }, 30_000);
});

/**
 * HS256 tokens whose HMAC secret is the RSA public key of `key` in each form an attacker can get
 * it: the JWKS document as served (`jwksText`), the key's JWK as JSON, its PEM (with and without
 * the final newline) and its DER. Otherwise valid (issuer, audience, sub, exp, scope, tenant), and
 * checked here to verify as HS256 with that secret: a well-formed forgery, not a broken token.
 */
async function confusionTokens(key: SigningKey, jwksText: string, pemFile?: string): Promise<[string, string][]> {
  const pem = await exportSPKI(await importBack(key));
  const der = Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ""), "base64");
  const encode = (s: string) => new TextEncoder().encode(s);
  const secrets: [string, Uint8Array][] = [
    ...(pemFile === undefined ? [] : ([["the PEM file's bytes", encode(pemFile)]] as [string, Uint8Array][])),
    ["the JWKS document as served", encode(jwksText)],
    ["its JWK as JSON", encode(JSON.stringify(key.jwk))],
    ["its PEM", encode(pem)],
    ["its PEM with a final newline", encode(`${pem.trimEnd()}\n`)],
    ["its DER", new Uint8Array(der)],
  ];
  const out: [string, string][] = [];
  for (const [form, secret] of secrets) {
    const jwt = await new SignJWT({ scope: "scans:write stats:read", qr_prefix: "acme:" })
      .setProtectedHeader({ alg: "HS256", kid: key.kid, typ: "JWT" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject("attacker")
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(secret);
    await jwtVerify(jwt, secret, { algorithms: ["HS256"], issuer: ISSUER, audience: AUDIENCE });
    out.push([form, jwt]);
  }
  return out;
}

/** The public key of a signing key, as a CryptoKey (for exportSPKI). */
async function importBack(k: SigningKey) {
  const { importJWK } = await import("jose");
  return (await importJWK(k.jwk, k.alg)) as CryptoKey;
}
