// Starts the product's own processes (edge server, worker supervisor) as children, tracked by pid:
// used by `bun run dev` and the crash suite. Each handle can be stopped, killed and restarted.
import { spawnSync } from "node:child_process";

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
