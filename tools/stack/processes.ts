// Process helpers for the local stack: start detached, record the pid, stop by that pid only.
import { spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { waitFor } from "../wait.ts";

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function readPid(pidFile: string): number | null {
  if (!existsSync(pidFile)) return null;
  const pid = Number.parseInt(readFileSync(pidFile, "utf8").split("\n")[0] ?? "", 10);
  return Number.isFinite(pid) && pid > 0 && isAlive(pid) ? pid : null;
}

/** Starts `cmd` detached from this process, output appended to `logFile`; returns its pid. */
export function startDetached(cmd: string, args: string[], logFile: string, env?: NodeJS.ProcessEnv): number {
  const fd = openSync(logFile, "a");
  const child = spawn(cmd, args, { detached: true, stdio: ["ignore", fd, fd], env: env ?? process.env });
  closeSync(fd);
  child.unref();
  if (!child.pid) throw new Error(`could not start ${cmd}`);
  return child.pid;
}

export function writePid(pidFile: string, pid: number): void {
  writeFileSync(pidFile, `${pid}\n`);
}

/** Sends `signal` to `pid`, waits for it to exit, escalates to SIGKILL after `timeoutMs`. */
export async function stopPid(pid: number, signal: NodeJS.Signals = "SIGTERM", timeoutMs = 30_000): Promise<void> {
  if (!isAlive(pid)) return;
  process.kill(pid, signal);
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, "SIGKILL");
      await Bun.sleep(200);
      return;
    }
    await Bun.sleep(50);
  }
}

/**
 * kill -9 of the service in `pidFile` and of all its descendants at once (Postgres' backends die
 * with the postmaster, as in a crash of the machine); waits until each is gone, reaped included
 * (a zombie still counts as running for Postgres' lock file), then deletes `pidFile`. Returns the
 * pid killed, null when none ran.
 */
export async function killPidFile(pidFile: string, timeoutMs = 10_000): Promise<number | null> {
  const pid = readPid(pidFile);
  if (pid !== null) {
    const all = [pid, ...descendants(pid)];
    for (const p of all) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // already gone
      }
    }
    const deadline = Date.now() + timeoutMs;
    while (all.some(isAlive)) {
      if (Date.now() > deadline) {
        throw new Error(`still running ${timeoutMs} ms after kill -9: pids ${all.filter(isAlive).join(", ")}`);
      }
      await Bun.sleep(20);
    }
  }
  rmSync(pidFile, { force: true });
  return pid;
}

/** Every process below `pid` (children, their children…), from pgrep -P. */
function descendants(pid: number): number[] {
  const children = spawnSync("pgrep", ["-P", String(pid)], { encoding: "utf8" })
    .stdout.split("\n")
    .map(Number)
    .filter((n) => n > 0);
  return children.flatMap((c) => [c, ...descendants(c)]);
}

/** Whether `pid` has exited (gone, or a zombie its parent has not reaped yet). */
export function hasExited(pid: number): boolean {
  if (!isAlive(pid)) return true;
  try {
    // /proc/<pid>/stat: "pid (comm) S ...": the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.charAt(stat.lastIndexOf(")") + 2) === "Z";
  } catch {
    return true;
  }
}

export async function stopPidFile(pidFile: string, signal: NodeJS.Signals = "SIGTERM"): Promise<boolean> {
  const pid = readPid(pidFile);
  if (pid) await stopPid(pid, signal);
  rmSync(pidFile, { force: true });
  return pid !== null;
}

export function portOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    socket.setTimeout(500);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Polls `check` until it returns true or `timeoutMs` passes; throws with `what` and the log tail. */
/**
 * Waits until a stack service answers (`check` resolves true), through the shared waitFor; on
 * timeout the error also carries the last lines of the service's log.
 */
export async function waitForService(what: string, check: () => Promise<boolean>, timeoutMs: number, logFile?: string) {
  try {
    await waitFor(`${what} to answer`, check, (ok) => ok, timeoutMs, 250);
  } catch (error) {
    const tail = logFile && existsSync(logFile) ? readFileSync(logFile, "utf8").split("\n").slice(-20).join("\n") : "";
    throw new Error(`${(error as Error).message}${tail ? `; last log lines:\n${tail}` : ""}`);
  }
}

/** Runs a command to completion; throws with its output when it fails. */
export function run(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const res = spawnSync(cmd, args, { encoding: "utf8", ...options });
  if (res.error) throw new Error(`${cmd} could not run: ${res.error.message}`);
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${res.status}):\n${res.stdout}${res.stderr}`);
  return res.stdout;
}

export function commandExists(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

export const isRoot = () => process.getuid?.() === 0;

/**
 * Argument prefix that runs a command as the unprivileged `postgres` user when we are root
 * (initdb, postgres and pgbouncer refuse to run as root). setpriv execs in place, so the pid
 * we get is the server's own.
 */
export function asServiceUser(cmd: string, args: string[]): [string, string[]] {
  if (!isRoot()) return [cmd, args];
  return ["setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", "--", cmd, ...args]];
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it; the probe is closed at once). */
export function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}
