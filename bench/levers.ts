// The efficiency levers, as named configurations of the pipeline that bench/e2e.ts runs side by
// side in one run (`--variants`). A variant is the environment the server and the workers start
// with, on top of the checkout's defaults, and optionally an earlier revision of the code (run
// from a temporary git worktree), so "before" is the real earlier code, not a re-creation of it.
//
// The levers are cumulative in the order listed, from "before" to "after": each variant adds one
// to the one before it, so the table reads as "what this lever added". "before-ii" is the code of
// the revision before Efficiency II, for that before/after in one run; the probes after it
// each change one more thing on top of the defaults.

export interface Variant {
  name: string;
  /** What the variant changes, for the table. */
  lever: string;
  /** A git revision whose server/ and worker/ code to run instead of this checkout's. */
  rev?: string;
  /** Environment for both the server and the workers (each reads only its own variables). */
  env: Record<string, string>;
  /** PostgreSQL settings for the variant (ALTER SYSTEM + reload; reset after it): reloadable ones only. */
  postgres?: Record<string, string>;
}

/** main before the efficiency work (issue 11): the baseline of the lever table. */
export const BASELINE_REV = "eb83cce";

/** main before Efficiency II (issue 27: the batch consumer, the sink's levers, the hot paths). */
export const BEFORE_II_REV = "d49cec8";

/** The settings of the baseline, to run this checkout's code with one lever at a time. */
export const BEFORE_SETTINGS = {
  KAFKA_LINGER_MS: "2",
  KAFKA_PARTITION_KEY: "qr_id",
  KAFKA_FETCH_MIN_BYTES: "1",
  KAFKA_FETCH_WAIT_MAX_MS: "500",
};

const FETCH = { KAFKA_FETCH_MIN_BYTES: "262144", KAFKA_FETCH_WAIT_MAX_MS: "25" };
const LINGER = { KAFKA_LINGER_MS: "5" };
const NO_KEY = { KAFKA_PARTITION_KEY: "none" };

export const VARIANTS: Variant[] = [
  { name: "before", lever: `the code and settings of ${BASELINE_REV}`, rev: BASELINE_REV, env: {} },
  {
    name: "staging",
    lever: "+ staging table kept per connection, bulk freshness histogram",
    env: { ...BEFORE_SETTINGS },
  },
  { name: "fetch", lever: "+ fetch.min.bytes 256 KiB, fetch.wait.max.ms 25", env: { ...BEFORE_SETTINGS, ...FETCH } },
  { name: "linger", lever: "+ linger.ms 5", env: { ...BEFORE_SETTINGS, ...FETCH, ...LINGER } },
  { name: "nokey", lever: "+ no key (sticky partitions)", env: { ...BEFORE_SETTINGS, ...FETCH, ...LINGER, ...NO_KEY } },
  { name: "after", lever: "this checkout's defaults (every lever above)", env: {} },
  // Efficiency II's before/after: `bun bench/e2e.ts --variants before-ii,after`.
  { name: "before-ii", lever: `the code and settings of ${BEFORE_II_REV}`, rev: BEFORE_II_REV, env: {} },
  // Probes: one more change on top of the defaults, kept out of the defaults (see docs/capacity-plan.md).
  { name: "wait100", lever: "after, BATCH_MAX_WAIT_MS 100", env: { BATCH_MAX_WAIT_MS: "100" } },
  { name: "linger10", lever: "after, linger.ms 10", env: { KAFKA_LINGER_MS: "10" } },
  { name: "nocompress", lever: "after, compression none", env: { KAFKA_COMPRESSION: "none" } },
  { name: "qr_id", lever: "after, keyed by qr_id", env: { KAFKA_PARTITION_KEY: "qr_id" } },
  { name: "walz", lever: "after, wal_compression lz4", env: {}, postgres: { wal_compression: "lz4" } },
];

/** Looks variants up by name; an unknown name is an error listing the known ones. */
export function variantsNamed(names: readonly string[], known: readonly Variant[] = VARIANTS): Variant[] {
  return names.map((name) => {
    const v = known.find((x) => x.name === name);
    if (!v) throw new Error(`unknown variant "${name}"; known: ${known.map((x) => x.name).join(", ")}`);
    return v;
  });
}
