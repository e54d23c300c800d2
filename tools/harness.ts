// The harness shared by the tests, the benches and the tools (no side effects on import):
// throwaway databases on the local stack, processes started and polled until ready and stopped
// by pid, and Prometheus endpoints scraped. The tests' fixtures (test/helpers/fixtures.ts) wrap
// these with cleanup after each test; waiting is tools/wait.ts.
import { closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import type { Subprocess } from "bun";
import postgres from "postgres";
import { type LocalStack, localStack } from "../shared/local-stack.ts";
import { type Sample, parsePrometheusText } from "../shared/prometheus-text.ts";
import { migrate } from "../sql/migrate.ts";
import { waitFor } from "./wait.ts";

export const ROOT = new URL("..", import.meta.url).pathname;

// ---------------------------------------------------------------------------------------------
// Throwaway databases

export interface ThrowawayDatabase {
  name: string;
  /** Straight to Postgres (migrations, sessions, admin work). */
  directUrl: string;
  /** Through pgbouncer (transaction pooling), as the server and the workers connect. */
  url: string;
  /** Drops the database, closing whatever is still connected to it. */
  drop(): Promise<void>;
}

/** The URLs of database `name` on the local stack, as the project's role. */
export function databaseUrls(name: string, stack: LocalStack = localStack()): { directUrl: string; url: string } {
  const at = (url: string) => url.replace(/\/[^/]*$/, `/${name}`);
  return { directUrl: at(stack.directDatabaseUrl), url: at(stack.databaseUrl) };
}

async function asAdmin(stack: LocalStack, statement: string): Promise<void> {
  const admin = postgres(stack.adminDatabaseUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(statement);
  } finally {
    await admin.end();
  }
}

/**
 * A database of its own on the local stack's cluster, owned by the project's role and migrated
 * (unless `migrated: false`), named `<prefix>_<time>_<random>`. The caller drops it (`drop()`);
 * tests use the fixture `createDatabase`, which does so after the test.
 */
export async function createThrowawayDatabase(
  prefix: string,
  { migrated = true, stack = localStack() }: { migrated?: boolean; stack?: LocalStack } = {},
): Promise<ThrowawayDatabase> {
  if (!/^[a-z_][a-z0-9_]*$/.test(prefix)) {
    throw new Error(`a database name prefix is lower-case letters, digits and _, got "${prefix}"`);
  }
  const name = `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 7)}`;
  await asAdmin(stack, `create database ${name} owner ${stack.user}`);
  const urls = databaseUrls(name, stack);
  const drop = () => asAdmin(stack, `drop database if exists ${name} with (force)`);
  if (migrated) {
    try {
      await migrate(urls.directUrl);
    } catch (error) {
      await drop();
      throw error;
    }
  }
  return { name, ...urls, drop };
}

// ---------------------------------------------------------------------------------------------
// Processes: spawned from the project's root, polled until ready, stopped by pid

export interface SpawnOptions {
  /** The command, e.g. ["bun", "server/main.ts"]; run from the project's root. */
  cmd: string[];
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /**
   * Where its stdout and stderr go; "pipe" puts stderr's text into a readiness failure, and
   * `{ file }` appends both to that file (its folder is created).
   */
  output?: "inherit" | "ignore" | "pipe" | { file: string };
  /** Its working directory; default the project's root. */
  cwd?: string;
}

/** Spawns a process (from the project's root unless `cwd`) with this process's environment plus `env`. */
export function spawnProcess({ cmd, env = {}, output = "inherit", cwd = ROOT }: SpawnOptions): Subprocess {
  let stdio: "inherit" | "ignore" | "pipe" | number;
  if (typeof output === "object") {
    mkdirSync(dirname(output.file), { recursive: true });
    stdio = openSync(output.file, "a");
  } else stdio = output;
  const proc = Bun.spawn(cmd, { cwd, env: { ...process.env, ...env }, stdout: stdio, stderr: stdio });
  // The child has its own copy of the descriptor.
  if (typeof stdio === "number") closeSync(stdio);
  return proc;
}

export interface ReadyOptions extends SpawnOptions {
  /** Who it is, for the error message: "server", "bun server". */
  name: string;
  /** Polled until it answers as ready. */
  readyUrl: string;
  /** What counts as ready; default a 2xx answer. */
  isReady?: (status: number) => boolean;
  readyTimeoutMs?: number;
}

/**
 * Spawns a process and polls `readyUrl` until it answers as ready. When it does not (it exited,
 * or `readyTimeoutMs` passed) the process is killed by pid and the error says what was awaited and
 * what was last seen: the last status, the connection error or the exit code, and its stderr when
 * piped.
 */
export async function spawnUntilReady({
  name,
  readyUrl,
  isReady = (status) => status >= 200 && status < 300,
  readyTimeoutMs = 30_000,
  ...spawn
}: ReadyOptions): Promise<Subprocess> {
  const proc = spawnProcess(spawn);
  try {
    const last = await waitFor(
      `${name} (pid ${proc.pid}) to answer ${readyUrl} as ready`,
      async () => {
        if (proc.exitCode !== null) return { exited: proc.exitCode };
        const res = await fetch(readyUrl, { signal: AbortSignal.timeout(2_000) });
        return { status: res.status };
      },
      (v) => "exited" in v || isReady(v.status),
      readyTimeoutMs,
      100,
    );
    if (!("exited" in last)) return proc;
    throw new Error(`${name} (pid ${proc.pid}) exited with code ${last.exited} before answering ${readyUrl} as ready`);
  } catch (error) {
    await killProcess(proc);
    const stderr = spawn.output === "pipe" ? (await new Response(proc.stderr as ReadableStream).text()).trim() : "";
    throw new Error(`${(error as Error).message}${stderr ? `; its stderr:\n${stderr}` : ""}`, { cause: error });
  }
}

/** SIGKILL by pid (when still running); resolves once it has exited. */
export async function killProcess(proc: Subprocess): Promise<void> {
  if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  await proc.exited;
}

/** SIGTERM by pid, SIGKILL after `timeoutMs`; resolves with the exit code (null when killed). */
export async function stopProcess(proc: Subprocess, timeoutMs = 20_000): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    return await proc.exited;
  } finally {
    clearTimeout(timer);
  }
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end (a CLI, an example, `bun install`), its output piped; stopped by pid
 * when it outlives `timeoutMs`, which is then an error naming the command and its output so far.
 */
export async function runToEnd(options: Omit<SpawnOptions, "output"> & { timeoutMs?: number }): Promise<Finished> {
  const { timeoutMs = 60_000, ...spawn } = options;
  const proc = spawnProcess({ ...spawn, output: "pipe" });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void stopProcess(proc, 2_000);
  }, timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout as ReadableStream).text(),
      new Response(proc.stderr as ReadableStream).text(),
      proc.exited,
    ]);
    if (timedOut) {
      throw new Error(
        `${spawn.cmd.join(" ")} (pid ${proc.pid}) did not finish within ${timeoutMs} ms; stdout:\n${stdout}\nstderr:\n${stderr}`,
      );
    }
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Prometheus endpoints (the text format is read by shared/prometheus-text.ts)

/** Every sample of a `/metrics` endpoint; throws when it does not answer with 200. */
export async function scrape(url: string, timeoutMs = 2_000): Promise<Sample[]> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return parsePrometheusText(await res.text());
}

/** Like `scrape`, but null when the endpoint does not answer (a process starting or restarting). */
export async function scrapeIfUp(url: string, timeoutMs = 2_000): Promise<Sample[] | null> {
  return scrape(url, timeoutMs).catch(() => null);
}

/**
 * The value of metric `name` at `url` (summed over its series); throws when the endpoint does not
 * answer or has no series of that name, so a missing metric never reads as 0.
 */
export async function metricValue(url: string, name: string): Promise<number> {
  const series = (await scrape(url)).filter((s) => s.name === name);
  if (series.length === 0) throw new Error(`${url} has no series named ${name}`);
  return series.reduce((total, s) => total + s.value, 0);
}
