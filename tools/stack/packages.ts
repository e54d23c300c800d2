// System packages the local stack needs, installed with apt when missing (as root), or named in a
// clear error otherwise. Everything else comes from the npm registry (bun install) and Maven Central.
import { existsSync } from "node:fs";
import { commandExists, isRoot, run } from "./processes.ts";

interface Requirement {
  what: string;
  present: () => boolean;
  packages: string[];
  /** Only needed with PG_HA=1. */
  pgHaOnly?: boolean;
}

const hasLib = (name: string) =>
  ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"].some((d) => existsSync(`${d}/${name}`));

const REQUIREMENTS: Requirement[] = [
  { what: "librdkafka", present: () => hasLib("librdkafka.so.1"), packages: ["librdkafka1"] },
  { what: "Java 17+ (Kafka broker)", present: () => commandExists("java"), packages: ["openjdk-17-jre-headless"] },
  { what: "Maven (fetches the Kafka jars)", present: () => commandExists("mvn"), packages: ["maven"] },
  {
    what: "PostgreSQL server",
    present: () => existsSync("/usr/lib/postgresql") && commandExists("psql"),
    packages: ["postgresql"],
  },
  { what: "pgbouncer", present: () => commandExists("pgbouncer"), packages: ["pgbouncer"] },
  // Backups: WAL archiving (archive_command) and `bun run backup` / `restore-drill` (tools/backup/).
  { what: "pgBackRest", present: () => commandExists("pgbackrest"), packages: ["pgbackrest"] },
  // Monitoring (tools/stack/monitoring.ts). Debian may start the packages' own services on install
  // where systemd runs; ours run with their own config, data and ports under $STACK_DIR.
  { what: "Prometheus + promtool", present: () => commandExists("promtool"), packages: ["prometheus"] },
  {
    what: "Alertmanager",
    present: () => commandExists("prometheus-alertmanager"),
    packages: ["prometheus-alertmanager"],
  },
  {
    what: "Postgres exporter",
    present: () => commandExists("prometheus-postgres-exporter"),
    packages: ["prometheus-postgres-exporter"],
  },
  // The shell of the public prom/alertmanager image: test/unit/monitoring-config.test.ts runs
  // monitoring/alertmanager/start.sh with it as well as with Debian's sh.
  { what: "busybox (Alertmanager start.sh test)", present: () => commandExists("busybox"), packages: ["busybox"] },
  {
    what: "curl, jq and kcat (runbooks)",
    present: () => commandExists("curl") && commandExists("jq") && commandExists("kcat"),
    packages: ["curl", "jq", "kcat"],
  },
  // PG_HA=1 (tools/stack/patroni.ts): Patroni, its etcd, HAProxy routing to the leader.
  {
    what: "Patroni, etcd and HAProxy (PG_HA=1)",
    present: () => commandExists("patroni") && commandExists("etcd") && commandExists("haproxy"),
    packages: ["patroni", "etcd-server", "etcd-client", "haproxy"],
    pgHaOnly: true,
  },
  {
    what: "pgbouncer exporter",
    present: () => commandExists("prometheus-pgbouncer-exporter"),
    packages: ["prometheus-pgbouncer-exporter"],
  },
];

/** Every package the local stack installs (test/unit/runbooks.test.ts: the programs the runbooks may run). */
export const STACK_PACKAGES = REQUIREMENTS.flatMap((r) => r.packages);

export function ensurePackages(pgHa = false): void {
  const missing = REQUIREMENTS.filter((r) => (pgHa || !r.pgHaOnly) && !r.present());
  if (missing.length === 0) return;
  const packages = missing.flatMap((r) => r.packages);
  if (!isRoot()) {
    throw new Error(
      `missing: ${missing.map((r) => r.what).join(", ")}. Install with: sudo apt-get install -y ${packages.join(" ")}`,
    );
  }
  console.log(`stack: installing ${packages.join(" ")} with apt...`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  run("apt-get", ["update", "-qq"], { env });
  run("apt-get", ["install", "-y", "-qq", ...packages], { env });
}
