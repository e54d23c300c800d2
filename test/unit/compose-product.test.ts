// compose.yaml runs the product (migrate job, server, workers) on the local stack's settings. No
// Docker engine runs here, so these invariants stand for running it: the images' user is not root,
// the app's metrics ports are not published, pgbouncer's and Postgres's settings are the local
// stack's, no password has a default (compose refuses to start without one), every service that
// others wait for has a healthcheck, and the waits are on health or on success. Each process
// connects as its database role (caught: the worker's URL as qrscan, 2026-12-06).
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { ServerConfigSchema, loadServerConfig } from "../../server/config.ts";
import { ConfigError } from "../../shared/config.ts";
import { KEYS_DATABASE_SUFFIX, TOPICS, localStack } from "../../shared/local-stack.ts";
import { archiveSettingsWith, backrestConfig } from "../../tools/backup/pgbackrest.ts";
import { composeFiles } from "../../tools/compose-files.ts";
import { POSTGRES_SETTINGS } from "../../tools/stack/postgres.ts";
import { SupervisorConfigSchema, WorkerConfigSchema } from "../../worker/config.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const read = (path: string) => readFileSync(`${ROOT}/${path}`, "utf8");

interface Service {
  image?: string;
  build?: { context: string; target?: string };
  user?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  read_only?: boolean;
  tmpfs?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }> | string[];
  container_name?: string;
  network_mode?: string;
  secrets?: string[];
}
const compose = Bun.YAML.parse(read("compose.yaml")) as {
  services: Record<string, Service>;
  secrets: Record<string, { file?: string }>;
};
const services = compose.services;
const service = (name: string): Service => {
  const s = services[name];
  if (!s) throw new Error(`compose.yaml has no service ${name}`);
  return s;
};
const APP = ["migrate", "server", "worker", "ops"];

/** The Dockerfile's instructions of stage `target` (from its FROM to the next). */
function dockerfileStage(target: string): string[] {
  const lines = read("Dockerfile").split("\n");
  const start = lines.findIndex((l) => new RegExp(`^FROM \\S+ AS ${target}$`).test(l));
  if (start < 0) throw new Error(`the Dockerfile has no stage ${target}`);
  const end = lines.findIndex((l, i) => i > start && l.startsWith("FROM "));
  return lines.slice(start, end < 0 ? undefined : end);
}
const instruction = (target: string, name: string) =>
  dockerfileStage(target)
    .filter((l) => l.startsWith(`${name} `))
    .map((l) => l.slice(name.length + 1));

function dockerCompose(env: Record<string, string>) {
  const clean: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env };
  return spawnSync("docker-compose", ["-f", `${ROOT}/compose.yaml`, "config", "-q"], {
    cwd: ROOT,
    env: clean,
    encoding: "utf8",
  });
}

describe("compose.yaml runs the product", () => {
  test("the migrate job, the server and the workers are built from the Dockerfile's targets", () => {
    expect(service("server").build).toEqual({ context: ".", target: "server" });
    expect(service("worker").build).toEqual({ context: ".", target: "worker" });
    expect(service("migrate").build).toEqual({ context: ".", target: "worker" });
    expect(service("migrate").command).toEqual(["bun", "sql/migrate.ts"]);
    expect(service("server").image).toStartWith("qrscan-server:");
    expect(service("worker").image).toStartWith("qrscan-worker:");
    expect(service("migrate").image).toBe(service("worker").image as string);
  });

  test("they run as the images' numeric non-root user, on a read-only root with a tmpfs /tmp", () => {
    const users = ["server", "worker"].flatMap((t) => instruction(t, "USER"));
    const runtimeUser = instruction("runtime", "USER");
    expect(runtimeUser).toHaveLength(1);
    expect(users).toEqual([]); // the targets inherit the runtime stage's
    const [uid, gid] = (runtimeUser[0] as string).split(":").map(Number);
    expect(uid).toBeGreaterThan(0);
    expect(gid).toBeGreaterThan(0);
    for (const name of [...APP, "pgbouncer"]) {
      const s = service(name);
      expect({ name, user: s.user }).toEqual({ name, user: `${uid}:${gid}` });
      expect({ name, read_only: s.read_only }).toEqual({ name, read_only: true });
      expect(s.tmpfs?.some((t) => t.startsWith("/tmp"))).toBe(true);
    }
    expect(read("compose/pgbouncer/Dockerfile")).toContain(`USER ${uid}:${gid}`);
  });

  test("the server says where client addresses come from: directly (no proxy sets X-Forwarded-For here)", () => {
    // The image listens on 0.0.0.0 and chooses neither setting, so it needs one from compose.
    const imageEnv = Object.fromEntries(
      instruction("server", "ENV")
        .join(" ")
        .split(/\s+/)
        .map((kv) => kv.split("=") as [string, string]),
    );
    expect(imageEnv.HOST).toBe("0.0.0.0");
    const key = { API_KEY_SHA256: "ab".repeat(32) };
    expect(() => loadServerConfig({ ...imageEnv, ...key })).toThrow(ConfigError);
    const env = service("server").environment ?? {};
    expect(env.TRUSTED_PROXIES).toBeUndefined();
    expect(env.CLIENTS_CONNECT_DIRECTLY).toBe("true");
    const c = loadServerConfig({ ...imageEnv, ...key, CLIENTS_CONNECT_DIRECTLY: env.CLIENTS_CONNECT_DIRECTLY });
    expect([c.HOST, c.CLIENTS_CONNECT_DIRECTLY, c.TRUSTED_PROXIES]).toEqual(["0.0.0.0", true, []]);
  });

  test("the app's metrics ports are not published; only the server's API port is, on loopback", () => {
    const metricsPorts = [
      ServerConfigSchema.entries.METRICS_PORT,
      WorkerConfigSchema.entries.METRICS_PORT,
      SupervisorConfigSchema.entries.SUPERVISOR_METRICS_PORT,
    ].map((schema) => String(schema.pipe[0].default));
    // The image's ports are the schemas' defaults (the Dockerfile sets them, not other ones).
    expect(instruction("server", "ENV").join(" ")).toContain(`METRICS_PORT=${metricsPorts[0]}`);
    expect(instruction("worker", "ENV").join(" ")).toContain(`METRICS_PORT=${metricsPorts[1]}`);
    expect(instruction("worker", "ENV").join(" ")).toContain(`SUPERVISOR_METRICS_PORT=${metricsPorts[2]}`);
    const published = Object.entries(services).flatMap(([name, s]) => (s.ports ?? []).map((p) => ({ name, p })));
    expect(published.filter(({ p }) => metricsPorts.some((m) => p.endsWith(`:${m}`)))).toEqual([]);
    expect(published.filter(({ p }) => !p.startsWith("127.0.0.1:"))).toEqual([]);
    expect(service("server").ports).toEqual(["127.0.0.1:8080:8080"]);
    expect(service("worker").ports).toBeUndefined();
    expect(service("migrate").ports).toBeUndefined();
    // Prometheus scrapes them on compose's network instead, every worker replica by DNS.
    const prom = Bun.YAML.parse(read("monitoring/prometheus/compose.yml")) as {
      scrape_configs: { job_name: string; dns_sd_configs?: { names: string[]; port: number }[] }[];
    };
    const dns = (job: string) => prom.scrape_configs.find((c) => c.job_name === job)?.dns_sd_configs?.[0];
    expect(dns("server")).toMatchObject({ names: ["server"], port: Number(metricsPorts[0]) });
    expect(dns("worker")).toMatchObject({ names: ["worker"], port: Number(metricsPorts[1]) });
    expect(dns("supervisor")).toMatchObject({ names: ["worker"], port: Number(metricsPorts[2]) });
    expect(service("prometheus").network_mode).toBeUndefined();
  });

  test("compose's Prometheus has prometheus.yml's rules, intervals and jobs; only discovery differs", () => {
    const local = Bun.YAML.parse(read("monitoring/prometheus/prometheus.yml")) as Record<string, unknown> & {
      scrape_configs: { job_name: string }[];
    };
    const ours = Bun.YAML.parse(read("monitoring/prometheus/compose.yml")) as typeof local;
    expect(ours.global).toEqual(local.global);
    expect(ours.rule_files).toEqual(local.rule_files);
    expect(ours.scrape_configs.map((c) => c.job_name)).toEqual(local.scrape_configs.map((c) => c.job_name));
    expect(service("prometheus").command).toContain("--config.file=/etc/prometheus/compose.yml");
    const check = spawnSync("promtool", ["check", "config", `${ROOT}/monitoring/prometheus/compose.yml`], {
      encoding: "utf8",
    });
    expect({ status: check.status, stderr: check.stderr }).toEqual({ status: 0, stderr: "" });
  });

  test("workers scale: no fixed container name or host port, one worker per container, at most one per partition", () => {
    expect(service("worker").container_name).toBeUndefined();
    expect(instruction("worker", "ENV").join(" ")).toContain("WORKER_POOL_SIZE=1");
    expect(read("compose.yaml")).toContain(`(N <= ${TOPICS.scans.partitions}, the`);
  });

  test("pgbouncer: compose's pgbouncer.ini is the local stack's, generated from the same source", () => {
    for (const [path, text] of Object.entries(composeFiles())) {
      expect({ path, text: read(path) }).toEqual({ path, text }); // else: bun tools/compose-files.ts
    }
    expect(read("compose/pgbouncer/Dockerfile")).toContain("COPY pgbouncer.ini /etc/pgbouncer/pgbouncer.ini");
    // Debian's package in both (the local stack installs `pgbouncer` from apt), not another build.
    expect(read("compose/pgbouncer/Dockerfile")).toContain("ARG BASE_IMAGE=debian:bookworm-slim@sha256:");
    expect(service("pgbouncer").image).not.toContain("edoburu");
  });

  test("database roles: the migrate job as the owner, the server as edge, the workers as worker, the exporters as monitor", () => {
    const { edge, worker, monitor } = localStack({}).logins;
    const userOf = (url: string | undefined) => /^postgres(?:ql)?:\/\/([^:@/]+)[:@]/.exec(url ?? "")?.[1];
    const dbOf = (url: string | undefined) => /@[^/]+\/([^?]+)/.exec(url ?? "")?.[1];
    const env = (name: string) => service(name).environment ?? {};
    expect(userOf(env("migrate").DATABASE_DIRECT_URL)).toBe("qrscan");
    expect([userOf(env("server").DATABASE_URL), dbOf(env("server").DATABASE_URL)]).toEqual([edge.user, "qrscan"]);
    // The key refresh on pgbouncer's alias with its own pool, as the edge too.
    expect([userOf(env("server").API_KEYS_DATABASE_URL), dbOf(env("server").API_KEYS_DATABASE_URL)]).toEqual([
      edge.user,
      `qrscan${KEYS_DATABASE_SUFFIX}`,
    ]);
    expect(read("compose/pgbouncer/pgbouncer.ini")).toContain(`qrscan${KEYS_DATABASE_SUFFIX} = `);
    expect(userOf(env("worker").DATABASE_URL)).toBe(worker.user);
    expect(userOf(env("postgres-exporter").DATA_SOURCE_NAME)).toBe(monitor.user);
    expect(service("pgbouncer-exporter").command?.join(" ")).toContain(`--pgbouncer-user ${monitor.user}`);
    expect(read("compose/pgbouncer/pgbouncer.ini")).toContain(`stats_users = qrscan, ${monitor.user}\n`);
    // pgbouncer knows exactly the owner and the logins; the image's superuser is none of them.
    expect((env("pgbouncer").PGBOUNCER_USERS ?? "").split(" ").sort()).toEqual(
      ["qrscan", edge.user, worker.user, monitor.user].sort(),
    );
    expect(env("postgres").POSTGRES_USER).toBe("postgres");
    // The roles are made at the first start by the generated script (checked equal above).
    expect(service("postgres").volumes).toContain(
      "./compose/postgres/init-roles.sh:/docker-entrypoint-initdb.d/init-roles.sh:ro",
    );
    const init = read("compose/postgres/init-roles.sh");
    for (const login of [edge, worker, monitor])
      expect(init).toContain(`CREATE ROLE ${login.user} LOGIN PASSWORD :'pw' IN ROLE ${login.member};`);
    expect(init).toContain("ALTER DATABASE qrscan OWNER TO qrscan;");
    // No app process connects as the superuser.
    for (const [name, s] of Object.entries(services)) {
      for (const [key, value] of Object.entries(s.environment ?? {})) {
        if (/_URL$|DATA_SOURCE_NAME/.test(key))
          expect({ name, key, user: userOf(String(value)) }).not.toEqual({ name, key, user: "postgres" });
      }
    }
  });

  test("Postgres: compose's server settings are the local stack's, WAL archiving included", () => {
    const command = service("postgres").command ?? [];
    const settings = command.filter((_, i) => command[i - 1] === "-c");
    expect(settings).toEqual([...POSTGRES_SETTINGS, ...archiveSettingsWith("")]);
  });

  test("Postgres: compose's pgBackRest options are the local stack's but for the paths", () => {
    const options = (text: string) =>
      text
        .split("\n")
        .filter((l) => /^[a-z0-9-]+=/.test(l) && !/-path=|^pg1-port=/.test(l))
        .sort();
    expect(options(read("compose/postgres/pgbackrest.conf"))).toEqual(options(backrestConfig(localStack())));
  });

  test("no default passwords: docker-compose refuses the file without POSTGRES_PASSWORD, accepts it with one", () => {
    const text = read("compose.yaml");
    expect(text).not.toMatch(/qrscan:qrscan@|PASSWORD: qrscan|PGPASSWORD: qrscan/);
    expect(text).not.toMatch(/POSTGRES_PASSWORD:-/);
    const without = dockerCompose({});
    expect(without.status).not.toBe(0);
    expect(without.stderr).toContain("set POSTGRES_PASSWORD");
    const withIt = dockerCompose({ POSTGRES_PASSWORD: "0123456789abcdef" });
    expect({ status: withIt.status, stderr: withIt.stderr }).toEqual({ status: 0, stderr: "" });
    // Every URL or variable holding the password takes it from POSTGRES_PASSWORD, required.
    for (const [name, s] of Object.entries(services)) {
      for (const [key, value] of Object.entries(s.environment ?? {})) {
        if (/PASSWORD|_URL|DATA_SOURCE_NAME/.test(key) && String(value).includes("qrscan"))
          expect({ name, key, value }).toEqual({ name, key, value: expect.stringContaining("${POSTGRES_PASSWORD:?") });
      }
    }
    // Grafana's admin password is a secret file (no fallback), never a value in the file.
    expect(compose.secrets.grafana_admin_password?.file).toBe("./.secrets/grafana-admin-password");
    expect(read(".gitignore")).toMatch(/^\.secrets\/$/m);
    expect(read(".gitignore")).toMatch(/^\.env$/m);
  });

  test("healthchecks, and every wait is on health or on a job's success", () => {
    const conditions: string[] = [];
    for (const [name, s] of Object.entries(services)) {
      const deps = s.depends_on;
      if (!deps || Array.isArray(deps)) continue;
      for (const [dep, { condition }] of Object.entries(deps)) {
        conditions.push(`${name} -> ${dep}: ${condition}`);
        if (condition === "service_healthy")
          expect({ dep, healthcheck: Boolean(service(dep).healthcheck) }).toEqual({ dep, healthcheck: true });
      }
    }
    for (const name of ["server", "worker"]) {
      expect(conditions).toContain(`${name} -> migrate: service_completed_successfully`);
      expect(conditions).toContain(`${name} -> kafka-topics: service_completed_successfully`);
      expect(conditions).toContain(`${name} -> pgbouncer: service_healthy`);
    }
    expect(conditions).toContain("migrate -> postgres: service_healthy");
    expect(conditions).toContain("pgbouncer -> postgres: service_healthy");
    // The server's and workers' healthchecks are their images' HEALTHCHECK commands.
    for (const name of ["server", "worker"]) {
      const hc = instruction(name, "HEALTHCHECK")[0] ?? "";
      const cmd = JSON.parse(hc.slice(hc.indexOf("CMD ") + 4)) as string[];
      expect(service(name).healthcheck?.test).toEqual(["CMD", ...cmd]);
    }
  });
});
