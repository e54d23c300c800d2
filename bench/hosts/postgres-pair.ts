// The multi-host bench's Postgres: a primary with pgbouncer beside it (one simulated host, as the
// product deploys it) and a synchronous standby on another, streaming replication with
// synchronous_standby_names and synchronous_commit=on, so each commit waits for the standby as in
// the HA cluster. Fresh clusters per run in /var/tmp (the `postgres` user must reach them), run as
// that user inside their namespaces; the server settings and pgbouncer's are the stack's own
// (POSTGRES_SETTINGS, pgbouncerIni).
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import type { LocalStack } from "../../shared/local-stack.ts";
import { pgBinDir } from "../../tools/stack/pg-paths.ts";
import { POSTGRES_SETTINGS, ensureLogins, pgbouncerIni } from "../../tools/stack/postgres.ts";
import { asServiceUser, run, startDetached, stopPid, waitForService } from "../../tools/stack/processes.ts";
import { waitFor } from "../../tools/wait.ts";
import { type Host, inNs } from "./netns.ts";

/** The standby's application_name, the one synchronous_standby_names names. */
const STANDBY_NAME = "standby";

async function answers(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, connect_timeout: 2, prepare: false, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** A command as the `postgres` user inside `host`'s namespace: [cmd, args] for startDetached/run. */
function inHostAsPostgres(host: Host, cmd: string, args: string[]): [string, string[]] {
  const [c, a] = asServiceUser(cmd, args);
  const [ip, ...rest] = inNs(host.ns) as [string, ...string[]];
  return [ip, [...rest, c, ...a]];
}

export interface PostgresPair {
  primaryPid: number;
  standbyPid: number;
  pgbouncerPid: number;
  /** The primary's postmaster and the standby's (for their backends: their children). */
  stop(): Promise<void>;
}

/**
 * Starts the pair and pgbouncer, creates the stack's role, database and logins (`stack`'s names)
 * and waits until the standby is the synchronous one. `stack`'s URLs must name the primary's address.
 */
export async function startPostgresPair(opts: {
  dir: string;
  primary: Host;
  standby: Host;
  subnet: string;
  port: number;
  pgbouncerPort: number;
  stack: LocalStack;
}): Promise<PostgresPair> {
  const { dir, primary, standby, port, stack } = opts;
  const bin = pgBinDir();
  rmSync(dir, { recursive: true, force: true });
  const p = {
    primary: join(dir, "primary"),
    standby: join(dir, "standby"),
    runPrimary: join(dir, "run-primary"),
    runStandby: join(dir, "run-standby"),
  };
  for (const d of [p.runPrimary, p.runStandby]) mkdirSync(d, { recursive: true });
  run("chown", ["-R", "postgres:postgres", dir]);
  const [initdb, initArgs] = asServiceUser(join(bin, "initdb"), [
    "-D",
    p.primary,
    "-U",
    "postgres",
    "--auth=trust",
    "-E",
    "UTF8",
    "--locale=C",
  ]);
  run(initdb, initArgs);
  // Trust inside the private subnet only (the namespaces'; nothing outside can reach it).
  writeFileSync(
    join(p.primary, "pg_hba.conf"),
    `local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ${opts.subnet}.0/24 trust\nhost replication all ${opts.subnet}.0/24 trust\n`,
  );
  const server = (data: string, runDir: string, listen: string) => [
    "-D",
    data,
    "-p",
    String(port),
    "-k",
    runDir,
    "-c",
    `listen_addresses=${listen}`,
    ...POSTGRES_SETTINGS.flatMap((setting) => ["-c", setting]),
    "-c",
    "synchronous_commit=on",
  ];
  const [pc, pa] = inHostAsPostgres(
    primary,
    join(bin, "postgres"),
    server(p.primary, p.runPrimary, `${primary.addr},127.0.0.1`),
  );
  const primaryPid = startDetached(pc, pa, join(dir, "primary.log"));
  const adminUrl = `postgres://postgres@${primary.addr}:${port}/postgres`;
  await waitForService("PostgreSQL primary", () => answers(adminUrl), 60_000, join(dir, "primary.log"));
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create role ${stack.user} login password '${stack.password}'`);
    await admin.unsafe(`create database ${stack.database} owner ${stack.user}`);
    await ensureLogins(admin, Object.values(stack.logins));

    // The standby: a base backup over the (delayed) network, then streaming from the primary.
    const conninfo = `host=${primary.addr} port=${port} user=postgres application_name=${STANDBY_NAME}`;
    const [bc, ba] = inHostAsPostgres(standby, join(bin, "pg_basebackup"), [
      "-d",
      conninfo,
      "-D",
      p.standby,
      "-X",
      "stream",
      "-R",
      "-c",
      "fast",
    ]);
    run(bc, ba);
    // -R wrote primary_conninfo; this one names the standby for synchronous_standby_names.
    writeFileSync(join(p.standby, "postgresql.auto.conf"), `primary_conninfo = '${conninfo}'\n`, { flag: "a" });
    const [sc, sa] = inHostAsPostgres(standby, join(bin, "postgres"), server(p.standby, p.runStandby, standby.addr));
    const standbyPid = startDetached(sc, sa, join(dir, "standby.log"));
    await admin.unsafe(`alter system set synchronous_standby_names = '${STANDBY_NAME}'`);
    await admin`select pg_reload_conf()`;
    await waitFor(
      "the standby to stream as the synchronous one (pg_stat_replication.sync_state)",
      async () =>
        (await admin`select application_name, state, sync_state from pg_stat_replication`).map((r) => ({ ...r })),
      (rows) => rows.some((r) => r.application_name === STANDBY_NAME && r.sync_state === "sync"),
      60_000,
      250,
    );

    // pgbouncer beside the primary, reaching it over the host's own loopback.
    const ini = join(dir, "pgbouncer.ini");
    const users = join(dir, "userlist.txt");
    writeFileSync(
      users,
      [{ user: stack.user, password: stack.password }, ...Object.values(stack.logins)]
        .map((u) => `"${u.user}" "${u.password}"\n`)
        .join(""),
    );
    chmodSync(users, 0o600);
    writeFileSync(
      ini,
      pgbouncerIni({
        database: stack.database,
        statsUsers: [stack.user, stack.logins.monitor.user],
        listenAddr: primary.addr,
        listenPort: opts.pgbouncerPort,
        serverHost: "127.0.0.1",
        serverPort: port,
        authFile: users,
      }),
    );
    run("chown", ["postgres:postgres", ini, users]);
    const [gc, ga] = inHostAsPostgres(primary, "pgbouncer", [ini]);
    const pgbouncerPid = startDetached(gc, ga, join(dir, "pgbouncer.log"));
    await waitForService("pgbouncer", () => answers(stack.databaseUrl), 30_000, join(dir, "pgbouncer.log"));
    return {
      primaryPid,
      standbyPid,
      pgbouncerPid,
      async stop() {
        await stopPid(pgbouncerPid, "SIGTERM", 10_000);
        // SIGINT: Postgres' fast shutdown. The primary first would wait on nothing: no commits run.
        await Promise.all([stopPid(primaryPid, "SIGINT", 30_000), stopPid(standbyPid, "SIGINT", 30_000)]);
      },
    };
  } finally {
    await admin.end();
  }
}
