// Start-up configuration: defaults that work locally, and errors that name the variable.
import { describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadServerConfig } from "../../server/config.ts";
import { TrustedProxies, clientIpResolver, isLoopbackHost } from "../../server/trusted-proxies.ts";
import { ConfigError, kafkaOverrides } from "../../shared/config.ts";

const DIGEST = "ab".repeat(32);
/** The server's configuration with one API key digest (the server refuses to start without a key). */
const load = (env: Record<string, string>) => loadServerConfig({ API_KEY_SHA256: DIGEST, ...env });

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("server configuration", () => {
  test("defaults work locally", () => {
    const c = load({});
    expect(c.PORT).toBe(8080);
    expect(c.HOST).toBe("127.0.0.1");
    expect(c.METRICS_HOST).toBe("127.0.0.1");
    expect(c.MAX_BODY_BYTES).toBe(1024 * 1024);
    expect(c.MAX_BODY_BYTES_IN_FLIGHT).toBe(64 * 1024 * 1024);
    expect(c.MAX_EVENTS_PER_REQUEST).toBe(1000);
    expect(c.AUTH_DISABLED).toBe(false);
    // The local stack's broker (19092, or STACK_KAFKA_PORT's when a private stack is used).
    expect(c.kafka["bootstrap.servers"]).toBe(`127.0.0.1:${process.env.STACK_KAFKA_PORT || 19092}`);
  });

  test("every invalid variable is named with its value and the rule", () => {
    try {
      loadServerConfig({ PORT: "eighty", AUTH_DISABLED: "maybe", API_KEY_SHA256: "abc", MAX_EVENTS_PER_REQUEST: "0" });
      throw new Error("expected a ConfigError");
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const text = (error as ConfigError).message;
      expect(text).toContain('PORT="eighty": must be an integer');
      expect(text).toContain('AUTH_DISABLED="maybe": must be true or false');
      expect(text).toContain("API_KEY_SHA256");
      expect(text).toContain('MAX_EVENTS_PER_REQUEST="0": must be >= 1');
    }
  });

  test("KAFKA_OPT_* variables become librdkafka properties and override ours", () => {
    expect(kafkaOverrides({ KAFKA_OPT_LINGER_MS: "20", KAFKA_OPT_BATCH_NUM_MESSAGES: "500", OTHER: "x" })).toEqual({
      "linger.ms": "20",
      "batch.num.messages": "500",
    });
    expect(load({ KAFKA_OPT_LINGER_MS: "20" }).kafka["linger.ms"]).toBe("20");
  });
});

describe("API keys and log level, resolved with the rest of the configuration", () => {
  test("digests from API_KEY_SHA256 and from API_KEYS_FILE (one per line, # comments, blank lines)", () => {
    const dir = mkdtempSync(join(tmpdir(), "keys-"));
    const file = join(dir, "keys");
    writeFileSync(file, `# ops keys\n${"cd".repeat(32)}\n\n  ${"EF".repeat(32)}  \n`);
    expect(load({ API_KEYS_FILE: file }).apiKeyHashes).toEqual([DIGEST, "cd".repeat(32), "EF".repeat(32)]);
    expect(loadServerConfig({ API_KEYS_FILE: file }).apiKeyHashes).toEqual(["cd".repeat(32), "EF".repeat(32)]);
  });

  test("no key at all, an unreadable file or a line that is not a digest stops start-up, naming the variable", () => {
    expect(configError(() => loadServerConfig({ API_KEYS_DB: "false" })).problems).toEqual([
      "API_KEY_SHA256 / API_KEYS_FILE: no API keys configured and API_KEYS_DB=false and no JWT keys (or set AUTH_DISABLED=true for local demos)",
    ]);
    // Managed keys (the default) or JWT keys are enough: /ready waits for them instead.
    expect(loadServerConfig({}).apiKeyHashes).toEqual([]);
    expect(loadServerConfig({ AUTH_DISABLED: "true" }).apiKeyHashes).toEqual([]);
    expect(configError(() => load({ API_KEYS_FILE: "/nonexistent/keys" })).problems[0]).toStartWith(
      'API_KEYS_FILE="/nonexistent/keys": cannot be read (',
    );
    const dir = mkdtempSync(join(tmpdir(), "keys-"));
    const file = join(dir, "keys");
    writeFileSync(file, "plaintext-key-by-mistake\n");
    expect(configError(() => load({ API_KEYS_FILE: file })).problems).toEqual([
      'API_KEYS_FILE: "plaintext-ke…" is not a SHA-256 hex digest (one per line; # comments)',
    ]);
  });

  test("LOG_LEVEL is one of pino's levels, default info", () => {
    expect(load({}).LOG_LEVEL).toBe("info");
    expect(load({ LOG_LEVEL: "warn" }).LOG_LEVEL).toBe("warn");
    expect(configError(() => load({ LOG_LEVEL: "verbose" })).problems).toEqual([
      'LOG_LEVEL="verbose": must be one of fatal, error, warn, info, debug, trace, silent',
    ]);
  });
});

describe("figures derived once from the settings", () => {
  test("rate limits in tokens per second, null where the rate is 0; the scanned_at window in ms", () => {
    const c = load({
      RATE_LIMIT_EVENTS_PER_SECOND: "50",
      RATE_LIMIT_BURST: "200",
      AUTH_FAILURES_PER_MINUTE: "6",
      AUTH_FAILURE_BURST: "3",
      SCANNED_AT_MAX_AGE_HOURS: "2",
      SCANNED_AT_MAX_FUTURE_MINUTES: "5",
      CLOCK_SKEW_MAX_HOURS: "3",
    });
    expect(c.rateLimits).toEqual({ perKey: { rate: 50, burst: 200 }, perIp: { rate: 0.1, burst: 3 } });
    expect(c.scannedAtWindow).toEqual({ maxAgeMs: 7_200_000, maxFutureMs: 300_000, maxClockSkewMs: 10_800_000 });
    expect(load({ RATE_LIMIT_EVENTS_PER_SECOND: "0", AUTH_FAILURES_PER_MINUTE: "0" }).rateLimits).toEqual({
      perKey: null,
      perIp: null,
    });
  });
});

describe("request-body budget", () => {
  test("MAX_BODY_BYTES_IN_FLIGHT is a positive integer of at least MAX_BODY_BYTES", () => {
    expect(load({ MAX_BODY_BYTES_IN_FLIGHT: "1048576" }).MAX_BODY_BYTES_IN_FLIGHT).toBe(1048576);
    expect(() => load({ MAX_BODY_BYTES_IN_FLIGHT: "lots" })).toThrow(
      'MAX_BODY_BYTES_IN_FLIGHT="lots": must be an integer',
    );
    expect(() => load({ MAX_BODY_BYTES_IN_FLIGHT: "0" })).toThrow('MAX_BODY_BYTES_IN_FLIGHT="0": must be >= 1');
    const error = (() => {
      try {
        load({ MAX_BODY_BYTES: "65536", MAX_BODY_BYTES_IN_FLIGHT: "65535" });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      "MAX_BODY_BYTES_IN_FLIGHT=65535: must be >= MAX_BODY_BYTES (65536), or the largest allowed body could never be admitted",
    ]);
  });
});

describe("producer durability cannot be configured away", () => {
  test("acks=all and idempotence are applied after every override", () => {
    const plain = load({});
    expect(plain.kafka.acks).toBe("all");
    expect(plain.kafka["enable.idempotence"]).toBe(true);
    // The same durability spelled differently is accepted, and ours is what librdkafka gets last.
    const same = load({
      KAFKA_OPT_ACKS: "-1",
      KAFKA_OPT_REQUEST_REQUIRED_ACKS: "ALL",
      KAFKA_OPT_ENABLE_IDEMPOTENCE: "True",
    });
    expect(same.kafka.acks).toBe("all");
    expect(same.kafka["enable.idempotence"]).toBe(true);
  });

  test("a weaker KAFKA_OPT_ACKS, KAFKA_OPT_REQUEST_REQUIRED_ACKS or KAFKA_OPT_ENABLE_IDEMPOTENCE stops start-up, naming the variable", () => {
    const weak: [Record<string, string>, string][] = [
      [{ KAFKA_OPT_ACKS: "1" }, "KAFKA_OPT_ACKS=1: must be all"],
      [{ KAFKA_OPT_ACKS: "0" }, "KAFKA_OPT_ACKS=0: must be all"],
      [{ KAFKA_OPT_ACKS: "" }, "KAFKA_OPT_ACKS=: must be all"],
      [{ KAFKA_OPT_REQUEST_REQUIRED_ACKS: "1" }, "KAFKA_OPT_REQUEST_REQUIRED_ACKS=1: must be all"],
      [{ KAFKA_OPT_ENABLE_IDEMPOTENCE: "false" }, "KAFKA_OPT_ENABLE_IDEMPOTENCE=false: must be true"],
      [{ KAFKA_OPT_ENABLE_IDEMPOTENCE: "0" }, "KAFKA_OPT_ENABLE_IDEMPOTENCE=0: must be true"],
    ];
    for (const [env, named] of weak) {
      let error: unknown;
      try {
        load(env);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems).toHaveLength(1);
      expect((error as ConfigError).problems[0]).toStartWith(named);
    }
    // Every offending variable is named at once.
    try {
      load({ KAFKA_OPT_ACKS: "1", KAFKA_OPT_ENABLE_IDEMPOTENCE: "false" });
      throw new Error("expected a ConfigError");
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems.map((p) => p.split(":")[0])).toEqual([
        "KAFKA_OPT_ACKS=1",
        "KAFKA_OPT_ENABLE_IDEMPOTENCE=false",
      ]);
    }
  });
});

describe("client IP", () => {
  const resolve = clientIpResolver(["10.0.0.1", "10.0.0.2"]);
  test("an untrusted peer's X-Forwarded-For is ignored", () => {
    expect(resolve("192.0.2.1", "203.0.113.5")).toBe("192.0.2.1");
  });
  test("behind trusted proxies, the rightmost untrusted hop is the client", () => {
    expect(resolve("10.0.0.1", "1.1.1.1, 203.0.113.5, 10.0.0.2")).toBe("203.0.113.5");
    expect(resolve("10.0.0.1", "10.0.0.2")).toBe("10.0.0.2");
    expect(resolve("10.0.0.1", undefined)).toBe("10.0.0.1");
    expect(resolve(null, "1.2.3.4")).toBeNull();
    expect(resolve("10.0.0.1", "1.1.1.1, not-an-ip")).toBe("10.0.0.1");
  });
  test("CIDRs, IPv6 and IPv4-mapped peers: a dual-stack socket reports ::ffff:10.0.0.1 for 10.0.0.1", () => {
    const cidr = clientIpResolver(["10.0.0.0/8", "fd00:1::/32"]);
    expect(cidr("10.200.3.4", "203.0.113.5")).toBe("203.0.113.5");
    expect(cidr("::ffff:10.200.3.4", "203.0.113.5")).toBe("203.0.113.5");
    expect(cidr("::FFFF:10.200.3.4", "203.0.113.5")).toBe("203.0.113.5");
    expect(cidr("::ffff:a01:203", "203.0.113.5")).toBe("203.0.113.5"); // the same, in hex
    expect(cidr("fd00:1:ffff::9", "2001:db8::7")).toBe("2001:db8::7");
    // Hops inside the ranges are proxies too: the rightmost one outside is the client.
    expect(cidr("10.0.0.1", "198.51.100.1, 203.0.113.5, 10.9.9.9, ::ffff:10.1.1.1")).toBe("203.0.113.5");
    // Just outside each range: the peer is the client, its header ignored.
    for (const peer of ["11.0.0.1", "9.255.255.255", "::ffff:11.0.0.1", "fd00:2::1", "::1", "127.0.0.1"]) {
      expect(cidr(peer, "203.0.113.5")).toBe(peer);
    }
    // A mapped entry trusts the IPv4 peer, and the reverse.
    expect(clientIpResolver(["::ffff:10.0.0.1"])("10.0.0.1", "203.0.113.5")).toBe("203.0.113.5");
    expect(clientIpResolver(["::ffff:10.0.0.0/104"])("10.3.0.1", "203.0.113.5")).toBe("203.0.113.5");
    expect(clientIpResolver(["10.0.0.1"])("::ffff:10.0.0.1", "203.0.113.5")).toBe("203.0.113.5");
    expect(clientIpResolver(["10.0.0.1"])("::ffff:10.0.0.2", "203.0.113.5")).toBe("::ffff:10.0.0.2");
  });
  test("every peer of a mix of families and ranges is matched right, many times over (the cost is in bench/security-cost.ts)", () => {
    const trusted = new TrustedProxies(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]);
    const peers = ["10.1.2.3", "203.0.113.9", "::ffff:192.168.1.1", "172.31.255.255"];
    let hits = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) if (trusted.has(peers[i & 3] as string)) hits++;
    expect(hits).toBe(n * 0.75);
  });
});

describe("where client addresses come from", () => {
  test("TRUSTED_PROXIES: each bad entry is named, with what is wrong", () => {
    const problems = configError(() =>
      load({ TRUSTED_PROXIES: "10.0.0.1,10.0.0.0/33,ingress.local,10.0.0.5/8,0.0.0.0/0,fd00::1/64,fe80::1%eth0" }),
    ).problems;
    expect(problems).toHaveLength(1);
    const [problem] = problems as [string];
    expect(problem).toStartWith("TRUSTED_PROXIES=");
    for (const named of [
      '"10.0.0.0/33" has a prefix length above 32 (IPv4)',
      '"ingress.local" is not an IP address or a CIDR',
      '"10.0.0.5/8" has bits set past its prefix length: did you mean 10.0.0.0/8?',
      '"0.0.0.0/0" trusts every address',
      '"fd00::1/64" has bits set past its prefix length: did you mean fd00::/64?',
      '"fe80::1%eth0" has a zone',
    ]) {
      expect(problem).toContain(named);
    }
    expect(problem).not.toContain('"10.0.0.1"');
    expect(load({ TRUSTED_PROXIES: "10.0.0.0/8, 192.0.2.7, ::ffff:10.0.0.0/104, fd00::/8" }).TRUSTED_PROXIES).toEqual([
      "10.0.0.0/8",
      "192.0.2.7",
      "::ffff:10.0.0.0/104",
      "fd00::/8",
    ]);
  });

  test("a non-loopback HOST needs TRUSTED_PROXIES or CLIENTS_CONNECT_DIRECTLY=true, not both", () => {
    for (const host of ["0.0.0.0", "::", "10.1.2.3", "api.internal"]) {
      const [problem] = configError(() => load({ HOST: host })).problems as [string];
      expect(problem).toStartWith(`HOST=${JSON.stringify(host)}: listening beyond loopback needs TRUSTED_PROXIES`);
      expect(problem).toContain("CLIENTS_CONNECT_DIRECTLY=true");
      expect(load({ HOST: host, TRUSTED_PROXIES: "10.0.0.0/8" }).HOST).toBe(host);
      expect(load({ HOST: host, CLIENTS_CONNECT_DIRECTLY: "true" }).CLIENTS_CONNECT_DIRECTLY).toBe(true);
    }
    for (const host of ["127.0.0.1", "127.0.0.2", "::1", "localhost"]) {
      expect(isLoopbackHost(host)).toBe(true);
      expect(load({ HOST: host }).HOST).toBe(host);
    }
    expect(isLoopbackHost("128.0.0.1")).toBe(false);
    expect(configError(() => load({ CLIENTS_CONNECT_DIRECTLY: "true", TRUSTED_PROXIES: "10.0.0.1" })).problems).toEqual(
      [
        "CLIENTS_CONNECT_DIRECTLY=true: not allowed with TRUSTED_PROXIES (peers outside TRUSTED_PROXIES are already taken as clients): set one or the other",
      ],
    );
  });
});

describe("JWT", () => {
  test("off unless a key source is set; then issuer and audience are required", () => {
    expect(load({}).jwt).toBeNull();
    expect(configError(() => load({ JWT_JWKS_URL: "https://idp.example/jwks" })).problems).toEqual([
      "JWT_ISSUER: required when JWT_JWKS_URL or JWT_KEY_FILES is set",
      "JWT_AUDIENCE: required when JWT_JWKS_URL or JWT_KEY_FILES is set",
    ]);
    const c = load({
      JWT_JWKS_URL: "https://idp.example/jwks",
      JWT_ISSUER: "https://idp.example",
      JWT_AUDIENCE: "edge",
    });
    expect(c.jwt).toMatchObject({
      algorithms: ["RS256", "ES256", "EdDSA"],
      clockSkewSeconds: 30,
      tenantClaim: "qr_prefix",
    });
    // JWT alone is a key source: no API key needed.
    expect(() =>
      loadServerConfig({ API_KEYS_DB: "false", JWT_JWKS_URL: "https://i/j", JWT_ISSUER: "i", JWT_AUDIENCE: "a" }),
    ).not.toThrow();
  });

  test("JWKS over https only (http to a loopback host), a cooldown of at least 5 s, a bounded lifetime, no global tokens by default", () => {
    const env = { JWT_ISSUER: "i", JWT_AUDIENCE: "a" };
    for (const url of [
      "http://idp.example/jwks",
      "http://10.0.0.5/jwks",
      "http://127.0.0.1.evil.example/jwks",
      "ftp://idp/jwks",
    ]) {
      expect(configError(() => load({ ...env, JWT_JWKS_URL: url })).problems).toEqual([
        `JWT_JWKS_URL=${JSON.stringify(url)}: must be https:// (http:// only to a loopback host: 127.0.0.0/8, ::1, localhost), or anyone on the path could swap the keys and mint tokens`,
      ]);
    }
    for (const url of [
      "https://idp.example/jwks",
      "http://127.0.0.1:8081/jwks",
      "http://[::1]:8081/jwks",
      "http://localhost/jwks",
    ]) {
      expect(load({ ...env, JWT_JWKS_URL: url }).jwt?.jwksUrl).toBe(url);
    }
    // 0 would let every made-up kid trigger a fetch of the JWKS.
    expect(configError(() => load({ JWT_JWKS_COOLDOWN_SECONDS: "0" })).problems).toEqual([
      'JWT_JWKS_COOLDOWN_SECONDS="0": must be >= 5',
    ]);
    expect(configError(() => load({ JWT_MAX_LIFETIME_SECONDS: "2592000" })).problems).toEqual([
      'JWT_MAX_LIFETIME_SECONDS="2592000": must be <= 604800',
    ]);
    expect(load({ ...env, JWT_JWKS_URL: "https://idp.example/jwks" }).jwt).toMatchObject({
      jwksCooldownSeconds: 30,
      maxLifetimeSeconds: 86_400,
      allowGlobalTokens: false,
    });
    expect(load({ ...env, JWT_JWKS_URL: "https://i/j", JWT_ALLOW_GLOBAL_TOKENS: "true" }).jwt?.allowGlobalTokens).toBe(
      true,
    );
  });

  test("the algorithm allowlist refuses none and HS*", () => {
    for (const alg of ["none", "HS256", "RS256,HS512"]) {
      expect(configError(() => load({ JWT_ALGORITHMS: alg })).problems[0]).toStartWith(
        `JWT_ALGORITHMS=${JSON.stringify(alg)}: must be a comma-separated subset of RS256`,
      );
    }
    expect(load({ JWT_ALGORITHMS: "ES384,PS256" }).JWT_ALGORITHMS).toEqual(["ES384", "PS256"]);
  });

  test("key files: PEM public keys (kid = file name) and JWK/JWKS; private and symmetric keys are refused", () => {
    const dir = mkdtempSync(join(tmpdir(), "jwt-"));
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const write = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const pem = write("idp-2026.pem", publicKey.export({ type: "spki", format: "pem" }).toString());
    const jwks = write("jwks.json", JSON.stringify({ keys: [{ ...publicKey.export({ format: "jwk" }), kid: "a" }] }));
    const env = { JWT_ISSUER: "i", JWT_AUDIENCE: "a" };
    const keys = load({ ...env, JWT_KEY_FILES: `${pem},${jwks}` }).jwt?.keys;
    expect(keys?.map((k) => [k.kid, k.kty, k.crv])).toEqual([
      ["idp-2026", "EC", "P-256"],
      ["a", "EC", "P-256"],
    ]);
    const bad = {
      private: write("private.pem", privateKey.export({ type: "pkcs8", format: "pem" }).toString()),
      privateJwk: write("private.json", JSON.stringify(privateKey.export({ format: "jwk" }))),
      oct: write("oct.json", JSON.stringify({ kty: "oct", k: "c2VjcmV0" })),
      garbage: write("garbage.txt", "hello"),
    };
    expect(configError(() => load({ ...env, JWT_KEY_FILES: Object.values(bad).join(",") })).problems).toEqual([
      `JWT_KEY_FILES: "${bad.private}": is a private key: give the public key`,
      `JWT_KEY_FILES: "${bad.privateJwk}": holds a private key (it has d): give the public key`,
      `JWT_KEY_FILES: "${bad.oct}": holds a symmetric (oct) key: only public keys are accepted`,
      `JWT_KEY_FILES: "${bad.garbage}": is neither a PEM public key nor JSON (a JWK or a JWKS)`,
    ]);
  });
});
