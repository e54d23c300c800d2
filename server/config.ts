// The edge server's configuration, resolved once at start-up: the environment, validated, then
// defaults; then the API keys (API_KEY_SHA256 and API_KEYS_FILE) and the producer's settings.
// docs/operations.md documents every variable; test/docs/config-docs.test.ts keeps it in step.
import { createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIPv4 } from "node:net";
import { basename } from "node:path";
import type { JWK } from "jose";
import * as v from "valibot";
import {
  ConfigError,
  DURABLE_PRODUCER,
  KafkaSecurityEntries,
  type MetricsAuth,
  MetricsAuthEntries,
  assertDurableProducer,
  bool,
  int,
  kafkaOverrides,
  kafkaSecurity,
  list,
  loadConfig,
  loadMetricsAuth,
  logLevel,
  str,
} from "../shared/config.ts";
import { localStack } from "../shared/local-stack.ts";
import {
  CLOCK_SKEW_MAX_HOURS,
  KafkaBrokerEntries,
  SCANNED_AT_MAX_AGE_HOURS,
  ScansTopicEntries,
} from "../shared/pipeline-config.ts";
import { TracingConfigEntries } from "../shared/tracing.ts";
import type { BucketLimit } from "./rate-limit.ts";
import { isLoopbackHost, trustedProxyProblems } from "./trusted-proxies.ts";

/** Asymmetric JWS algorithms only: "none" and HS* (shared secrets, the RS/HS confusion) are never accepted. */
export const JWT_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
] as const;
const DEFAULT_JWT_ALGORITHMS = ["RS256", "ES256", "EdDSA"];

const SHA256_HEX = /^[0-9a-f]{64}$/i;
const sha256Hex = v.pipe(
  list(),
  v.check((xs) => xs.every((x) => SHA256_HEX.test(x)), "must be comma-separated SHA-256 hex digests"),
);

/** An origin as browsers send it: scheme://host[:port], no path; or "*" (any origin). */
const ORIGIN = /^(\*|https?:\/\/[^/\s]+)$/;

/** Where the client's address goes in the stored event (the limits always see the full one). */
export const CLIENT_IP_STORAGE = ["full", "truncated", "none"] as const;

export const ServerConfigSchema = v.object({
  HOST: str("127.0.0.1"),
  PORT: int(8080, 0, 65535),
  METRICS_HOST: str("127.0.0.1"),
  METRICS_PORT: int(9464, 0, 65535),
  ...MetricsAuthEntries,
  ...KafkaBrokerEntries,
  ...KafkaSecurityEntries,
  ...ScansTopicEntries,
  MAX_BODY_BYTES: int(1024 * 1024, 1),
  /** Request-body bytes admitted at once across all connections; past it, 503 + Retry-After. */
  MAX_BODY_BYTES_IN_FLIGHT: int(64 * 1024 * 1024, 1),
  MAX_EVENTS_PER_REQUEST: int(1000, 1),
  SCANNED_AT_MAX_AGE_HOURS,
  SCANNED_AT_MAX_FUTURE_MINUTES: int(5, 0),
  CLOCK_SKEW_MAX_HOURS,
  API_KEY_SHA256: sha256Hex,
  API_KEYS_FILE: v.optional(v.string()),
  AUTH_DISABLED: bool(false),
  /** Managed keys from the api_keys table of DATABASE_URL (`bun run keys`), reloaded every API_KEYS_REFRESH_SECONDS. */
  API_KEYS_DB: bool(true),
  API_KEYS_REFRESH_SECONDS: int(5, 1, 3600),
  JWT_JWKS_URL: v.optional(v.pipe(v.string(), v.url("must be a URL"))),
  JWT_KEY_FILES: list(),
  JWT_ISSUER: v.optional(v.string()),
  JWT_AUDIENCE: v.optional(v.string()),
  JWT_ALGORITHMS: v.pipe(
    list(DEFAULT_JWT_ALGORITHMS.join(",")),
    v.check(
      (xs) => xs.length > 0 && xs.every((x) => (JWT_ALGORITHMS as readonly string[]).includes(x)),
      `must be a comma-separated subset of ${JWT_ALGORITHMS.join(", ")} (no "none", no HS*: a shared secret would let anyone holding it mint tokens)`,
    ),
  ),
  JWT_CLOCK_SKEW_SECONDS: int(30, 0, 300),
  JWT_TENANT_CLAIM: str("qr_prefix"),
  /** A token without the tenant claim is refused unless this is true: then it may touch every tenant. */
  JWT_ALLOW_GLOBAL_TOKENS: bool(false),
  /** A token whose exp is further than this from now is refused: a JWT cannot be revoked before it expires. */
  JWT_MAX_LIFETIME_SECONDS: int(86_400, 60, 7 * 86_400),
  /** At least 5 s, so made-up kids cannot make every request fetch the JWKS. */
  JWT_JWKS_COOLDOWN_SECONDS: int(30, 5, 3600),
  /** Peers whose X-Forwarded-For names the client: addresses and CIDRs (server/trusted-proxies.ts). */
  TRUSTED_PROXIES: v.pipe(
    list(),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const problems = trustedProxyProblems(dataset.value);
      if (problems.length) addIssue({ message: problems.join("; ") });
    }),
  ),
  /** No proxy in front: each TCP peer is a client. Required on a non-loopback HOST without TRUSTED_PROXIES. */
  CLIENTS_CONNECT_DIRECTLY: bool(false),
  /** Browser origins allowed to call the API (CORS); none by default, "*" for any. */
  CORS_ORIGINS: v.pipe(
    list(),
    v.check((xs) => xs.every((x) => ORIGIN.test(x)), "must be comma-separated origins (https://host[:port]) or *"),
    v.check((xs) => !xs.includes("*") || xs.length === 1, "* stands alone (it already allows every origin)"),
  ),
  CORS_ALLOW_CREDENTIALS: bool(false),
  CORS_MAX_AGE_SECONDS: int(600, 0, 86_400),
  /** Per API key, in events per second (a request costs max(1, its events)); 0 = no limit. */
  RATE_LIMIT_EVENTS_PER_SECOND: int(100_000, 0),
  RATE_LIMIT_BURST: int(200_000, 1),
  /** Per client address, failed authentications (401) per minute before 429; 0 = no limit. */
  AUTH_FAILURES_PER_MINUTE: int(60, 0),
  AUTH_FAILURE_BURST: int(20, 1),
  /**
   * How often each replica records its heartbeat in Postgres (edge_replicas) and recounts the live
   * replicas (seen within 3 intervals), whose count divides the limits above (server/replicas.ts).
   */
  RATE_LIMIT_HEARTBEAT_SECONDS: int(5, 1, 60),
  /** Buckets kept per scope (key, ip); idle ones are dropped first. */
  RATE_LIMIT_MAX_BUCKETS: int(100_000, 100),
  CLIENT_IP_STORAGE: v.optional(v.picklist(CLIENT_IP_STORAGE, "must be full, truncated or none"), "full"),
  KAFKA_DELIVERY_TIMEOUT_MS: int(10_000, 1_000),
  KAFKA_LINGER_MS: int(5, 0),
  /**
   * The Kafka key of each event: none (the default) lets the producer fill one partition at a time
   * (fewer, larger ProduceRequests: less CPU per event end to end, docs/benchmarks.md); qr_id keeps
   * a QR code's scans in order on one partition; scanner_id a scanner's. docs/operations.md, "The
   * Kafka record", has the trade-off.
   */
  KAFKA_PARTITION_KEY: v.optional(v.picklist(["none", "qr_id", "scanner_id"]), "none"),
  KAFKA_COMPRESSION: v.optional(v.picklist(["none", "gzip", "snappy", "lz4", "zstd"]), "lz4"),
  RETRY_AFTER_SECONDS: int(2, 1),
  /** The stats route's pool, as a member of qrscan_edge (docs/security.md, "Database roles"). */
  DATABASE_URL: str(localStack().edgeDatabaseUrl),
  DB_POOL_MAX: int(4, 1, 100),
  /**
   * The key refresh's connection (one per process): pgbouncer's `<database>_keys` alias, whose pool
   * the stats route cannot exhaust. Default DATABASE_URL (then they share pgbouncer's pool).
   */
  API_KEYS_DATABASE_URL: v.optional(v.string()),
  DRAIN_TIMEOUT_MS: int(10_000, 100),
  /**
   * On SIGTERM, how long /ready answers 503 while the server still accepts and serves, so a load
   * balancer's health check takes it out of rotation before its listener closes. The default is
   * the shipped HAProxy config's time to mark a server down (deploy/haproxy/edge.cfg: a check every
   * 500 ms, down after 2 failures, each check up to 1 s) with room for a busy machine; 0 closes the
   * listener at once (no balancer in front). SIGINT (Ctrl-C) never waits.
   */
  DRAIN_DELAY_MS: int(3_000, 0, 60_000),
  /**
   * Whether /ready answers 503 while the producer is not connected to Kafka. false keeps a server
   * that has connected once in its load balancer's rotation during a Kafka outage, answering
   * POST /v1/scans with 503 and Retry-After, which http_requests_total counts (Kubernetes sets it:
   * docs/deployment.md); a new server still waits for its first connection.
   */
  READY_REQUIRES_KAFKA: bool(true),
  LOG_LEVEL: logLevel(),
  ...TracingConfigEntries,
});

export type ServerConfig = v.InferOutput<typeof ServerConfigSchema> & {
  /** SHA-256 hex digests of the accepted API keys: API_KEY_SHA256, then API_KEYS_FILE's lines. */
  apiKeyHashes: string[];
  /** JWT bearer tokens, or null when neither JWT_JWKS_URL nor JWT_KEY_FILES is set. */
  jwt: JwtConfig | null;
  /**
   * librdkafka settings for the producer: ours, then KAFKA_OPT_* overrides, then the security
   * settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_CA_FILE), then DURABLE_PRODUCER (last).
   */
  kafka: Record<string, string | number | boolean>;
  /** GET /metrics' credentials; none = open. */
  metricsAuth: MetricsAuth;
  /**
   * The edge's rate limits (server/rate-limit.ts), in tokens per second: per key from
   * RATE_LIMIT_EVENTS_PER_SECOND/RATE_LIMIT_BURST, per address from AUTH_FAILURES_PER_MINUTE/
   * AUTH_FAILURE_BURST; null where the rate is 0 (that limit is off).
   */
  rateLimits: { perKey: BucketLimit | null; perIp: BucketLimit | null };
  /** scanned_at's accepted window in ms: SCANNED_AT_MAX_AGE_HOURS back, SCANNED_AT_MAX_FUTURE_MINUTES ahead. */
  scannedAtWindow: { maxAgeMs: number; maxFutureMs: number; maxClockSkewMs: number };
};

export interface JwtConfig {
  jwksUrl: string | null;
  /** Public keys from JWT_KEY_FILES (PEM or JWK or JWKS), as JWKs. */
  keys: JWK[];
  issuer: string;
  audience: string;
  algorithms: string[];
  clockSkewSeconds: number;
  /** The claim whose value becomes the token's QR-id prefix (its tenant). */
  tenantClaim: string;
  /** Whether a token without the tenant claim is accepted, for every tenant. */
  allowGlobalTokens: boolean;
  /** exp may be at most this far from now (plus the clock skew). */
  maxLifetimeSeconds: number;
  jwksCooldownSeconds: number;
}

export function loadServerConfig(env: Record<string, string | undefined> = process.env): ServerConfig {
  const c = loadConfig(ServerConfigSchema, env);
  // A body of MAX_BODY_BYTES must fit in the budget, or such requests would be refused forever.
  if (c.MAX_BODY_BYTES_IN_FLIGHT < c.MAX_BODY_BYTES) {
    throw new ConfigError([
      `MAX_BODY_BYTES_IN_FLIGHT=${c.MAX_BODY_BYTES_IN_FLIGHT}: must be >= MAX_BODY_BYTES (${c.MAX_BODY_BYTES}), or the largest allowed body could never be admitted`,
    ]);
  }
  // A browser never sends credentials to a wildcard origin, and the spec forbids answering so.
  if (c.CORS_ALLOW_CREDENTIALS && c.CORS_ORIGINS.includes("*")) {
    throw new ConfigError([
      "CORS_ALLOW_CREDENTIALS=true: not allowed with CORS_ORIGINS=* (list the origins that may send credentials)",
    ]);
  }
  assertClientAddressesKnown(c);
  // A 202 promises durability: an override that weakens acks=all or idempotence stops start-up.
  const overrides = kafkaOverrides(env);
  assertDurableProducer(overrides);
  const security = kafkaSecurity(c, overrides);
  return {
    ...c,
    apiKeyHashes: apiKeyHashes(c),
    jwt: jwtConfig(c),
    metricsAuth: loadMetricsAuth(c),
    rateLimits: {
      perKey:
        c.RATE_LIMIT_EVENTS_PER_SECOND > 0 ? { rate: c.RATE_LIMIT_EVENTS_PER_SECOND, burst: c.RATE_LIMIT_BURST } : null,
      perIp:
        c.AUTH_FAILURES_PER_MINUTE > 0 ? { rate: c.AUTH_FAILURES_PER_MINUTE / 60, burst: c.AUTH_FAILURE_BURST } : null,
    },
    scannedAtWindow: {
      maxAgeMs: c.SCANNED_AT_MAX_AGE_HOURS * 3_600_000,
      maxFutureMs: c.SCANNED_AT_MAX_FUTURE_MINUTES * 60_000,
      maxClockSkewMs: c.CLOCK_SKEW_MAX_HOURS * 3_600_000,
    },
    kafka: {
      "bootstrap.servers": c.KAFKA_BROKERS,
      "linger.ms": c.KAFKA_LINGER_MS,
      "compression.type": c.KAFKA_COMPRESSION,
      "message.timeout.ms": c.KAFKA_DELIVERY_TIMEOUT_MS,
      "statistics.interval.ms": 1_000,
      // librdkafka backs off reconnects up to 10 s by default; while the broker is down the edge
      // answers 503, so a shorter cap means the edge accepts again within ~1 s of its return.
      "reconnect.backoff.max.ms": 1_000,
      ...overrides,
      ...security,
      // Last, so no override can weaken it (a weaker one is refused above).
      ...DURABLE_PRODUCER,
    },
  };
}

/**
 * Beyond loopback, the operator must say where client addresses come from: behind a balancer whose
 * address is not trusted, every client would share its address, and the failed-authentication
 * limit of one would lock out all of them (and every stored client_ip would be the balancer's).
 */
function assertClientAddressesKnown(c: v.InferOutput<typeof ServerConfigSchema>): void {
  if (c.CLIENTS_CONNECT_DIRECTLY && c.TRUSTED_PROXIES.length > 0) {
    throw new ConfigError([
      "CLIENTS_CONNECT_DIRECTLY=true: not allowed with TRUSTED_PROXIES (peers outside TRUSTED_PROXIES are already taken as clients): set one or the other",
    ]);
  }
  if (isLoopbackHost(c.HOST) || c.TRUSTED_PROXIES.length > 0 || c.CLIENTS_CONNECT_DIRECTLY) return;
  throw new ConfigError([
    `HOST=${JSON.stringify(c.HOST)}: listening beyond loopback needs TRUSTED_PROXIES (the addresses or CIDRs of the balancer or ingress in front, e.g. 10.0.0.0/8) or CLIENTS_CONNECT_DIRECTLY=true (no proxy: each peer is a client); else a proxy's address would be every client's, and one client's failed authentications would lock out all of them`,
  ]);
}

/** The accepted keys' digests; no key at all is a start-up error unless AUTH_DISABLED=true. */
function apiKeyHashes(c: v.InferOutput<typeof ServerConfigSchema>): string[] {
  const hashes = [...c.API_KEY_SHA256];
  if (c.API_KEYS_FILE) {
    let text: string;
    try {
      text = readFileSync(c.API_KEYS_FILE, "utf8");
    } catch (error) {
      throw new ConfigError([
        `API_KEYS_FILE=${JSON.stringify(c.API_KEYS_FILE)}: cannot be read (${(error as Error).message})`,
      ]);
    }
    for (const line of text.split("\n")) {
      const h = line.trim();
      if (!h || h.startsWith("#")) continue;
      if (!SHA256_HEX.test(h)) {
        throw new ConfigError([
          `API_KEYS_FILE: "${h.slice(0, 12)}…" is not a SHA-256 hex digest (one per line; # comments)`,
        ]);
      }
      hashes.push(h);
    }
  }
  if (!c.AUTH_DISABLED && hashes.length === 0 && !c.API_KEYS_DB && !c.JWT_JWKS_URL && c.JWT_KEY_FILES.length === 0) {
    throw new ConfigError([
      "API_KEY_SHA256 / API_KEYS_FILE: no API keys configured and API_KEYS_DB=false and no JWT keys (or set AUTH_DISABLED=true for local demos)",
    ]);
  }
  return hashes;
}

/** JWT verification settings; issuer and audience are required once a key source is set. */
function jwtConfig(c: v.InferOutput<typeof ServerConfigSchema>): JwtConfig | null {
  if (!c.JWT_JWKS_URL && c.JWT_KEY_FILES.length === 0) return null;
  const problems: string[] = [];
  if (c.JWT_JWKS_URL && !jwksUrlAllowed(c.JWT_JWKS_URL)) {
    problems.push(
      `JWT_JWKS_URL=${JSON.stringify(c.JWT_JWKS_URL)}: must be https:// (http:// only to a loopback host: 127.0.0.0/8, ::1, localhost), or anyone on the path could swap the keys and mint tokens`,
    );
  }
  if (!c.JWT_ISSUER) problems.push("JWT_ISSUER: required when JWT_JWKS_URL or JWT_KEY_FILES is set");
  if (!c.JWT_AUDIENCE) problems.push("JWT_AUDIENCE: required when JWT_JWKS_URL or JWT_KEY_FILES is set");
  const keys: JWK[] = [];
  for (const file of c.JWT_KEY_FILES) {
    try {
      keys.push(...publicJwks(readFileSync(file, "utf8"), basename(file).replace(/\.[^.]*$/, "")));
    } catch (error) {
      problems.push(`JWT_KEY_FILES: ${JSON.stringify(file)}: ${(error as Error).message}`);
    }
  }
  if (problems.length) throw new ConfigError(problems);
  return {
    jwksUrl: c.JWT_JWKS_URL ?? null,
    keys,
    issuer: c.JWT_ISSUER as string,
    audience: c.JWT_AUDIENCE as string,
    algorithms: c.JWT_ALGORITHMS,
    clockSkewSeconds: c.JWT_CLOCK_SKEW_SECONDS,
    tenantClaim: c.JWT_TENANT_CLAIM,
    allowGlobalTokens: c.JWT_ALLOW_GLOBAL_TOKENS,
    maxLifetimeSeconds: c.JWT_MAX_LIFETIME_SECONDS,
    jwksCooldownSeconds: c.JWT_JWKS_COOLDOWN_SECONDS,
  };
}

/** https, or http to a loopback host (a test's or a sidecar's JWKS never leaves the machine). */
export function jwksUrlAllowed(url: string): boolean {
  const u = new URL(url);
  if (u.protocol === "https:") return true;
  if (u.protocol !== "http:") return false;
  const host = u.hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || (isIPv4(host) && host.startsWith("127."));
}

/**
 * A key file's public keys as JWKs: a PEM public key (SPKI), whose kid is `pemKid` (the file's
 * name without its extension), or a JWK, or a JWKS ({"keys": […]}) with their own kids.
 */
export function publicJwks(text: string, pemKid: string): JWK[] {
  const trimmed = text.trim();
  if (trimmed.startsWith("-----BEGIN")) {
    if (trimmed.includes("PRIVATE KEY")) throw new Error("is a private key: give the public key");
    return [{ ...(createPublicKey(trimmed).export({ format: "jwk" }) as JWK), kid: pemKid }];
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    throw new Error("is neither a PEM public key nor JSON (a JWK or a JWKS)");
  }
  const keys = (parsed as { keys?: unknown }).keys ?? [parsed];
  if (!Array.isArray(keys) || keys.length === 0) throw new Error("holds no keys");
  for (const k of keys as Record<string, unknown>[]) {
    if (typeof k?.kty !== "string") throw new Error("a key has no kty");
    if (k.kty === "oct") throw new Error("holds a symmetric (oct) key: only public keys are accepted");
    if ("d" in k) throw new Error("holds a private key (it has d): give the public key");
  }
  return keys as JWK[];
}
