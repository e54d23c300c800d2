// A private Postgres HA cluster for one test file (PG_HA=1, tools/stack/patroni.ts): a 3-member
// etcd, two Patroni members (leader + synchronous standby), HAProxy routing to the leader and the
// stack's pgbouncer in front of it, all started by the stack's own code under a temporary
// STACK_DIR on free ports, so the main stack is never disturbed. Every process is killed by pid
// and the directory deleted after the test.
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { type DB_LOGINS, type LocalStack, localStack } from "../../shared/local-stack.ts";
import { type ThrowawayDatabase, createThrowawayDatabase } from "../../tools/harness.ts";
import {
  type ClusterMember,
  haproxyPid,
  killMember,
  leaderOf,
  patroniCluster,
  patroniPid,
  postmasterPid,
  startHaproxy,
  startPatroniMember,
  syncStandbyOf,
} from "../../tools/stack/patroni.ts";
import { haPaths, pgPaths } from "../../tools/stack/pg-paths.ts";
import { pgbouncerPid, startPgbouncer, startPostgres } from "../../tools/stack/postgres.ts";
import { freePort, isAlive, readPid } from "../../tools/stack/processes.ts";
import { onCleanup } from "./cleanup.ts";
import { waitFor } from "./wait.ts";

const portFree = (port: number) => {
  try {
    Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true);
    return true;
  } catch {
    return false;
  }
};

/** A free port p with p + each of `offsets` free too, none already taken by this cluster. */
function freeGroup(taken: Set<number>, offsets: number[]): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = freePort();
    const all = offsets.map((o) => first + o);
    if (all.every((p) => p <= 65535 && !taken.has(p) && portFree(p))) {
      for (const p of all) taken.add(p);
      return first;
    }
  }
  throw new Error(`no free port group (offsets ${offsets.join(",")}) in 50 tries`);
}

export interface PgHaCluster {
  stack: LocalStack;
  /** The STACK_* variables and PG_HA that locate this cluster (for a command run against it). */
  env: Record<string, string>;
  /** A migrated database of its own on the cluster: URLs through pgbouncer and through HAProxy. */
  db: ThrowawayDatabase;
  /** Patroni's /cluster. */
  members(): Promise<ClusterMember[] | null>;
  /** The running leader's name (waits up to `timeoutMs` for one). */
  leader(timeoutMs?: number): Promise<string>;
  /** The member's Postgres port. */
  pgPort(name: string): number;
  patroniPid(name: string): number | null;
  postmasterPid(name: string): number | null;
  /** kill -9 of the whole member: Patroni and its postmaster with every backend. */
  kill(name: string): Promise<{ patroni: number; postmaster: number }>;
  /** Starts Patroni of `name` again (it rejoins as a replica, pg_rewind when it diverged). */
  restart(name: string): Promise<void>;
  /** Waits until `name` is the running synchronous standby. */
  waitSyncStandby(name: string, timeoutMs?: number): Promise<ClusterMember[]>;
  /** Restarts HAProxy with another health check (mutation checks only). */
  setHaproxyCheck(path: string): Promise<void>;
  patroniLog(name: string): string;
}

export async function startPgHaCluster(): Promise<PgHaCluster> {
  const dir = mkdtempSync(join(tmpdir(), "qrscan-pgha-"));
  // The postgres user (Patroni, Postgres, pgbouncer) must reach the cluster's files in it.
  chmodSync(dir, 0o755);
  const taken = new Set<number>();
  const env: Record<string, string> = {
    STACK_DIR: dir,
    PG_HA: "1",
    STACK_PG_PORT: String(freeGroup(taken, [0])),
    STACK_PGBOUNCER_PORT: String(freeGroup(taken, [0])),
    STACK_ETCD_PORT: String(freeGroup(taken, [0, 1, 10, 11, 20, 21])),
    STACK_PATRONI_PG_PORT: String(freeGroup(taken, [0, 1])),
    STACK_PATRONI_REST_PORT: String(freeGroup(taken, [0, 1])),
    STACK_HAPROXY_STATS_PORT: String(freeGroup(taken, [0])),
  };
  const stack = localStack({ ...process.env, ...env });
  const paths = haPaths(stack);
  const pidFiles = () => [
    paths.haproxyPid,
    pgPaths(stack).bouncerPid,
    ...stack.patroniMembers.flatMap((m) => [
      paths.member(m.name).pid,
      join(paths.member(m.name).data, "postmaster.pid"),
    ]),
    ...stack.etcdMembers.map((m) => paths.etcd(m.name).pid),
  ];
  const pids = new Set<number>();
  const track = () => {
    for (const f of pidFiles()) {
      const pid = readPid(f);
      if (pid !== null) pids.add(pid);
    }
  };
  /** Still this cluster's process: a pid tracked minutes ago may be another program's by now. */
  const ours = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(stack.dir);
    } catch {
      return false;
    }
  };
  onCleanup(async () => {
    track();
    for (const pid of [...pids]) if (!ours(pid)) pids.delete(pid);
    // Thrown away: SIGKILL by pid (a postmaster's backends exit when it is gone), then wait.
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await waitFor(
      `the private HA cluster's processes (pids ${[...pids].join(", ")}) to exit`,
      async () => [...pids].filter(isAlive),
      (alive) => alive.length === 0,
      20_000,
      50,
    );
    rmSync(pgPaths(stack).root, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    // The stack's own start: etcd, both members, HAProxy, the roles and logins, the pgBackRest
    // stanza (WAL archived into the private repository), then pgbouncer.
    await startPostgres(stack);
    await startPgbouncer(stack);
  } finally {
    track();
  }
  const db = await createThrowawayDatabase("qrscan_ha", { stack });
  const members = () => patroniCluster(stack);
  const pgPort = (name: string) => {
    const m = stack.patroniMembers.find((x) => x.name === name);
    if (!m) throw new Error(`no member ${name}`);
    return m.pgPort;
  };
  return {
    stack,
    env,
    db,
    members,
    async leader(timeoutMs = 30_000) {
      const seen = await waitFor(
        "a running leader in Patroni's /cluster",
        members,
        (m) => leaderOf(m) !== null,
        timeoutMs,
        100,
      );
      return leaderOf(seen) as string;
    },
    pgPort,
    patroniPid: (name) => patroniPid(stack, name),
    postmasterPid: (name) => postmasterPid(stack, name),
    async kill(name) {
      track();
      return killMember(stack, name);
    },
    async restart(name) {
      const m = stack.patroniMembers.find((x) => x.name === name);
      if (!m) throw new Error(`no member ${name}`);
      await startPatroniMember(stack, m);
      track();
    },
    async waitSyncStandby(name, timeoutMs = 60_000) {
      const seen = await waitFor(
        `member ${name} to be the running synchronous standby`,
        members,
        (m) => syncStandbyOf(m) === name,
        timeoutMs,
        200,
      );
      track();
      return seen ?? [];
    },
    async setHaproxyCheck(path) {
      await startHaproxy(stack, path);
      track();
    },
    patroniLog: (name) => paths.member(name).log,
  };
}

/** `url` as one of the stack's login users instead of the owner. */
export function asLogin(url: string, login: (typeof DB_LOGINS)[keyof typeof DB_LOGINS]): string {
  return url.replace("//qrscan:qrscan@", `//${login.user}:${login.password}@`);
}

/** The pids HAProxy and pgbouncer run as (printed by the tests as the hops that stay up). */
export function hopPids(stack: LocalStack) {
  return { haproxy: haproxyPid(stack), pgbouncer: pgbouncerPid(stack) };
}

/** One statement on its own connection (closed after), for probes that must not reuse a broken one. */
export async function once<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>, timeoutS = 2): Promise<T> {
  const sql = postgres(url, { max: 1, connect_timeout: timeoutS, idle_timeout: 1, prepare: false, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/**
 * One write through `url` by psql, a client process of its own (a fresh connection each time, no
 * pool state carried between tries): the port of the server that stored it, or the error.
 */
export async function psqlProbe(url: string, timeoutMs = 3_000): Promise<number | string> {
  const proc = Bun.spawn(
    [
      "psql",
      url,
      "-XtAq",
      "-v",
      "ON_ERROR_STOP=1",
      "-c",
      "insert into ha_probe default values returning inet_server_port()",
    ],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, PGCONNECT_TIMEOUT: "1" } },
  );
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    const port = Number(out.trim().split("\n")[0]);
    return code === 0 && port > 0 ? port : `exit ${code}: ${err.trim()}`;
  } finally {
    clearTimeout(timer);
  }
}
