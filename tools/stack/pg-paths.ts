// Where the local cluster's binaries, files and server settings are: the one module the stack
// (postgres.ts, patroni.ts) and the backups (tools/backup/) read, so none imports another for it.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { LocalStack } from "../../shared/local-stack.ts";
import { asServiceUser, isRoot } from "./processes.ts";

/** Debian installs server binaries under /usr/lib/postgresql/<major>/bin; take the newest. */
export function pgBinDir(): string {
  const base = "/usr/lib/postgresql";
  if (existsSync(base)) {
    const majors = readdirSync(base)
      .filter((v) => existsSync(join(base, v, "bin", "initdb")))
      .sort((a, b) => Number(b) - Number(a));
    if (majors[0]) return join(base, majors[0], "bin");
  }
  throw new Error("PostgreSQL server binaries not found: install them with `apt-get install postgresql`");
}

function canServiceUserReach(dir: string): boolean {
  if (!isRoot()) return true;
  const [cmd, args] = asServiceUser("test", ["-w", dir]);
  return spawnSync(cmd, args).status === 0;
}

/**
 * The cluster's directory. It lives in the stack dir when the `postgres` user can reach it;
 * otherwise (e.g. a checkout under /root) in /var/tmp, keyed by the stack dir.
 */
export function pgPaths(stack: LocalStack) {
  mkdirSync(stack.dir, { recursive: true });
  let root = join(stack.dir, "pg");
  mkdirSync(root, { recursive: true });
  if (isRoot()) spawnSync("chown", ["postgres:postgres", root]);
  if (!canServiceUserReach(root)) {
    const key = createHash("sha256").update(stack.dir).digest("hex").slice(0, 12);
    root = join("/var/tmp", `qrscan-stack-${key}`, "pg");
    mkdirSync(root, { recursive: true });
    if (isRoot()) spawnSync("chown", ["-R", "postgres:postgres", join(root, "..")]);
  }
  return {
    root,
    data: join(root, "data"),
    run: join(root, "run"),
    log: join(root, "postgres.log"),
    pid: join(root, "postgres.pid"),
    bouncerIni: join(root, "pgbouncer.ini"),
    bouncerUsers: join(root, "userlist.txt"),
    bouncerLog: join(root, "pgbouncer.log"),
    bouncerPid: join(root, "pgbouncer.pid"),
  };
}

/**
 * The server settings of the local cluster (the Patroni members' too), and of compose.yaml's
 * Postgres (its command; checked equal by test/unit/compose-product.test.ts). WAL archiving
 * (archiveSettings) is the local stack's only: its pgBackRest repository is there.
 */
export const POSTGRES_SETTINGS = [
  "max_connections=200",
  "shared_buffers=256MB",
  "max_wal_size=2GB",
  "checkpoint_timeout=15min",
  "log_min_messages=warning",
] as const;

/** PG_HA's files (tools/stack/patroni.ts): each Patroni member's, each etcd member's, HAProxy's. */
export function haPaths(stack: LocalStack) {
  const root = join(pgPaths(stack).root, "ha");
  const member = (name: string) => {
    const dir = join(root, name);
    return {
      dir,
      data: join(dir, "data"),
      run: join(dir, "run"),
      config: join(dir, "patroni.yml"),
      log: join(dir, "patroni.log"),
      pid: join(dir, "patroni.pid"),
      pgpass: join(dir, "pgpass"),
    };
  };
  const etcd = (name: string) => {
    const dir = join(root, "etcd", name);
    return { dir, data: join(dir, "data"), log: join(dir, "etcd.log"), pid: join(dir, "etcd.pid") };
  };
  return {
    root,
    member,
    etcd,
    haproxyConfig: join(root, "haproxy.cfg"),
    haproxyLog: join(root, "haproxy.log"),
    haproxyPid: join(root, "haproxy.pid"),
    /** patronictl's configuration: member pg1's file (patronictl only reads the etcd and scope parts). */
    patronictlConfig: member("pg1").config,
  };
}
