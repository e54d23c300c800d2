// Configuration from the environment, validated once at start-up with valibot. A wrong value stops
// the process with a message naming the variable; every setting has a default that works locally.
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

/** librdkafka properties from env: KAFKA_LINGER_MS=10 → {"linger.ms": "10"}. */
export function kafkaOverrides(env: Record<string, string | undefined> = process.env, prefix = "KAFKA_OPT_") {
  const out: Record<string, string> = {};
  for (const [k, value] of Object.entries(env)) {
    if (k.startsWith(prefix) && value !== undefined)
      out[k.slice(prefix.length).toLowerCase().replaceAll("_", ".")] = value;
  }
  return out;
}
