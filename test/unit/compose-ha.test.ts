// compose.ha.yaml, the overlay that makes compose's Postgres highly available, checked without an
// engine (test/compose/compose-ha.compose.ts runs it): compose accepts the three files and refuses
// them without POSTGRES_PASSWORD; the topology is 3 etcd members, 2 Patroni members and HAProxy
// under compose.yaml's name `postgres`, so every client of Postgres is unchanged; every new service
// has a healthcheck and runs as a non-root user, none is published; Patroni's settings are compose's
// Postgres settings with WAL archiving, in synchronous mode; HAProxy routes by Patroni's /primary and
// cuts the sessions of a member marked down; tools/compose-images.ts builds the new images.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { archiveSettingsWith } from "../../tools/backup/pgbackrest.ts";
import { BUILT_FOR_HA } from "../../tools/compose-images.ts";
import { POSTGRES_SETTINGS } from "../../tools/stack/postgres.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const read = (path: string) => readFileSync(`${ROOT}/${path}`, "utf8");

interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string };
  user?: string;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string | null>;
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  profiles?: string[];
}

function config(files: string[], env: Record<string, string>) {
  return spawnSync("docker-compose", [...files.flatMap((f) => ["-f", `${ROOT}/${f}`]), "config"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    encoding: "utf8",
  });
}
const HA = ["compose.yaml", "compose.local-images.yaml", "compose.ha.yaml"];
const PASSWORD = "0123456789abcdef";
const resolved = (() => {
  const r = config(HA, { POSTGRES_PASSWORD: PASSWORD });
  if (r.status !== 0) throw new Error(`docker-compose config of ${HA.join(" + ")}: ${r.stderr}`);
  return Bun.YAML.parse(r.stdout) as { services: Record<string, Service> };
})();
const services = resolved.services;
const service = (name: string): Service => {
  const s = services[name];
  if (!s) throw new Error(`the HA configuration has no service ${name}`);
  return s;
};
const overlay = Bun.YAML.parse(read("compose.ha.yaml")) as { services: Record<string, Service> };
const NEW = Object.keys(overlay.services).filter((n) => n !== "postgres");
const MEMBERS = ["pg-1", "pg-2"];
const patroni = Bun.YAML.parse(read("compose/patroni/patroni.yml")) as {
  restapi: { listen: string };
  bootstrap: {
    dcs: { synchronous_mode: boolean; postgresql: { use_pg_rewind: boolean; parameters: Record<string, unknown> } };
    post_bootstrap: string;
  };
  postgresql: { data_dir: string; pg_hba: string[] };
};
const haproxy = read("compose/haproxy/haproxy.cfg");

describe("compose.ha.yaml: Postgres with Patroni, etcd and HAProxy", () => {
  test("compose accepts the overlay (with and without the local images) and refuses it without POSTGRES_PASSWORD", () => {
    for (const files of [HA, ["compose.yaml", "compose.ha.yaml"]]) {
      const ok = config(files, { POSTGRES_PASSWORD: PASSWORD });
      expect({ files, status: ok.status }).toEqual({ files, status: 0 });
      const without = config(files, {});
      expect(without.status).not.toBe(0);
      expect(without.stderr).toContain("set POSTGRES_PASSWORD");
    }
  });

  test("the topology: etcd-1..3, pg-1 and pg-2, and HAProxy as `postgres`, which every client still names", () => {
    expect(NEW.sort()).toEqual(["etcd-1", "etcd-2", "etcd-3", "pg-1", "pg-2"]);
    expect(service("postgres").image).toStartWith("qrscan-haproxy:");
    expect(service("postgres").command?.[0]).toBe("haproxy");
    for (const n of [...MEMBERS, "etcd-1", "etcd-2", "etcd-3"]) expect(service(n).image).toStartWith("qrscan-patroni:");
    // The clients of Postgres are compose.yaml's, untouched: they reach whatever `postgres` is.
    for (const n of ["pgbouncer", "migrate", "postgres-exporter", "ops"]) expect(overlay.services[n]).toBeUndefined();
    expect(read("compose/pgbouncer/pgbouncer.ini")).toContain("qrscan = host=postgres port=5432 dbname=qrscan");
    expect(service("migrate").environment?.DATABASE_DIRECT_URL).toContain("@postgres:5432/");
    // Each etcd member names itself, and all three the same initial cluster.
    const clusters = new Set(["etcd-1", "etcd-2", "etcd-3"].map((n) => service(n).environment?.ETCD_INITIAL_CLUSTER));
    expect([...clusters]).toEqual(["etcd-1=http://etcd-1:2380,etcd-2=http://etcd-2:2380,etcd-3=http://etcd-3:2380"]);
    for (const n of ["etcd-1", "etcd-2", "etcd-3"]) {
      expect(service(n).environment?.ETCD_NAME).toBe(n);
      expect(service(n).environment?.ETCD_ENABLE_V2).toBe("true");
    }
    for (const n of MEMBERS) {
      expect(service(n).environment?.PATRONI_NAME).toBe(n);
      expect(service(n).environment?.PATRONI_RESTAPI_CONNECT_ADDRESS).toBe(`${n}:8008`);
      expect(service(n).environment?.PATRONI_POSTGRESQL_CONNECT_ADDRESS).toBe(`${n}:5432`);
    }
    expect(patroni.restapi.listen).toEndWith(":8008");
  });

  test("healthchecks on every new service and on HAProxy, and every wait on health", () => {
    for (const n of [...NEW, "postgres"])
      expect({ n, healthcheck: Boolean(service(n).healthcheck?.test?.length) }).toEqual({ n, healthcheck: true });
    // HAProxy is healthy only while a leader is reachable (its monitor fails without a server up).
    expect(service("postgres").healthcheck?.test.join(" ")).toContain("/ready");
    expect(haproxy).toMatch(/monitor-uri \/ready\n\s+monitor fail if \{ nbsrv\(postgres\) lt 1 \}/);
    for (const [name, s] of Object.entries(services))
      for (const [dep, { condition }] of Object.entries(s.depends_on ?? {}))
        if (condition === "service_healthy")
          expect({ name, dep, healthcheck: Boolean(service(dep).healthcheck) }).toEqual({
            name,
            dep,
            healthcheck: true,
          });
    for (const n of MEMBERS)
      for (const e of ["etcd-1", "etcd-2", "etcd-3"])
        expect(service(n).depends_on?.[e]?.condition).toBe("service_healthy");
    expect(service("pgbouncer").depends_on?.postgres?.condition).toBe("service_healthy");
  });

  test("non-root: the members as postgres, etcd as etcd, HAProxy as haproxy; nothing new is published", () => {
    expect(read("compose/patroni/Dockerfile")).toMatch(/^USER postgres$/m);
    expect(read("compose/haproxy/Dockerfile")).toMatch(/^USER haproxy$/m);
    for (const n of ["etcd-1", "etcd-2", "etcd-3"]) expect(service(n).user).toBe("etcd");
    for (const n of [...NEW, "postgres"]) expect(["root", "0", "0:0"]).not.toContain(service(n).user ?? "");
    for (const n of NEW) expect({ n, ports: service(n).ports }).toEqual({ n, ports: undefined });
    // `postgres` keeps compose.yaml's loopback port, which now reaches the leader.
    expect((service("postgres").ports ?? []).every((p) => p.startsWith("127.0.0.1:"))).toBe(true);
  });

  test("no default passwords: every member's from POSTGRES_PASSWORD (required), none in the images' files, HAProxy has none", () => {
    const text = read("compose.ha.yaml");
    expect(text).not.toMatch(/POSTGRES_PASSWORD:-/);
    expect(text.match(/POSTGRES_PASSWORD: \$\{POSTGRES_PASSWORD:\?/g)?.length).toBe(MEMBERS.length);
    for (const n of MEMBERS) expect(service(n).environment?.POSTGRES_PASSWORD).toBe(PASSWORD);
    expect(read("compose/patroni/patroni.yml")).not.toMatch(/password:/i);
    expect(read("compose/patroni/entrypoint.sh")).toContain(': "${POSTGRES_PASSWORD:?');
    expect(service("postgres").environment?.POSTGRES_PASSWORD ?? "").toBe("");
    // Passwords over the network; trust only on the socket, which nothing outside the container reaches.
    expect(patroni.postgresql.pg_hba.filter((l) => l.includes("trust"))).toEqual(["local all all trust"]);
    expect(
      patroni.postgresql.pg_hba.filter((l) => l.startsWith("host")).every((l) => l.endsWith("scram-sha-256")),
    ).toBe(true);
  });

  test("Patroni: compose's Postgres settings and WAL archiving, a synchronous standby, pg_rewind; roles and stanza made once", () => {
    const params = patroni.bootstrap.dcs.postgresql.parameters;
    const ours = [...POSTGRES_SETTINGS, ...archiveSettingsWith("")];
    for (const setting of ours) {
      const [key, ...value] = setting.split("=");
      expect({ key, value: String(params[key as string]) }).toEqual({ key, value: value.join("=") });
    }
    expect(patroni.bootstrap.dcs.synchronous_mode).toBe(true);
    expect(patroni.bootstrap.dcs.postgresql.use_pg_rewind).toBe(true);
    expect(params.wal_log_hints).toBe("on");
    // pgBackRest: compose/postgres's file (its data path is the members' data_dir), one repository.
    expect(read("compose/patroni/Dockerfile")).toContain(
      "COPY postgres/pgbackrest.conf /etc/pgbackrest/pgbackrest.conf",
    );
    expect(read("compose/postgres/pgbackrest.conf")).toContain(`pg1-path=${patroni.postgresql.data_dir}\n`);
    for (const n of MEMBERS) {
      expect(service(n).volumes).toContain("pgbackrest:/var/lib/pgbackrest:rw");
      expect(
        service(n).volumes?.some((v) => v.endsWith("/init-roles.sh:/docker-entrypoint-initdb.d/init-roles.sh:ro")),
      ).toBe(true);
    }
    // post_bootstrap: the image's script, which runs init-roles.sh and makes the stanza.
    expect(patroni.bootstrap.post_bootstrap).toBe("/usr/local/bin/patroni-post-bootstrap");
    expect(read("compose/patroni/Dockerfile")).toContain(
      "COPY patroni/post-bootstrap.sh /usr/local/bin/patroni-post-bootstrap",
    );
    const post = read("compose/patroni/post-bootstrap.sh");
    expect(post).toContain("/docker-entrypoint-initdb.d/*.sh");
    expect(post).toContain("pgbackrest --stanza=qrscan stanza-create");
  });

  test("HAProxy: connections to the member answering /primary, sessions cut when it is marked down", () => {
    expect(haproxy).toMatch(/^\s+option httpchk (GET|OPTIONS) \/primary$/m);
    expect(haproxy).toMatch(/^\s+http-check expect status 200$/m);
    expect(haproxy).toMatch(/^\s+default-server .*on-marked-down shutdown-sessions/m);
    for (const n of MEMBERS) expect(haproxy).toMatch(new RegExp(`^\\s+server ${n} ${n}:5432 check port 8008$`, "m"));
    // Docker's DNS, so a member restarted with another address is found again.
    expect(haproxy).toContain("nameserver dns 127.0.0.11:53");
  });

  test("tools/compose-images.ts builds every image the overlay builds", () => {
    const building = Object.entries(overlay.services)
      .filter(([, s]) => s.build)
      .map(([n]) => n)
      .sort();
    expect([...BUILT_FOR_HA].sort()).toEqual(building);
  });
});
