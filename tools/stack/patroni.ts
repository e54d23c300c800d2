// PG_HA=1: the local stack's Postgres as a Patroni cluster. A 3-member etcd (v2 API on, Patroni
// 3.0's python3-etcd speaks only v2) holds the leader key; two Patroni members run a leader and a
// synchronous standby (synchronous_mode, pg_rewind); HAProxy listens on STACK_PG_PORT and sends
// each connection to the member whose Patroni REST API answers 200 on /primary, so pgbouncer, the
// exporters, migrations and DATABASE_DIRECT_URL follow the leader without knowing there are two.
// Every process is started detached with a pid file and stopped by that pid (processes.ts).
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { EtcdMember, LocalStack, PatroniMember } from "../../shared/local-stack.ts";
import { STANZA, backrestPaths } from "../backup/pgbackrest.ts";
import { POSTGRES_SETTINGS, haPaths, pgBinDir } from "./pg-paths.ts";
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

/** Patroni's scope: the cluster's name in etcd (/service/qrscan/…) and in patronictl. */
export const PATRONI_SCOPE = "qrscan";

/**
 * Patroni's timing. The test-friendly values make a failover take seconds: the leader key expires
 * `ttl` seconds after the leader's last renewal, and a member acts every `loop_wait`. Production
 * keeps Patroni's defaults (ttl 30, loop_wait 10, retry_timeout 10: a failover within about 30 to
 * 40 seconds, and no promotion because etcd was slow for a few seconds). Patroni needs
 * ttl >= loop_wait + 2 * retry_timeout, or a leader could lose its key while retrying etcd.
 */
export const PATRONI_TIMING = { ttl: 8, loop_wait: 1, retry_timeout: 3 } as const;
export const PATRONI_PRODUCTION_TIMING = { ttl: 30, loop_wait: 10, retry_timeout: 10 } as const;

/** The replication login Patroni creates at bootstrap and the standby streams with (loopback, trust). */
const REPLICATION = { username: "replicator", password: "replicator" } as const;
const SUPERUSER = { username: "postgres", password: "postgres" } as const;

const etcdHosts = (stack: LocalStack) => stack.etcdMembers.map((m) => `127.0.0.1:${m.clientPort}`).join(",");

/** The archive_command of one member: pgBackRest with that member's data directory as pg1. */
export function haArchiveCommand(stack: LocalStack, member: PatroniMember): string {
  const data = haPaths(stack).member(member.name).data;
  return `pgbackrest --config=${backrestPaths(stack).config} --stanza=${STANZA} --pg1-path=${data} archive-push %p`;
}

/** Patroni's configuration of `member`, as JSON (a subset of YAML, which Patroni reads). */
export function patroniConfig(stack: LocalStack, member: PatroniMember): Record<string, unknown> {
  const p = haPaths(stack).member(member.name);
  const settings = Object.fromEntries(POSTGRES_SETTINGS.map((s) => s.split("=", 2) as [string, string]));
  return {
    scope: PATRONI_SCOPE,
    name: member.name,
    restapi: { listen: `127.0.0.1:${member.restPort}`, connect_address: `127.0.0.1:${member.restPort}` },
    etcd: { hosts: etcdHosts(stack), protocol: "http" },
    bootstrap: {
      dcs: {
        ...PATRONI_TIMING,
        // The leader commits only once the standby has the WAL; Patroni promotes only that standby.
        synchronous_mode: true,
        // Not "strict": with the standby gone the leader keeps accepting writes (alone), rather
        // than stop the product; the standby is the synchronous one again once it caught up.
        synchronous_mode_strict: false,
        // A standby more than 1 MB behind is never promoted (it is not the synchronous one anyway).
        maximum_lag_on_failover: 1048576,
        postgresql: {
          // A failed leader rejoins as a replica by rewinding its diverged WAL, not by a new copy.
          use_pg_rewind: true,
          use_slots: true,
          parameters: {
            ...settings,
            wal_level: "replica",
            hot_standby: "on",
            wal_log_hints: "on",
            max_wal_senders: 10,
            max_replication_slots: 10,
            archive_mode: "on",
            archive_timeout: 60,
            synchronous_commit: "on",
          },
        },
      },
      initdb: [{ encoding: "UTF8" }, { locale: "C" }, { username: SUPERUSER.username }],
    },
    postgresql: {
      listen: `127.0.0.1:${member.pgPort}`,
      connect_address: `127.0.0.1:${member.pgPort}`,
      data_dir: p.data,
      bin_dir: pgBinDir(),
      pgpass: p.pgpass,
      authentication: {
        superuser: SUPERUSER,
        replication: REPLICATION,
        rewind: SUPERUSER,
      },
      // Loopback only, as the single-server stack (initdb --auth=trust).
      pg_hba: [
        "local all all trust",
        "local replication all trust",
        "host all all 127.0.0.1/32 trust",
        "host replication all 127.0.0.1/32 trust",
      ],
      parameters: {
        unix_socket_directories: p.run,
        // Per member: pgBackRest finds this member's data directory (tools/backup/pgbackrest.ts).
        archive_command: haArchiveCommand(stack, member),
      },
    },
    tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
  };
}

/**
 * HAProxy on STACK_PG_PORT: a TCP proxy to whichever member's REST API answers 200 on /primary
 * (only the leader does). When a member stops being the leader its sessions are cut at once
 * (on-marked-down shutdown-sessions), so no client keeps writing to a demoted server.
 */
export function haproxyConfig(stack: LocalStack, check = "/primary"): string {
  return [
    "global",
    "  maxconn 2000",
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    // pgbouncer keeps idle server connections; longer than its server_idle_timeout (10 minutes).
    "  timeout client 30m",
    "  timeout server 30m",
    "  timeout check 1s",
    "listen postgres",
    `  bind 127.0.0.1:${stack.pgPort}`,
    `  option httpchk GET ${check}`,
    "  http-check expect status 200",
    // Checked every 500 ms: down after 2 failed checks, up after 1 good one.
    "  default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions",
    ...stack.patroniMembers.map((m) => `  server ${m.name} 127.0.0.1:${m.pgPort} check port ${m.restPort}`),
    "listen stats",
    "  mode http",
    `  bind 127.0.0.1:${stack.haproxyStatsPort}`,
    "  stats enable",
    "  stats uri /",
    "",
  ].join("\n");
}

async function httpJson<T>(url: string, timeoutMs = 2000): Promise<{ status: number; body: T | null }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body: T | null = null;
  try {
    body = JSON.parse(text) as T;
  } catch {
    body = null;
  }
  return { status: res.status, body };
}

async function etcdHealthy(m: EtcdMember): Promise<boolean> {
  try {
    const { body } = await httpJson<{ health: string }>(`http://127.0.0.1:${m.clientPort}/health`);
    return body?.health === "true";
  } catch {
    return false;
  }
}

export async function startEtcd(stack: LocalStack): Promise<void> {
  const cluster = stack.etcdMembers.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(",");
  for (const m of stack.etcdMembers) {
    const p = haPaths(stack).etcd(m.name);
    if (readPid(p.pid) !== null) continue;
    for (const port of [m.clientPort, m.peerPort]) {
      if (await portOpen(port)) throw new Error(`port ${port} (etcd ${m.name}) is in use; set STACK_ETCD_PORT`);
    }
    mkdirSync(p.dir, { recursive: true });
    const fresh = !existsSync(join(p.data, "member"));
    const args = [
      `--name=${m.name}`,
      `--data-dir=${p.data}`,
      `--listen-client-urls=http://127.0.0.1:${m.clientPort}`,
      `--advertise-client-urls=http://127.0.0.1:${m.clientPort}`,
      `--listen-peer-urls=http://127.0.0.1:${m.peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
      `--initial-cluster=${cluster}`,
      `--initial-cluster-token=${PATRONI_SCOPE}-${stack.etcdMembers[0]?.clientPort}`,
      `--initial-cluster-state=${fresh ? "new" : "existing"}`,
      "--enable-v2=true",
      // Loopback: faster elections than the defaults (100 ms heartbeat, 1 s election).
      "--heartbeat-interval=100",
      "--election-timeout=1000",
      "--log-level=warn",
    ];
    writePid(p.pid, startDetached("etcd", args, p.log));
  }
  for (const m of stack.etcdMembers) {
    await waitForService(`etcd ${m.name}`, () => etcdHealthy(m), 60_000, haPaths(stack).etcd(m.name).log);
  }
}

export interface ClusterMember {
  name: string;
  role: "leader" | "sync_standby" | "replica" | string;
  state: string;
  host: string;
  port: number;
  timeline?: number;
  lag?: number | string;
}

/** Patroni's view of the cluster (GET /cluster) from the first member that answers; null when none does. */
export async function patroniCluster(stack: LocalStack): Promise<ClusterMember[] | null> {
  for (const m of stack.patroniMembers) {
    try {
      const { status, body } = await httpJson<{ members: ClusterMember[] }>(`http://127.0.0.1:${m.restPort}/cluster`);
      if (status === 200 && body) return body.members;
    } catch {
      // this member's API is down; ask the next one
    }
  }
  return null;
}

/** The member names holding the leader and the synchronous standby, when both are running. */
export const leaderOf = (members: ClusterMember[] | null) =>
  members?.find((m) => m.role === "leader" && m.state === "running")?.name ?? null;
export const syncStandbyOf = (members: ClusterMember[] | null) =>
  members?.find((m) => m.role === "sync_standby" && (m.state === "streaming" || m.state === "running"))?.name ?? null;

export function patroniPid(stack: LocalStack, name: string): number | null {
  return readPid(haPaths(stack).member(name).pid);
}

/** The postmaster's pid of member `name`, from its postmaster.pid (null when it is not running). */
export function postmasterPid(stack: LocalStack, name: string): number | null {
  return readPid(join(haPaths(stack).member(name).data, "postmaster.pid"));
}

/** HAProxy's view of each member (its stats CSV): "UP", "DOWN", "DOWN 1/2"…; null when it does not answer. */
export async function haproxyServerStates(stack: LocalStack): Promise<Record<string, string> | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${stack.haproxyStatsPort}/;csv`, { signal: AbortSignal.timeout(1_000) });
    const [header, ...rows] = (await res.text()).split("\n").map((l) => l.split(","));
    const status = header?.indexOf("status") ?? -1;
    const states: Record<string, string> = {};
    for (const r of rows) {
      if (r[0] === "postgres" && r[1] && r[1] !== "FRONTEND" && r[1] !== "BACKEND") states[r[1]] = r[status] ?? "";
    }
    return states;
  } catch {
    return null;
  }
}

export function haproxyPid(stack: LocalStack): number | null {
  return readPid(haPaths(stack).haproxyPid);
}

function ownByServiceUser(path: string): void {
  if (isRoot()) run("chown", ["-R", "postgres:postgres", path]);
}

/** Starts Patroni for `member` unless it runs (its Postgres is started, cloned or rewound by Patroni). */
export async function startPatroniMember(stack: LocalStack, member: PatroniMember): Promise<void> {
  const p = haPaths(stack).member(member.name);
  if (readPid(p.pid) !== null) return;
  for (const port of [member.pgPort, member.restPort]) {
    if (await portOpen(port)) {
      throw new Error(`port ${port} (Patroni ${member.name}) is in use; set STACK_PATRONI_PG_PORT / _REST_PORT`);
    }
  }
  mkdirSync(p.run, { recursive: true });
  writeFileSync(p.config, `${JSON.stringify(patroniConfig(stack, member), null, 2)}\n`);
  chmodSync(p.config, 0o600);
  ownByServiceUser(p.dir);
  const [cmd, args] = asServiceUser("patroni", [p.config]);
  writePid(p.pid, startDetached(cmd, args, p.log));
}

export async function startHaproxy(stack: LocalStack, check = "/primary"): Promise<void> {
  const p = haPaths(stack);
  const cfg = haproxyConfig(stack, check);
  if (readPid(p.haproxyPid) !== null) {
    if (existsSync(p.haproxyConfig) && readFileSync(p.haproxyConfig, "utf8") === cfg) return;
    await stopPidFile(p.haproxyPid);
  }
  if (await portOpen(stack.pgPort)) {
    throw new Error(`port ${stack.pgPort} is in use by another process; set STACK_PG_PORT to a free port`);
  }
  writeFileSync(p.haproxyConfig, cfg);
  run("haproxy", ["-c", "-q", "-f", p.haproxyConfig]);
  // -db: in the foreground, so the pid is haproxy's own and `down` stops it by that pid.
  writePid(p.haproxyPid, startDetached("haproxy", ["-db", "-f", p.haproxyConfig], p.haproxyLog));
  await waitForService("HAProxy", () => portOpen(stack.pgPort), 10_000, p.haproxyLog);
}

/**
 * Waits until Patroni reports a running leader and a streaming synchronous standby (the cluster
 * is HA, not only up); returns the leader's name.
 */
export async function waitForHa(stack: LocalStack, timeoutMs = 120_000): Promise<string> {
  let last: ClusterMember[] | null = null;
  const logs = stack.patroniMembers.map((m) => haPaths(stack).member(m.name).log);
  await waitForService(
    "Patroni: a running leader and a streaming synchronous standby",
    async () => {
      last = await patroniCluster(stack);
      return leaderOf(last) !== null && syncStandbyOf(last) !== null;
    },
    timeoutMs,
    logs.find((l) => existsSync(l)),
  ).catch((error: Error) => {
    throw new Error(`${error.message}\nlast /cluster: ${JSON.stringify(last)}`);
  });
  return leaderOf(last) as string;
}

/** etcd, both Patroni members (together: one bootstraps, the other clones it) and HAProxy. */
export async function startHa(stack: LocalStack): Promise<void> {
  mkdirSync(haPaths(stack).root, { recursive: true });
  await startEtcd(stack);
  for (const m of stack.patroniMembers) await startPatroniMember(stack, m);
  await startHaproxy(stack);
  await waitForHa(stack);
}

/**
 * Stops HAProxy, then the members, the standbys before the leader (stopping the leader first
 * would make the standby take over on the way down), then etcd; each by its pid.
 */
export async function stopHa(stack: LocalStack): Promise<void> {
  const p = haPaths(stack);
  await stopPidFile(p.haproxyPid);
  const leader = leaderOf(await patroniCluster(stack));
  const order = [...stack.patroniMembers].sort((a, b) => Number(a.name === leader) - Number(b.name === leader));
  // SIGTERM: Patroni stops its Postgres (fast shutdown) and releases the leader key.
  for (const m of order) await stopPidFile(p.member(m.name).pid, "SIGTERM");
  for (const m of stack.patroniMembers) {
    // A postmaster Patroni left behind (Patroni killed alone): fast shutdown by its own pid.
    await stopPidFile(join(p.member(m.name).data, "postmaster.pid"), "SIGINT").catch(() => false);
  }
  for (const m of stack.etcdMembers) await stopPidFile(p.etcd(m.name).pid);
}

/**
 * kill -9 of a whole member, as when its machine dies: Patroni and its postmaster with every
 * backend at once. Returns the pids killed.
 */
export async function killMember(stack: LocalStack, name: string): Promise<{ patroni: number; postmaster: number }> {
  const patroni = patroniPid(stack, name);
  const postmaster = postmasterPid(stack, name);
  if (patroni === null || postmaster === null) {
    throw new Error(`member ${name}: Patroni pid ${patroni}, postmaster pid ${postmaster}: not both running`);
  }
  // The postmaster is Patroni's child: killPidFile kills the whole tree in one pass.
  await killPidFile(haPaths(stack).member(name).pid);
  await killPidFile(join(haPaths(stack).member(name).data, "postmaster.pid"));
  return { patroni, postmaster };
}

/** `status`'s lines: every member with its role, Patroni's and the postmaster's pid; etcd; HAProxy. */
export async function haStatusLines(stack: LocalStack): Promise<string[]> {
  const members = await patroniCluster(stack);
  const lines: string[] = [];
  for (const m of stack.patroniMembers) {
    const seen = members?.find((x) => x.name === m.name);
    const role = seen ? (seen.role === "sync_standby" ? "sync standby" : seen.role) : "-";
    const patroni = patroniPid(stack, m.name);
    const pm = postmasterPid(stack, m.name);
    lines.push(
      `${`patroni-${m.name}`.padEnd(12)} ${(patroni ? `running (pid ${patroni})` : "stopped").padEnd(22)} ` +
        `${role.padEnd(12)} ${seen?.state ?? "unknown"}, postgres pid ${pm ?? "-"} on 127.0.0.1:${m.pgPort}, REST http://127.0.0.1:${m.restPort}`,
    );
  }
  for (const m of stack.etcdMembers) {
    const pid = readPid(haPaths(stack).etcd(m.name).pid);
    lines.push(
      `${m.name.padEnd(12)} ${(pid ? `running (pid ${pid})` : "stopped").padEnd(22)} http://127.0.0.1:${m.clientPort}`,
    );
  }
  const hp = haproxyPid(stack);
  lines.push(
    `${"haproxy".padEnd(12)} ${(hp ? `running (pid ${hp})` : "stopped").padEnd(22)} 127.0.0.1:${stack.pgPort} -> the leader (stats http://127.0.0.1:${stack.haproxyStatsPort}/)`,
  );
  lines.push(`patronictl:  patronictl -c ${haPaths(stack).patronictlConfig} list`);
  return lines;
}
