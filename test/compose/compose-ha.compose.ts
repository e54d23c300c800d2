// compose.ha.yaml for real on the project's engine (tools/engine.ts), from the images
// tools/compose-images.ts built here: etcd-1..3, the Patroni members pg-1 and pg-2, HAProxy as
// `postgres` and pgbouncer in front of it (only these: the rest of compose.yaml is the compose stage's,
// compose.compose.ts). Rows are written through pgbouncer by a steady loop; the leader's container is
// killed (SIGKILL); the other member must become the leader, writes through pgbouncer must succeed
// again by themselves, and every row acknowledged before, during and after must be stored. Then the
// killed container is started again and must rejoin as the synchronous standby with the same rows.
// Last, the new leader is frozen (`docker pause`): the same, through HAProxy cutting its sessions,
// and once unpaused it steps down and rejoins. The failover times (fault to the first acknowledged
// write) are printed. Not named *.test.ts: `bun test`
// alone never runs it (`bun run test:compose` does).
//
// The configuration is compose.yaml + compose.local-images.yaml + compose.ha.yaml as
// `docker-compose config` resolves it, with only the host side of the published ports moved to free
// ports (compose.yaml's are the local stack's defaults, which a stack on this machine may hold; an
// overlay cannot remove a published port).
//
// Mutations tried by hand, each caught: HAProxy checking /health instead of /primary (connections
// reach the replica too: writes before the kill fail with "cannot execute INSERT in a read-only
// transaction"); synchronous_mode off (the first step times out: pg-2 a "replica", never the
// "sync_standby"); HAProxy without `on-marked-down shutdown-sessions` (the kill still passes: a
// killed container's connections close by themselves; the frozen leader's do not, and no write is
// acknowledged after the pause: "timed out after 60000 ms waiting for a write started after the
// pause acknowledged through pgbouncer").
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { LOCAL_HA_COMPOSE_FILE } from "../../tools/compose-images.ts";
import { engineUp } from "../../tools/engine.ts";
import { ROOT } from "../../tools/harness.ts";
import { freePort } from "../../tools/stack/processes.ts";
import { waitFor } from "../helpers/wait.ts";

const PROJECT = "qrscan-ha-ci";
const SERVICES = ["etcd-1", "etcd-2", "etcd-3", "pg-1", "pg-2", "postgres", "pgbouncer"];
const MEMBERS: string[] = ["pg-1", "pg-2"];
const IMAGES = ["qrscan-patroni:local", "qrscan-haproxy:local", "qrscan-pgbouncer:local"];
const PASSWORD = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex");
/**
 * From the kill to the first write acknowledged through pgbouncer: the leader key's ttl (15 s), a
 * Patroni loop (5 s), HAProxy's two checks (1 s apart), pgbouncer's reconnect, and room.
 */
const FAILOVER_BOUND_MS = 60_000;
const WRITERS = 4;

let env: Record<string, string> = {};
let dir = "";
let file = "";
let pgbouncerPort = 0;
let db: postgres.Sql | undefined;

// ---------------------------------------------------------------------------------------------
// Commands

function run(cmd: string[], timeoutMs = 120_000) {
  const r = spawnSync(cmd[0] as string, cmd.slice(1), {
    cwd: ROOT,
    env,
    encoding: "utf8",
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

function must(cmd: string[], timeoutMs?: number): string {
  const r = run(cmd, timeoutMs);
  if (r.status !== 0)
    throw new Error(`\`${cmd.join(" ")}\` exited with ${r.status}: ${(r.stderr || r.stdout).trim().slice(-3000)}`);
  return r.stdout;
}

const compose = (args: string[], timeoutMs?: number) =>
  must(["docker-compose", "-f", file, "--project-directory", ROOT, "-p", PROJECT, ...args], timeoutMs);
const containerOf = (service: string) => compose(["ps", "-q", service]).trim();

interface Member {
  name: string;
  role: string;
  state: string;
  timeline?: number;
  lag?: number | string;
}

/** Patroni's view of the cluster (GET /cluster), asked of one member's REST API from inside it. */
function cluster(service: string): Member[] {
  const out = must(["docker", "exec", containerOf(service), "patroni-rest", "/cluster"], 15_000);
  return (JSON.parse(out) as { members: Member[] }).members;
}
const clusterOrNothing = (service: string): Member[] => {
  try {
    return cluster(service);
  } catch {
    return [];
  }
};

/** psql in a member's container, on its socket, as the superuser. */
const memberSql = (service: string, query: string) =>
  must(["docker", "exec", containerOf(service), "psql", "-U", "postgres", "-d", "qrscan", "-Atc", query]).trim();

// ---------------------------------------------------------------------------------------------
// The write loop: each writer inserts its next id through pgbouncer, records what was acknowledged

interface Write {
  id: number;
  startedAt: number;
  endedAt: number;
  ok: boolean;
  error?: string;
}

function startWrites(sql: postgres.Sql, started: number, firstId: number) {
  const writes: Write[] = [];
  let next = firstId;
  let stopping = false;
  const writer = async () => {
    while (!stopping) {
      const id = next++;
      const startedAt = performance.now() - started;
      try {
        await Promise.race([
          sql`insert into ha_probe (id) values (${id})`,
          Bun.sleep(10_000).then(() => Promise.reject(new Error("no answer in 10 s"))),
        ]);
        writes.push({ id, startedAt, endedAt: performance.now() - started, ok: true });
        await Bun.sleep(5);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        writes.push({ id, startedAt, endedAt: performance.now() - started, ok: false, error: message });
        await Bun.sleep(100);
      }
    }
  };
  const running = Array.from({ length: WRITERS }, writer);
  return {
    writes,
    acknowledged: () => writes.filter((w) => w.ok).length,
    async stop() {
      stopping = true;
      await Promise.all(running);
      return writes;
    },
  };
}
let writesRunning: ReturnType<typeof startWrites> | undefined;

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  const engine = await engineUp();
  env = {
    ...(process.env as Record<string, string>),
    DOCKER_HOST: engine.host,
    COMPOSE_FILE: LOCAL_HA_COMPOSE_FILE,
    POSTGRES_PASSWORD: PASSWORD,
  };
  for (const image of IMAGES)
    if (run(["docker", "image", "inspect", image]).status !== 0)
      throw new Error(`${image} is not in the engine: run \`bun tools/compose-images.ts\` first`);
  // The three files as compose resolves them, published ports moved to free ones (JSON is YAML).
  const resolved = Bun.YAML.parse(must(["docker-compose", "config"])) as {
    services: Record<string, { ports?: string[] }>;
  };
  for (const [name, s] of Object.entries(resolved.services)) {
    s.ports = (s.ports ?? []).map((p) => {
      const m = /^127\.0\.0\.1:(\d+):(\d+)(\/tcp)?$/.exec(p);
      if (!m) throw new Error(`${name}: a published port this test cannot move: ${p}`);
      const port = freePort();
      if (name === "pgbouncer") pgbouncerPort = port;
      return `127.0.0.1:${port}:${m[2]}`;
    });
  }
  expect(pgbouncerPort).toBeGreaterThan(0);
  dir = mkdtempSync(join(tmpdir(), "qrscan-compose-ha-"));
  file = join(dir, "compose.json");
  writeFileSync(file, JSON.stringify(resolved));
  // A run that failed before left its project behind: start from nothing.
  compose(["down", "-v", "--remove-orphans", "--timeout", "5"], 180_000);
}, 300_000);

afterAll(async () => {
  await writesRunning?.stop();
  await db?.end({ timeout: 2 });
  if (failures.length > 0) {
    console.log(logs().slice(-30_000));
    // Last, so that the tail of a long CI log still says what failed.
    console.log(`compose HA: ${failures.length} step(s) failed:\n${failures.join("\n")}`);
  }
  if (file) {
    if (process.env.COMPOSE_HA_KEEP !== "1") compose(["down", "-v", "--remove-orphans", "--timeout", "5"], 300_000);
    rmSync(dir, { recursive: true, force: true });
  }
}, 300_000);

/** The containers' logs, printed when a step failed (the tail of each). */
const logs = () =>
  run(["docker-compose", "-f", file, "--project-directory", ROOT, "-p", PROJECT, "logs", "--no-color", "--tail", "40"])
    .stdout;

/** The steps that failed, with their errors: printed again after the containers' logs. */
const failures: string[] = [];
const step = (name: string, body: () => Promise<void>, timeoutMs: number) =>
  test(
    name,
    async () => {
      try {
        await body();
      } catch (error) {
        failures.push(`- ${name}: ${String(error instanceof Error ? error.message : error).slice(0, 2_000)}`);
        throw error;
      }
    },
    timeoutMs,
  );

describe("compose.ha.yaml: Postgres with Patroni behind HAProxy and pgbouncer, on a real engine", () => {
  let leader = "";
  let standby = "";
  let killedId = "";
  let killedPid = "";
  let acknowledged: number[] = [];

  step(
    "up: three etcd members, a leader and a synchronous standby; the roles made once, on the bootstrap leader; pgbouncer reaches the leader",
    async () => {
      const started = performance.now();
      compose(["up", "-d", ...SERVICES], 300_000);
      const members = await waitFor(
        "a leader and a streaming synchronous standby in Patroni's /cluster",
        async () => clusterOrNothing("pg-1"),
        (ms) =>
          ms.some((m) => m.role === "leader" && m.state === "running") &&
          ms.some((m) => m.role === "sync_standby" && ["running", "streaming"].includes(m.state)),
        120_000,
        1_000,
      );
      leader = members.find((m) => m.role === "leader")?.name as string;
      standby = members.find((m) => m.role === "sync_standby")?.name as string;
      expect([leader, standby].sort()).toEqual([...MEMBERS]);
      console.log(`compose HA: up in ${((performance.now() - started) / 1000).toFixed(1)} s; leader ${leader}`);
      // post_bootstrap ran once: on the member that initialised the cluster, never on the other.
      const ranOn = MEMBERS.filter((m) =>
        run(["docker", "logs", containerOf(m)]).stdout.includes("patroni-post-bootstrap: running"),
      );
      expect(ranOn).toEqual([leader]);
      db = postgres(`postgres://qrscan:${PASSWORD}@127.0.0.1:${pgbouncerPort}/qrscan`, {
        max: WRITERS,
        prepare: false,
        connect_timeout: 5,
        onnotice: () => {},
      });
      const [seen] = await db<{ owner: string; recovery: boolean; roles: string }[]>`
      select pg_get_userbyid(d.datdba) as owner, pg_is_in_recovery() as recovery,
             (select string_agg(rolname, ',' order by rolname) from pg_roles
               where rolname in ('qrscan', 'edge', 'worker', 'monitor', 'replicator')) as roles
      from pg_database d where d.datname = current_database()`;
      expect(seen).toEqual({ owner: "qrscan", recovery: false, roles: "edge,monitor,qrscan,replicator,worker" });
      // The standby is the one Postgres waits for at commit.
      expect(memberSql(leader, "show synchronous_standby_names")).toContain(standby);
      await db`create table ha_probe (id bigint primary key, written_at timestamptz not null default now())`;
    },
    420_000,
  );

  step(
    "the leader's container killed (SIGKILL) under steady writes through pgbouncer: a new leader, writes back by themselves, no acknowledged row lost",
    async () => {
      if (!db || !leader) throw new Error("the cluster did not come up (the step above failed)");
      const started = performance.now();
      const at = () => performance.now() - started;
      const load = startWrites(db, started, 1);
      writesRunning = load;
      await waitFor(
        "200 writes acknowledged before the kill",
        async () => load.acknowledged(),
        (n) => n >= 200,
        60_000,
      );
      const beforeKill = load.writes.filter((w) => !w.ok);
      expect({ failedBeforeTheKill: beforeKill.slice(0, 3) }).toEqual({ failedBeforeTheKill: [] });

      const timelineBefore = cluster(leader).find((m) => m.name === leader)?.timeline ?? 0;
      expect(timelineBefore).toBeGreaterThan(0);
      killedId = containerOf(leader);
      killedPid = must(["docker", "inspect", "-f", "{{.State.Pid}}", killedId]).trim();
      // Not spawnSync: the writers go on while the kill is under way.
      const killIssuedAt = at();
      const kill = Bun.spawn(["docker", "kill", "-s", "KILL", killedId], { env, stdout: "ignore", stderr: "pipe" });
      if ((await kill.exited) !== 0)
        throw new Error(`docker kill ${killedId}: ${await new Response(kill.stderr).text()}`);
      const killedAt = at();
      // The roles change now, whatever the checks below find (the next step needs them).
      standby = leader;
      const survivor = MEMBERS.find((m) => m !== leader) as string;
      leader = survivor;
      await waitFor(
        `${survivor} the leader in Patroni's /cluster, promoted (a timeline after ${timelineBefore}; ${standby} was killed)`,
        async () => clusterOrNothing(survivor),
        (ms) =>
          ms.some(
            (m) =>
              m.name === survivor && m.role === "leader" && m.state === "running" && (m.timeline ?? 0) > timelineBefore,
          ),
        FAILOVER_BOUND_MS,
        500,
      );
      const promotedAt = at();
      const firstAck = await waitFor(
        "a write started after the kill acknowledged through pgbouncer",
        async () => load.writes.find((w) => w.ok && w.startedAt > killedAt),
        (w) => w !== undefined,
        FAILOVER_BOUND_MS,
        200,
      );
      // Writes go on on the new leader for a while; none of them may fail any more.
      const steady = load.acknowledged();
      await waitFor(
        "200 more writes on the new leader",
        async () => load.acknowledged(),
        (n) => n >= steady + 200,
        60_000,
      );
      const writes = await load.stop();
      writesRunning = undefined;

      // In flight at the kill: sent before `docker kill` returned, answered after it was issued;
      // hit by it: those of them that failed.
      const inFlight = writes.filter((w) => w.startedAt < killedAt && w.endedAt > killIssuedAt);
      const hit = inFlight.filter((w) => !w.ok);
      const failed = writes.filter((w) => !w.ok);
      const lateFailures = failed.filter((w) => (firstAck?.endedAt ?? 0) + 5_000 < w.startedAt);
      acknowledged = writes.filter((w) => w.ok).map((w) => w.id);
      const [stored] = await db<{ n: number }[]>`
      select count(*)::int as n from ha_probe where id = any(${acknowledged}::bigint[])`;
      const lost = acknowledged.length - (stored?.n ?? 0);
      const failover = ((firstAck?.endedAt ?? 0) - killedAt) / 1000;
      console.log(
        `compose HA failover: ${standby} killed, ${survivor} leader after ${((promotedAt - killedAt) / 1000).toFixed(1)} s (Patroni), first write acknowledged ${failover.toFixed(1)} s after the kill (docker kill took ${((killedAt - killIssuedAt) / 1000).toFixed(1)} s); ${inFlight.length} writes in flight at the kill (${hit.length} of them failed), ${failed.length} failed in all (first: ${failed[0]?.error ?? "none"}), ${acknowledged.length} acknowledged, ${lost} lost`,
      );
      // The fault landed: writes were in flight when the leader died, and some of them failed.
      expect(hit.length).toBeGreaterThan(0);
      expect({ lateFailures: lateFailures.slice(0, 3) }).toEqual({ lateFailures: [] });
      expect({ lost }).toEqual({ lost: 0 });
    },
    300_000,
  );

  step(
    "the killed container started again rejoins as the synchronous standby, with every acknowledged row",
    async () => {
      if (!killedId) throw new Error("no container was killed (the step above failed)");
      must(["docker", "start", killedId]);
      const pid = must(["docker", "inspect", "-f", "{{.State.Pid}}", killedId]).trim();
      expect(pid).not.toBe(killedPid);
      await waitFor(
        `${standby} back in Patroni's /cluster as the synchronous standby, on the leader's timeline, no lag`,
        async () => clusterOrNothing(leader),
        (ms) => {
          const l = ms.find((m) => m.name === leader && m.role === "leader");
          const s = ms.find((m) => m.name === standby);
          return (
            !!l &&
            s?.role === "sync_standby" &&
            ["running", "streaming"].includes(s.state) &&
            s.timeline === l.timeline &&
            s.lag === 0
          );
        },
        120_000,
        1_000,
      );
      expect(memberSql(standby, "select pg_is_in_recovery()")).toBe("t");
      const count = `select count(*) from ha_probe where id in (${acknowledged.join(",")})`;
      expect(memberSql(standby, count)).toBe(String(acknowledged.length));
      // Writes through pgbouncer still land (on the leader), and the rejoined standby gets them.
      if (!db) throw new Error("no connection through pgbouncer (the first step failed)");
      await db`insert into ha_probe (id) values (-1)`;
      await waitFor(
        `the row written after the rejoin on ${standby}`,
        async () => memberSql(standby, "select count(*) from ha_probe where id = -1"),
        (n) => n === "1",
        30_000,
        500,
      );
    },
    240_000,
  );

  step(
    "the leader frozen (docker pause) under steady writes: HAProxy cuts its sessions, the standby takes over, writes back by themselves, none acknowledged lost; unpaused, the old leader steps down and rejoins",
    async () => {
      if (!db || !leader || !standby) throw new Error("the cluster is not back (a step above failed)");
      const started = performance.now();
      const at = () => performance.now() - started;
      const load = startWrites(db, started, 1_000_000);
      writesRunning = load;
      await waitFor(
        "100 writes acknowledged before the pause",
        async () => load.acknowledged(),
        (n) => n >= 100,
        60_000,
      );
      const frozen = leader;
      const survivor = standby;
      const timelineBefore = cluster(frozen).find((m) => m.name === frozen)?.timeline ?? 0;
      const frozenId = containerOf(frozen);
      // A frozen leader: its sockets stay open and its kernel still accepts connections, but nothing
      // answers. Only HAProxy cutting its sessions (on-marked-down) frees pgbouncer's connections.
      must(["docker", "pause", frozenId]);
      const pausedAt = at();
      leader = survivor;
      standby = frozen;
      try {
        await waitFor(
          `${survivor} the leader in Patroni's /cluster, promoted (a timeline after ${timelineBefore}; ${frozen} is paused)`,
          async () => clusterOrNothing(survivor),
          (ms) =>
            ms.some(
              (m) =>
                m.name === survivor &&
                m.role === "leader" &&
                m.state === "running" &&
                (m.timeline ?? 0) > timelineBefore,
            ),
          FAILOVER_BOUND_MS,
          500,
        );
        const firstAck = await waitFor(
          "a write started after the pause acknowledged through pgbouncer",
          async () => load.writes.find((w) => w.ok && w.startedAt > pausedAt),
          (w) => w !== undefined,
          FAILOVER_BOUND_MS,
          200,
        );
        const steady = load.acknowledged();
        await waitFor(
          "100 more writes on the new leader",
          async () => load.acknowledged(),
          (n) => n >= steady + 100,
          60_000,
        );
        const writes = await load.stop();
        writesRunning = undefined;
        const ids = writes.filter((w) => w.ok).map((w) => w.id);
        const [stored] = await db<{ n: number }[]>`
          select count(*)::int as n from ha_probe where id = any(${ids}::bigint[])`;
        const lost = ids.length - (stored?.n ?? 0);
        const failed = writes.filter((w) => !w.ok);
        console.log(
          `compose HA frozen leader: ${frozen} paused, first write acknowledged ${(((firstAck?.endedAt ?? 0) - pausedAt) / 1000).toFixed(1)} s after; ${failed.length} failed (first: ${failed[0]?.error ?? "none"}), ${ids.length} acknowledged, ${lost} lost`,
        );
        expect(failed.length).toBeGreaterThan(0);
        expect({ lost }).toEqual({ lost: 0 });
      } finally {
        must(["docker", "unpause", frozenId]);
      }
      await waitFor(
        `${frozen}, unpaused, back in Patroni's /cluster as the synchronous standby on ${survivor}'s timeline`,
        async () => clusterOrNothing(survivor),
        (ms) => {
          const l = ms.find((m) => m.name === survivor && m.role === "leader");
          const s = ms.find((m) => m.name === frozen);
          return !!l && s?.role === "sync_standby" && s.timeline === l.timeline && s.lag === 0;
        },
        120_000,
        1_000,
      );
      expect(memberSql(frozen, "select pg_is_in_recovery()")).toBe("t");
    },
    300_000,
  );
});
