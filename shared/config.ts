// Configuration from the environment, validated once at start-up with valibot. A wrong value stops
// the process with a message naming the variable; every setting has a default that works locally.
import { readFileSync } from "node:fs";
import * as v from "valibot";

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/** An integer from an env string, within [min, max]. */
export const int = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  v.pipe(
    v.optional(v.string(), String(fallback)),
    v.transform((s) => s.trim()),
    v.regex(/^-?\d+$/, "must be an integer"),
    v.transform(Number),
    v.minValue(min, `must be >= ${min}`),
    v.maxValue(max, `must be <= ${max}`),
  );

export const bool = (fallback: boolean) =>
  v.pipe(
    v.optional(v.string(), String(fallback)),
    v.transform((s) => s.trim().toLowerCase()),
    v.picklist(["true", "false", "1", "0", "yes", "no"], "must be true or false"),
    v.transform((s) => s === "true" || s === "1" || s === "yes"),
  );

export const str = (fallback: string) => v.optional(v.string(), fallback);

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** LOG_LEVEL, in every process's schema. */
export const logLevel = (fallback: LogLevel = "info") =>
  v.optional(v.picklist(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(", ")}`), fallback);

/** A comma-separated list (empty entries dropped). */
export const list = (fallback = "") =>
  v.pipe(
    v.optional(v.string(), fallback),
    v.transform((s) =>
      s
        .split(",")
        .map((x) => x.trim())
        .filter(Boolean),
    ),
  );

/** Parses `env` with an object schema whose keys are the variable names. */
export function loadConfig<S extends v.ObjectSchema<v.ObjectEntries, v.ErrorMessage<v.ObjectIssue> | undefined>>(
  schema: S,
  env: Record<string, string | undefined> = process.env,
): v.InferOutput<S> {
  const picked: Record<string, string | undefined> = {};
  for (const key of Object.keys(schema.entries)) picked[key] = env[key] === "" ? undefined : env[key];
  const result = v.safeParse(schema, picked);
  if (result.success) return result.output;
  throw new ConfigError(
    result.issues.map((i) => {
      const name = i.path?.[0]?.key;
      return `${String(name)}=${JSON.stringify(picked[String(name)])}: ${i.message}`;
    }),
  );
}

/**
 * librdkafka properties from env: KAFKA_OPT_BATCH_NUM_MESSAGES=20000 → {"batch.num.messages": "20000"}.
 * Applied after the process's own settings (so KAFKA_OPT_LINGER_MS would win over the server's
 * KAFKA_LINGER_MS), and before the durability settings, which nothing overrides.
 */
export function kafkaOverrides(env: Record<string, string | undefined> = process.env, prefix = "KAFKA_OPT_") {
  const out: Record<string, string> = {};
  for (const [k, value] of Object.entries(env)) {
    if (k.startsWith(prefix) && value !== undefined)
      out[k.slice(prefix.length).toLowerCase().replaceAll("_", ".")] = value;
  }
  return out;
}

/**
 * The producer settings a 202 (or a dead letter's commit) depends on: every in-sync replica has
 * the message, written once. An override that weakens them (KAFKA_OPT_ACKS=1, …) is a start-up
 * error, not a silent downgrade of the promise.
 */
export const DURABLE_PRODUCER = { acks: "all", "enable.idempotence": true } as const;

export function assertDurableProducer(settings: Record<string, string | number | boolean>): void {
  const problems: string[] = [];
  for (const key of ["acks", "request.required.acks"]) {
    const value = settings[key];
    if (value !== undefined && !["all", "-1"].includes(String(value).trim().toLowerCase())) {
      problems.push(
        `KAFKA_OPT_${key.toUpperCase().replaceAll(".", "_")}=${value}: must be all (a 202 means every in-sync replica has the event)`,
      );
    }
  }
  const idempotence = settings["enable.idempotence"];
  if (idempotence !== undefined && String(idempotence).trim().toLowerCase() !== "true") {
    problems.push(`KAFKA_OPT_ENABLE_IDEMPOTENCE=${idempotence}: must be true (retries must not write an event twice)`);
  }
  if (problems.length) throw new ConfigError(problems);
}

/**
 * How a process authenticates to Kafka (server, worker, supervisor and the operator commands): one
 * definition, validated at start by each process's schema. sasl_ssl is SCRAM over TLS, the
 * password read from a file so it is never in the environment; ssl is TLS without a principal.
 */
export const KAFKA_SECURITY_PROTOCOLS = ["plaintext", "ssl", "sasl_ssl"] as const;
export const KAFKA_SASL_MECHANISMS = ["SCRAM-SHA-512", "SCRAM-SHA-256"] as const;

export const KafkaSecurityEntries = {
  KAFKA_SECURITY_PROTOCOL: v.optional(
    v.picklist(KAFKA_SECURITY_PROTOCOLS, `must be one of ${KAFKA_SECURITY_PROTOCOLS.join(", ")}`),
    "plaintext",
  ),
  KAFKA_SASL_MECHANISM: v.optional(
    v.picklist(KAFKA_SASL_MECHANISMS, `must be one of ${KAFKA_SASL_MECHANISMS.join(", ")}`),
    "SCRAM-SHA-512",
  ),
  KAFKA_SASL_USERNAME: v.optional(v.string()),
  /** A file holding the SCRAM password (one line). */
  KAFKA_SASL_PASSWORD_FILE: v.optional(v.string()),
  /** The CA certificate(s) the brokers' certificates must chain to (PEM); default: the system's. */
  KAFKA_SSL_CA_FILE: v.optional(v.string()),
};

/**
 * librdkafka settings the variables above own: a KAFKA_OPT_* override of one would bypass their
 * checks (a password in the environment, certificate verification turned off).
 */
const KAFKA_SECURITY_KEYS = [
  "security.protocol",
  "sasl.mechanism",
  "sasl.mechanisms",
  "sasl.username",
  "sasl.password",
  "ssl.ca.location",
  "ssl.ca.pem",
  "enable.ssl.certificate.verification",
  "ssl.endpoint.identification.algorithm",
];

/**
 * The librdkafka settings of KafkaSecurityEntries (the password read from its file once, here),
 * applied after the KAFKA_OPT_* overrides, which may not set any of them.
 */
export function kafkaSecurity(
  c: {
    KAFKA_SECURITY_PROTOCOL: (typeof KAFKA_SECURITY_PROTOCOLS)[number];
    KAFKA_SASL_MECHANISM: (typeof KAFKA_SASL_MECHANISMS)[number];
    KAFKA_SASL_USERNAME?: string;
    KAFKA_SASL_PASSWORD_FILE?: string;
    KAFKA_SSL_CA_FILE?: string;
  },
  overrides: Record<string, string> = {},
): Record<string, string> {
  const problems: string[] = [];
  for (const key of KAFKA_SECURITY_KEYS) {
    if (key in overrides) {
      problems.push(
        `KAFKA_OPT_${key.toUpperCase().replaceAll(".", "_")}: not allowed; use KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_CA_FILE`,
      );
    }
  }
  const sasl = c.KAFKA_SECURITY_PROTOCOL === "sasl_ssl";
  if (sasl && !c.KAFKA_SASL_USERNAME)
    problems.push("KAFKA_SASL_USERNAME: required with KAFKA_SECURITY_PROTOCOL=sasl_ssl");
  if (sasl && !c.KAFKA_SASL_PASSWORD_FILE) {
    problems.push("KAFKA_SASL_PASSWORD_FILE: required with KAFKA_SECURITY_PROTOCOL=sasl_ssl");
  }
  if (!sasl && (c.KAFKA_SASL_USERNAME || c.KAFKA_SASL_PASSWORD_FILE)) {
    problems.push(
      `KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD_FILE: set, but KAFKA_SECURITY_PROTOCOL=${c.KAFKA_SECURITY_PROTOCOL} would not send them (set it to sasl_ssl)`,
    );
  }
  if (c.KAFKA_SECURITY_PROTOCOL === "plaintext" && c.KAFKA_SSL_CA_FILE) {
    problems.push(
      "KAFKA_SSL_CA_FILE: set, but KAFKA_SECURITY_PROTOCOL=plaintext does not use TLS (set it to sasl_ssl)",
    );
  }
  if (problems.length) throw new ConfigError(problems);
  if (c.KAFKA_SECURITY_PROTOCOL === "plaintext") return { "security.protocol": "plaintext" };
  const settings: Record<string, string> = {
    "security.protocol": c.KAFKA_SECURITY_PROTOCOL,
    // librdkafka's default since 2.0, stated so that no build or override can drop it.
    "enable.ssl.certificate.verification": "true",
    "ssl.endpoint.identification.algorithm": "https",
  };
  if (c.KAFKA_SSL_CA_FILE) {
    const ca = readSecretFile("KAFKA_SSL_CA_FILE", c.KAFKA_SSL_CA_FILE);
    if (!ca.includes("-----BEGIN CERTIFICATE-----")) {
      throw new ConfigError([`KAFKA_SSL_CA_FILE=${JSON.stringify(c.KAFKA_SSL_CA_FILE)}: holds no PEM certificate`]);
    }
    settings["ssl.ca.location"] = c.KAFKA_SSL_CA_FILE;
  }
  if (sasl) {
    settings["sasl.mechanisms"] = c.KAFKA_SASL_MECHANISM;
    settings["sasl.username"] = c.KAFKA_SASL_USERNAME as string;
    settings["sasl.password"] = readSecretFile("KAFKA_SASL_PASSWORD_FILE", c.KAFKA_SASL_PASSWORD_FILE as string);
  }
  return settings;
}

/** The metrics listener's optional credentials (server, worker and supervisor schemas). */
export const MetricsAuthEntries = {
  /** A file holding the bearer token Prometheus must send to GET /metrics. */
  METRICS_BEARER_TOKEN_FILE: v.optional(v.string()),
  /** A file holding `user:password` for HTTP basic auth on GET /metrics. */
  METRICS_BASIC_AUTH_FILE: v.optional(v.string()),
};

/** What GET /metrics accepts: a bearer token and/or `user:password`; none set means open. */
export interface MetricsAuth {
  bearerToken?: string;
  basic?: string;
}

function readSecretFile(variable: string, path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError([`${variable}=${JSON.stringify(path)}: cannot be read (${(error as Error).message})`]);
  }
  const secret = text.trim();
  if (!secret) throw new ConfigError([`${variable}=${JSON.stringify(path)}: the file is empty`]);
  return secret;
}

/** Reads the files METRICS_BEARER_TOKEN_FILE and METRICS_BASIC_AUTH_FILE name (once, at start-up). */
export function loadMetricsAuth(c: {
  METRICS_BEARER_TOKEN_FILE?: string;
  METRICS_BASIC_AUTH_FILE?: string;
}): MetricsAuth {
  const auth: MetricsAuth = {};
  if (c.METRICS_BEARER_TOKEN_FILE)
    auth.bearerToken = readSecretFile("METRICS_BEARER_TOKEN_FILE", c.METRICS_BEARER_TOKEN_FILE);
  if (c.METRICS_BASIC_AUTH_FILE) {
    auth.basic = readSecretFile("METRICS_BASIC_AUTH_FILE", c.METRICS_BASIC_AUTH_FILE);
    if (!/^[^:]+:.+$/.test(auth.basic)) {
      throw new ConfigError([
        `METRICS_BASIC_AUTH_FILE=${JSON.stringify(c.METRICS_BASIC_AUTH_FILE)}: must hold user:password on one line`,
      ]);
    }
  }
  return auth;
}
