// Configuration is resolved once per process, from its validated schema: no code in server/,
// worker/, shared/, sql/ or the Kafka package reads the environment except the places listed here, each for a reason.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Glob } from "bun";
import { SupervisorConfigSchema, loadSupervisorConfig, loadWorkerConfig } from "../../worker/config.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/** file → why it may read process.env */
const ALLOWED: Record<string, string> = {
  "shared/config.ts": "loadConfig and kafkaOverrides: the environment is their default argument",
  "server/config.ts": "loadServerConfig: the environment is its default argument",
  "worker/config.ts": "loadWorkerConfig and loadSupervisorConfig: the environment is their default argument",
  "worker/pool.ts":
    "passes the supervisor's environment on to the workers it spawns, with WORKER_INDEX and METRICS_PORT",
  "shared/local-stack.ts": "STACK_* say where the project's own local stack listens (the defaults' source)",
  "packages/bun-rdkafka/src/ffi.ts":
    "LIBRDKAFKA_PATH: the Kafka binding's own library lookup, not the product's config",
};

describe("configuration is resolved once per process", () => {
  test("only the listed files read process.env", () => {
    const readers: string[] = [];
    for (const dir of ["server", "worker", "shared", "sql", "packages/bun-rdkafka/src"]) {
      for (const file of new Glob(`${dir}/**/*.ts`).scanSync(ROOT)) {
        if (file.endsWith(".test.ts")) continue;
        if (readFileSync(`${ROOT}/${file}`, "utf8").includes("process.env")) readers.push(file);
      }
    }
    expect(readers.sort()).toEqual(Object.keys(ALLOWED).sort());
  });
});

describe("the worker's and the supervisor's schemas", () => {
  test("WORKER_INDEX and LOG_LEVEL are the worker's settings, validated like the rest", () => {
    const c = loadWorkerConfig({ WORKER_INDEX: "3", LOG_LEVEL: "debug" });
    expect([c.WORKER_INDEX, c.LOG_LEVEL]).toEqual([3, "debug"]);
    expect(loadWorkerConfig({}).WORKER_INDEX).toBe(0);
    expect(() => loadWorkerConfig({ WORKER_INDEX: "first" })).toThrow('WORKER_INDEX="first": must be an integer');
  });

  test("the supervisor resolves its own keys and the workers' from one environment, once", () => {
    const c = loadSupervisorConfig({ WORKER_POOL_SIZE: "3", METRICS_PORT: "9600", LOG_LEVEL: "warn" });
    expect([c.WORKER_POOL_SIZE, c.worker.METRICS_PORT, c.LOG_LEVEL, c.worker.LOG_LEVEL]).toEqual([
      3,
      9600,
      "warn",
      "warn",
    ]);
    expect(Object.keys(SupervisorConfigSchema.entries)).not.toContain("METRICS_PORT");
    expect(Object.keys(SupervisorConfigSchema.entries)).not.toContain("SHUTDOWN_TIMEOUT_MS");
    expect(() => loadSupervisorConfig({ WORKER_POOL_SIZE: "0" })).toThrow('WORKER_POOL_SIZE="0": must be >= 1');
  });
});
