// The edge server's configuration, resolved once at start-up: the environment, validated, then
// defaults; then the API keys (API_KEY_SHA256 and API_KEYS_FILE) and the producer's settings.
// docs/operations.md documents every variable; test/unit/config-docs.test.ts keeps it in step.
import { readFileSync } from "node:fs";
import * as v from "valibot";
import {
  ConfigError,
  DURABLE_PRODUCER,
  type MetricsAuth,
  MetricsAuthEntries,
  assertDurableProducer,
  bool,
  int,
  kafkaOverrides,
  list,
  loadConfig,
  loadMetricsAuth,
  logLevel,
  str,
} from "../shared/config.ts";
import { TOPICS, localStack } from "../shared/local-stack.ts";
import { TracingConfigEntries } from "../shared/tracing.ts";

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
  KAFKA_BROKERS: str(localStack().brokers),
  SCANS_TOPIC: str(TOPICS.scans.name),
  MAX_BODY_BYTES: int(1024 * 1024, 1),
  /** Request-body bytes admitted at once across all connections; past it, 503 + Retry-After. */
  MAX_BODY_BYTES_IN_FLIGHT: int(64 * 1024 * 1024, 1),
  MAX_EVENTS_PER_REQUEST: int(1000, 1),
  SCANNED_AT_MAX_AGE_HOURS: int(7 * 24, 1),
  SCANNED_AT_MAX_FUTURE_MINUTES: int(5, 0),
  API_KEY_SHA256: sha256Hex,
  API_KEYS_FILE: v.optional(v.string()),
  AUTH_DISABLED: bool(false),
  TRUSTED_PROXIES: list(),
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
  /** Replicas behind the balancer: each enforces 1/N of the rates and bursts above. */
  RATE_LIMIT_REPLICAS: int(1, 1, 1_000),
  /** Buckets kept per scope (key, ip); idle ones are dropped first. */
  RATE_LIMIT_MAX_BUCKETS: int(100_000, 100),
  CLIENT_IP_STORAGE: v.optional(v.picklist(CLIENT_IP_STORAGE, "must be full, truncated or none"), "full"),
  KAFKA_DELIVERY_TIMEOUT_MS: int(10_000, 1_000),
  KAFKA_LINGER_MS: int(2, 0),
  KAFKA_COMPRESSION: v.optional(v.picklist(["none", "gzip", "snappy", "lz4", "zstd"]), "lz4"),
  RETRY_AFTER_SECONDS: int(2, 1),
  DATABASE_URL: str(localStack().databaseUrl),
  DB_POOL_MAX: int(4, 1, 100),
  DRAIN_TIMEOUT_MS: int(10_000, 100),
  LOG_LEVEL: logLevel(),
  ...TracingConfigEntries,
});

export type ServerConfig = v.InferOutput<typeof ServerConfigSchema> & {
  /** SHA-256 hex digests of the accepted API keys: API_KEY_SHA256, then API_KEYS_FILE's lines. */
  apiKeyHashes: string[];
  /** librdkafka settings for the producer: ours, then KAFKA_OPT_* overrides, then DURABLE_PRODUCER (last). */
  kafka: Record<string, string | number | boolean>;
  /** GET /metrics' credentials; none = open. */
  metricsAuth: MetricsAuth;
};

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
  // A 202 promises durability: an override that weakens acks=all or idempotence stops start-up.
  const overrides = kafkaOverrides(env);
  assertDurableProducer(overrides);
  return {
    ...c,
    apiKeyHashes: apiKeyHashes(c),
    metricsAuth: loadMetricsAuth(c),
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
      // Last, so no override can weaken it (a weaker one is refused above).
      ...DURABLE_PRODUCER,
    },
  };
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
  if (!c.AUTH_DISABLED && hashes.length === 0) {
    throw new ConfigError([
      "API_KEY_SHA256 / API_KEYS_FILE: no API keys configured (or set AUTH_DISABLED=true for local demos)",
    ]);
  }
  return hashes;
}
