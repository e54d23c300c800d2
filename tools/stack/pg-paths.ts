// Where the local cluster's binaries and files are: the one module both the stack (postgres.ts)
// and the backups (tools/backup/) read, so neither imports the other for it.
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
