// Starts the product's own processes (edge server, worker supervisor) as children, tracked by pid:
// used by `bun run dev` and the crash suite. Each handle can be stopped, killed and restarted.
import { spawnSync } from "node:child_process";
import postgres from "postgres";
import { KafkaAdmin } from "../shared/kafka/index.ts";
import { localStack } from "../shared/local-stack.ts";
import { migrate } from "../sql/migrate.ts";

const ROOT = new URL("..", import.meta.url).pathname;

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
  output: "inherit" | "ignore" = "inherit",
): ServiceHandle {
  let proc: ReturnType<typeof Bun.spawn> | null = null;
  const handle: ServiceHandle = {
    name,
    get pid() {
      return proc?.pid;
    },
    async start() {
      proc = Bun.spawn(["bun", entry], { cwd: ROOT, env: { ...process.env, ...env }, stdout: output, stderr: output });
      if (!readyUrl) return;
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        if (
          await fetch(readyUrl).then(
            (r) => r.ok,
            () => false,
          )
        )
          return;
        if (proc.exitCode !== null) break;
        await Bun.sleep(100);
      }
      throw new Error(`${name} did not become ready at ${readyUrl}`);
    },
    async stop(timeoutMs = 20_000) {
      const p = proc;
      if (!p || p.exitCode !== null) return p?.exitCode ?? null;
      p.kill("SIGTERM");
      const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
      const code = await p.exited;
      clearTimeout(timer);
      return code;
    },
    async kill9() {
      const p = proc;
      if (!p || p.exitCode !== null) return;
      p.kill("SIGKILL");
      await p.exited;
    },
  };
  return handle;
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
  const run = `${prefix}_${Date.now().toString(36)}`;
  const adminUrl = `postgres://postgres@127.0.0.1:${stack.pgPort}/postgres`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${run} owner ${stack.user}`);
  await admin.end();
  const directUrl = `postgres://${stack.user}:${stack.password}@127.0.0.1:${stack.pgPort}/${run}`;
  await migrate(directUrl);
  const kafkaAdmin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
  const topic = `${run}-scans`;
  await kafkaAdmin.createTopics([
    { name: topic, partitions: 12 },
    { name: `${topic}-dlq`, partitions: 1 },
  ]);
  return {
    run,
    stack,
    directUrl,
    /** For both server and workers (each reads only its own variables). */
    env: {
      KAFKA_BROKERS: stack.brokers,
      SCANS_TOPIC: topic,
      DEAD_LETTER_TOPIC: `${topic}-dlq`,
      DATABASE_URL: `postgres://${stack.user}:${stack.password}@127.0.0.1:${stack.pgbouncerPort}/${run}`,
      CONSUMER_GROUP: `${run}-sink`,
      DEAD_LETTER_GROUP: `${run}-dlq`,
      LOG_LEVEL: "error",
    },
    async dispose() {
      await kafkaAdmin.deleteTopics([topic, `${topic}-dlq`]);
      kafkaAdmin.close();
      const a = postgres(adminUrl, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists ${run} with (force)`);
      await a.end();
    },
  };
}
