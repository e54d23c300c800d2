// Starts the product's own processes (edge server, worker supervisor) as children, tracked by pid:
// used by `bun run dev` and the crash suite. Each handle can be stopped, killed and restarted.
import { spawnSync } from "node:child_process";
import type { Subprocess } from "bun";
import { KafkaAdmin } from "bun-rdkafka";
import { localStack } from "../shared/local-stack.ts";
import {
  type SpawnOptions,
  createThrowawayDatabase,
  killProcess,
  spawnProcess,
  spawnUntilReady,
  stopProcess,
} from "./harness.ts";

export interface ServiceHandle {
  name: string;
  readonly pid: number | undefined;
  /** Resolves once the service answers `readyUrl` (if any). */
  start(): Promise<void>;
  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves with the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
  kill9(): Promise<void>;
}

export function service(
  name: string,
  entry: string,
  env: Record<string, string>,
  readyUrl?: string,
  output: SpawnOptions["output"] = "inherit",
): ServiceHandle {
  let proc: Subprocess | null = null;
  return {
    name,
    get pid() {
      return proc?.pid;
    },
    async start() {
      const spawn = { cmd: ["bun", entry], env, output };
      proc = readyUrl ? await spawnUntilReady({ name, readyUrl, ...spawn }) : spawnProcess(spawn);
    },
    stop: async (timeoutMs = 20_000) => (proc ? stopProcess(proc, timeoutMs) : null),
    kill9: async () => {
      if (proc) await killProcess(proc);
    },
  };
}

/** Child pids of `pid` (the supervisor's workers), from /proc. */
export function childPids(pid: number): number[] {
  const out = spawnSync("pgrep", ["-P", String(pid)], { encoding: "utf8" }).stdout;
  return out
    .split("\n")
    .map((s) => Number(s))
    .filter((n) => n > 0);
}

/**
 * A throwaway, migrated database and fresh topics on the local stack, with the environment the
 * server and workers need to use them: benches and the crash suite measure on clean state and
 * leave nothing behind (`dispose()`).
 */
export async function isolatedRun(prefix: string) {
  const stack = localStack();
  const db = await createThrowawayDatabase(prefix, { stack });
  const run = db.name;
  const kafkaAdmin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
  const topic = `${run}-scans`;
  await kafkaAdmin.createTopics([
    { name: topic, partitions: 12 },
    { name: `${topic}-dlq`, partitions: 1 },
  ]);
  return {
    run,
    stack,
    directUrl: db.directUrl,
    /** For both server and workers (each reads only its own variables). */
    env: {
      KAFKA_BROKERS: stack.brokers,
      SCANS_TOPIC: topic,
      DEAD_LETTER_TOPIC: `${topic}-dlq`,
      DATABASE_URL: db.url,
      CONSUMER_GROUP: `${run}-sink`,
      DEAD_LETTER_GROUP: `${run}-dlq`,
      LOG_LEVEL: "error",
    },
    async dispose() {
      await kafkaAdmin.deleteTopics([topic, `${topic}-dlq`]);
      kafkaAdmin.close();
      await db.drop();
    },
  };
}
