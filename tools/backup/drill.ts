// The restore drill's throwaway cluster: pgbackrest restores a backup (plus archived WAL up to a
// target) into a fresh directory, PostgreSQL starts on it as the cluster's OS user on its own
// port with archiving off (it must never push WAL into the live stanza's archive), recovers to
// the target and promotes; afterwards it is stopped by pid and its directory removed.
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import postgres from "postgres";
import type { LocalStack } from "../../shared/local-stack.ts";
import { pgBinDir, pgPaths } from "../stack/pg-paths.ts";
import { asServiceUser, freePort, isRoot, run } from "../stack/processes.ts";
import { waitFor } from "../wait.ts";
import { BackupError, pgbackrest } from "./pgbackrest.ts";

export type RecoveryTarget = { type: "time"; time: string } | { type: "name"; name: string };

/**
 * Forces the current WAL segment out and waits until the archiver has archived it, so everything
 * written so far can be recovered. Returns how old the newest archived segment was before: what a
 * lost disk would have cost at that moment (bounded by archive_timeout under writes).
 */
export async function archiveCurrentWal(adminUrl: string, timeoutMs: number): Promise<{ exposureSeconds: number }> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [before] = await sql<{ exposure: number | null }[]>`
      select extract(epoch from now() - last_archived_time)::float8 as exposure from pg_stat_archiver`;
    const [sw] = await sql<{ segment: string }[]>`select pg_walfile_name(pg_switch_wal()) as segment`;
    const segment = sw?.segment ?? "";
    await waitFor(
      `WAL segment ${segment} to be archived (pg_stat_archiver.last_archived_wal >= it)`,
      async () => {
        const [s] = await sql<{ last: string | null; failed: string | null; failedAt: Date | null }[]>`
          select last_archived_wal as last, last_failed_wal as failed, last_failed_time as "failedAt" from pg_stat_archiver`;
        return s;
      },
      (s) => (s?.last ?? "") >= segment,
      timeoutMs,
      200,
    );
    return { exposureSeconds: before?.exposure ?? Number.NaN };
  } finally {
    await sql.end();
  }
}

export interface DrillCluster {
  dir: string;
  port: number;
  /** As the superuser, to `database`. */
  url(database: string): string;
  /** The project's role, to `database` (what a worker would use). */
  appUrl(database: string): string;
  /** Stops the server by pid and removes its directory; safe to call twice. */
  remove(): Promise<void>;
}

function logTail(file: string): string {
  return existsSync(file) ? readFileSync(file, "utf8").split("\n").slice(-15).join("\n") : "(no log)";
}

async function stopServer(proc: Subprocess, timeoutMs = 30_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGINT"); // PostgreSQL's fast shutdown
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    await proc.exited;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Restores the stanza's backups up to `target` into a fresh directory and starts it on `port` (0:
 * a free one), waiting until recovery reached the target and the cluster was promoted. On failure
 * everything it made is removed before the error is thrown.
 */
export async function restoreDrillCluster(
  stack: LocalStack,
  target: RecoveryTarget,
  { port = 0, timeoutMs }: { port?: number; timeoutMs: number },
): Promise<DrillCluster> {
  const dir = join(pgPaths(stack).root, `drill-${Date.now().toString(36)}`);
  const data = join(dir, "data");
  const log = join(dir, "postgres.log");
  const listen = port || freePort();
  let proc: Subprocess | null = null;
  const remove = async () => {
    if (proc) await stopServer(proc);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    mkdirSync(data, { recursive: true, mode: 0o700 });
    if (isRoot()) run("chown", ["-R", "postgres:postgres", dir]);
    const targetArgs =
      target.type === "time" ? ["--type=time", `--target=${target.time}`] : ["--type=name", `--target=${target.name}`];
    pgbackrest(
      stack,
      ["restore", `--pg1-path=${data}`, ...targetArgs, "--target-action=promote", "--archive-mode=off"],
      timeoutMs,
    );
    const [cmd, args] = asServiceUser(join(pgBinDir(), "postgres"), [
      "-D",
      data,
      "-p",
      String(listen),
      "-k",
      dir,
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "archive_mode=off",
      "-c",
      "shared_buffers=64MB",
      "-c",
      // Recovery refuses settings below the primary's (tools/stack/postgres.ts).
      "max_connections=200",
      "-c",
      "log_min_messages=warning",
    ]);
    proc = Bun.spawn([cmd, ...args], { stdout: Bun.file(log), stderr: Bun.file(log), cwd: "/" });
    const admin = `postgres://postgres@127.0.0.1:${listen}/postgres`;
    const running = proc;
    const last = await waitFor(
      `the drill cluster on port ${listen} to finish recovery and promote (pg_is_in_recovery() = false)`,
      async () => {
        if (running.exitCode !== null) return { exited: running.exitCode };
        const sql = postgres(admin, { max: 1, connect_timeout: 2, onnotice: () => {} });
        try {
          const [r] = await sql<{ recovering: boolean }[]>`select pg_is_in_recovery() as recovering`;
          return { recovering: r?.recovering ?? true };
        } finally {
          await sql.end({ timeout: 1 });
        }
      },
      (s) => "exited" in s || !s.recovering,
      timeoutMs,
      250,
    );
    if ("exited" in last) throw new BackupError(`the drill cluster exited with code ${last.exited}`);
    return {
      dir,
      port: listen,
      url: (database) => `postgres://postgres@127.0.0.1:${listen}/${database}`,
      appUrl: (database) => `postgres://${stack.user}:${stack.password}@127.0.0.1:${listen}/${database}`,
      remove,
    };
  } catch (error) {
    const tail = existsSync(log) ? `\ndrill cluster log:\n${logTail(log)}` : "";
    await remove();
    throw new BackupError(`${(error as Error).message}${tail}`);
  }
}
