// A private PostgreSQL cluster and pgbouncer (transaction pooling) in front of it, both run as the
// unprivileged `postgres` user when we are root. Never touches the system's own server.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { type DbLogin, KEYS_DATABASE_SUFFIX, type LocalStack } from "../../shared/local-stack.ts";
import { archiveSettings, ensureStanza, writeBackrestConfig } from "../backup/pgbackrest.ts";
import { startHa } from "./patroni.ts";
import { POSTGRES_SETTINGS, pgBinDir, pgPaths } from "./pg-paths.ts";
import {
  asServiceUser,
  isRoot,
  killPidFile,
  portOpen,
  readPid,
  run,
  startDetached,
  stopPidFile,
  waitForService,
  writePid,
} from "./processes.ts";

export { POSTGRES_SETTINGS };

function asPostgres(cmd: string, args: string[]): string {
  const [c, a] = asServiceUser(cmd, args);
  return run(c, a);
}

function ownByServiceUser(path: string): void {
  if (isRoot()) run("chown", ["-R", "postgres:postgres", path]);
}

async function sqlAnswers(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, connect_timeout: 2, prepare: false, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

export async function startPostgres(stack: LocalStack): Promise<void> {
  const p = pgPaths(stack);
  const bin = pgBinDir();
  if (stack.pgHa) {
    // PG_HA=1: Patroni runs the servers, HAProxy on pgPort reaches the leader (tools/stack/patroni.ts).
    writeBackrestConfig(stack);
    await startHa(stack);
  } else if (readPid(p.pid) === null) {
    if (await portOpen(stack.pgPort)) {
      throw new Error(`port ${stack.pgPort} is in use by another process; set STACK_PG_PORT to a free port`);
    }
    mkdirSync(p.run, { recursive: true });
    ownByServiceUser(p.root);
    // Continuous WAL archiving into the pgBackRest repository in the stack dir (tools/backup/).
    writeBackrestConfig(stack);
    if (!existsSync(join(p.data, "PG_VERSION"))) {
      asPostgres(join(bin, "initdb"), ["-D", p.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]);
    }
    const [cmd, args] = asServiceUser(join(bin, "postgres"), [
      "-D",
      p.data,
      "-p",
      String(stack.pgPort),
      "-k",
      p.run,
      "-c",
      "listen_addresses=127.0.0.1",
      ...POSTGRES_SETTINGS.flatMap((setting) => ["-c", setting]),
      ...archiveSettings(stack).flatMap((setting) => ["-c", setting]),
    ]);
    writePid(p.pid, startDetached(cmd, args, p.log));
  }
  const admin = stack.adminDatabaseUrl;
  await waitForService("PostgreSQL", () => sqlAnswers(admin), 60_000, p.log);
  await ensureRoleAndDatabase(stack, admin);
  await ensureArchiving(stack, admin);
}

/**
 * The stanza exists once the cluster archives its WAL. A cluster started by an older checkout
 * (without archive_mode) keeps running as it is: it is told how to get archiving.
 */
async function ensureArchiving(stack: LocalStack, adminUrl: string): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  let mode: string | undefined;
  try {
    mode = (await sql<{ archive_mode: string }[]>`show archive_mode`)[0]?.archive_mode;
  } finally {
    await sql.end();
  }
  if (mode !== "on") {
    console.warn(
      "stack: PostgreSQL runs without WAL archiving (started by an older checkout): backups need it; restart it with `bun run stack down && bun run stack up`",
    );
    return;
  }
  writeBackrestConfig(stack);
  ensureStanza(stack);
}

async function ensureRoleAndDatabase(stack: LocalStack, adminUrl: string): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [role] = await sql`select 1 from pg_roles where rolname = ${stack.user}`;
    if (!role) await sql.unsafe(`create role ${stack.user} login password '${stack.password}'`);
    const [db] = await sql`select 1 from pg_database where datname = ${stack.database}`;
    if (!db) await sql.unsafe(`create database ${stack.database} owner ${stack.user}`);
    await ensureLogins(sql, Object.values(stack.logins));
  } finally {
    await sql.end();
  }
}

/**
 * The login users of the processes, each a member of one group role. The group roles are migration
 * 0009's (it creates them when missing, if its role may); created here too, as the superuser, so
 * the logins exist before any database is migrated. Also compose's init script (compose/postgres/).
 */
export async function ensureLogins(sql: postgres.Sql, logins: readonly DbLogin[]): Promise<void> {
  for (const login of logins) {
    if (login.member !== "pg_monitor") {
      const [group] = await sql`select 1 from pg_roles where rolname = ${login.member}`;
      if (!group) await sql.unsafe(`create role ${login.member} nologin`);
    }
    const [user] = await sql`select 1 from pg_roles where rolname = ${login.user}`;
    if (!user) await sql.unsafe(`create role ${login.user} login password '${login.password}'`);
    await sql.unsafe(`grant ${login.member} to ${login.user}`);
  }
}

/** Server connections of the key-refresh alias: each edge replica's refresh holds one for milliseconds. */
export const KEYS_POOL_SIZE = 2;

/** Where a pgbouncer listens, what it pools to and how it authenticates clients. */
export interface PgbouncerSite {
  database: string;
  /** May run SHOW POOLS/STATS on the admin console: the exporter's login and the operators' owner (runbooks). */
  statsUsers: string[];
  /** May PAUSE/RESUME pools on the admin console (the local stack's owner: bun run pg-switchover); none in compose. */
  adminUsers?: string[];
  listenAddr: string;
  listenPort: number;
  /** Postgres, as pgbouncer reaches it. */
  serverHost: string;
  serverPort: number;
  authFile: string;
}

/**
 * pgbouncer's configuration: the local stack's (startPgbouncer) and compose.yaml's
 * (compose/pgbouncer/pgbouncer.ini, written by `bun tools/compose-files.ts`) differ only in the
 * addresses and files of `site`; every pooling setting is this one list.
 */
export function pgbouncerIni(site: PgbouncerSite): string {
  return [
    "[databases]",
    `${site.database} = host=${site.serverHost} port=${site.serverPort} dbname=${site.database}`,
    // The edge's key refresh (API_KEYS_DATABASE_URL): the same database with a pool of its own, so
    // a flood of slow stats queries cannot hold back a revocation (docs/security.md, "Database roles").
    `${site.database}${KEYS_DATABASE_SUFFIX} = host=${site.serverHost} port=${site.serverPort} dbname=${site.database} pool_size=${KEYS_POOL_SIZE}`,
    // Any other database (e.g. the tests' throwaway ones) by the same name on the same cluster.
    `* = host=${site.serverHost} port=${site.serverPort}`,
    "",
    "[pgbouncer]",
    `listen_addr = ${site.listenAddr}`,
    `listen_port = ${site.listenPort}`,
    "unix_socket_dir =",
    "auth_type = plain",
    `auth_file = ${site.authFile}`,
    "pool_mode = transaction",
    // May run SHOW POOLS/STATS on the admin console: prometheus-pgbouncer-exporter (tools/stack/monitoring.ts).
    `stats_users = ${site.statsUsers.join(", ")}`,
    ...(site.adminUsers?.length ? [`admin_users = ${site.adminUsers.join(", ")}`] : []),
    "max_client_conn = 1000",
    "default_pool_size = 20",
    "reserve_pool_size = 5",
    // A client waiting this long for a server connection gets an error (and the worker backs
    // off with paused partitions) rather than hanging through a long database outage.
    "query_wait_timeout = 5",
    // After Postgres was unreachable, try logging in again after 1 s (default 15 s).
    "server_login_retry = 1",
    "server_reset_query =",
    "ignore_startup_parameters = extra_float_digits,options,search_path",
    "",
  ].join("\n");
}

/** pgbouncer's configuration for this stack. */
function localPgbouncerIni(stack: LocalStack, usersFile: string): string {
  return pgbouncerIni({
    database: stack.database,
    statsUsers: [stack.user, stack.logins.monitor.user],
    // PAUSE/RECONNECT/RESUME around a planned switchover (tools/pg-switchover.ts), with PG_HA only.
    adminUsers: stack.pgHa ? [stack.user] : [],
    listenAddr: "127.0.0.1",
    listenPort: stack.pgbouncerPort,
    serverHost: "127.0.0.1",
    serverPort: stack.pgPort,
    authFile: usersFile,
  });
}

/** pgbouncer's auth file: the owner and every login user, plain passwords (loopback only). */
function pgbouncerUserlist(stack: LocalStack): string {
  return [{ user: stack.user, password: stack.password }, ...Object.values(stack.logins)]
    .map((u) => `"${u.user}" "${u.password}"\n`)
    .join("");
}

export async function startPgbouncer(stack: LocalStack): Promise<void> {
  const p = pgPaths(stack);
  const ini = localPgbouncerIni(stack, p.bouncerUsers);
  const userlist = pgbouncerUserlist(stack);
  const running = readPid(p.bouncerPid);
  if (running === null) {
    if (await portOpen(stack.pgbouncerPort)) {
      throw new Error(`port ${stack.pgbouncerPort} is in use by another process; set STACK_PGBOUNCER_PORT`);
    }
    writeFileSync(p.bouncerUsers, userlist);
    writeFileSync(p.bouncerIni, ini);
    chmodSync(p.bouncerUsers, 0o600);
    ownByServiceUser(p.root);
    const [cmd, args] = asServiceUser("pgbouncer", [p.bouncerIni]);
    writePid(p.bouncerPid, startDetached(cmd, args, p.bouncerLog));
  } else if (
    !existsSync(p.bouncerIni) ||
    readFileSync(p.bouncerIni, "utf8") !== ini ||
    readFileSync(p.bouncerUsers, "utf8") !== userlist
  ) {
    // A stack started by an older checkout: apply this one's settings (e.g. stats_users, users)
    // without dropping clients. SIGHUP makes pgbouncer reload its configuration and auth files.
    writeFileSync(p.bouncerIni, ini);
    writeFileSync(p.bouncerUsers, userlist);
    process.kill(running, "SIGHUP");
  }
  await waitForService("pgbouncer", () => sqlAnswers(stack.databaseUrl), 30_000, p.bouncerLog);
}

export async function stopPostgres(stack: LocalStack): Promise<boolean> {
  // SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
  return stopPidFile(pgPaths(stack).pid, "SIGINT");
}

export async function stopPgbouncer(stack: LocalStack): Promise<boolean> {
  // SIGTERM: pgbouncer's immediate shutdown (its SIGINT waits for every client to go idle).
  return stopPidFile(pgPaths(stack).bouncerPid, "SIGTERM");
}

/**
 * kill -9 of the postmaster and of every backend and auxiliary process at once: a crash, no
 * shutdown checkpoint; the next start runs crash recovery. Returns the postmaster's pid, null when
 * none ran.
 */
export async function killPostgres(stack: LocalStack): Promise<number | null> {
  return killPidFile(pgPaths(stack).pid);
}

/** kill -9 of pgbouncer: its clients' connections break without a goodbye. Returns its pid, null when none ran. */
export async function killPgbouncer(stack: LocalStack): Promise<number | null> {
  return killPidFile(pgPaths(stack).bouncerPid);
}

export function postgresPid(stack: LocalStack): number | null {
  return readPid(pgPaths(stack).pid);
}

export function pgbouncerPid(stack: LocalStack): number | null {
  return readPid(pgPaths(stack).bouncerPid);
}
