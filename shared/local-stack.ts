// Where the project's own local stack (tools/stack.ts) listens. One source of truth for the
// stack script and for the defaults of the server's and worker's configuration.
import { resolve } from "node:path";

/** Kafka nodes of the local stack: 1 (dev default, one copy of each event) or 3 (replicated, a quorum of 3). */
export const KAFKA_NODE_COUNTS = [1, 3] as const;
export type KafkaNodeCount = (typeof KAFKA_NODE_COUNTS)[number];

/**
 * How the local stack's Kafka listens: plaintext without authentication (the dev default, loopback
 * only), or sasl_ssl: SCRAM-SHA-512 over TLS with ACLs (tools/stack/kafka-security.ts).
 */
export const KAFKA_SECURITY_MODES = ["plaintext", "sasl_ssl"] as const;
export type KafkaSecurityMode = (typeof KAFKA_SECURITY_MODES)[number];

const kafkaSecurityMode = (raw: string | undefined): KafkaSecurityMode => {
  const value = raw || "plaintext";
  if (!(KAFKA_SECURITY_MODES as readonly string[]).includes(value)) {
    throw new Error(`KAFKA_SECURITY must be plaintext or sasl_ssl, got "${raw}"`);
  }
  return value as KafkaSecurityMode;
};

/** Node n (1-based) listens on the node-1 ports plus 10 * (n - 1): broker, controller and JMX exporter. */
export const KAFKA_NODE_PORT_STEP = 10;

const kafkaNodeCount = (raw: string | undefined): KafkaNodeCount => {
  const value = raw ? Number(raw) : 1;
  const allowed = KAFKA_NODE_COUNTS as readonly number[];
  if (!allowed.includes(value)) throw new Error(`KAFKA_NODES must be 1 or 3, got "${raw}"`);
  return value as KafkaNodeCount;
};

/**
 * PG_HA=1: Postgres as a Patroni cluster (tools/stack/patroni.ts): a leader and a synchronous
 * standby, a 3-member etcd, HAProxy on STACK_PG_PORT routing to the leader. Unset or 0: one server.
 */
const pgHaFlag = (raw: string | undefined): boolean => {
  if (raw === undefined || raw === "" || raw === "0") return false;
  if (raw === "1") return true;
  throw new Error(`PG_HA must be 1 or 0, got "${raw}"`);
};

/** The Patroni members (2: a leader and its synchronous standby) and the etcd members (3: a quorum). */
export const PATRONI_MEMBER_COUNT = 2;
export const ETCD_MEMBER_COUNT = 3;

/** etcd member n listens for clients on STACK_ETCD_PORT + 10 * (n - 1), for its peers on that + 1. */
export const ETCD_PORT_STEP = 10;

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
}

export interface PatroniMember {
  /** Patroni's member name, also its directory under the stack's pg/ha/. */
  name: string;
  /** Its Postgres (HAProxy routes STACK_PG_PORT to the leader's). */
  pgPort: number;
  /** Patroni's REST API: /primary answers 200 on the leader only (HAProxy's health check). */
  restPort: number;
}

export interface KafkaNode {
  /** node.id, 1-based. */
  id: number;
  port: number;
  controllerPort: number;
  jmxExporterPort: number;
}

/**
 * The local stack's locations, from the STACK_* variables and KAFKA_NODES of `env` (this process's
 * environment by default; a test builds a private cluster's from its own variables).
 */
export function localStack(env: Record<string, string | undefined> = process.env) {
  const port = (name: string, fallback: number) => {
    const raw = env[name];
    const value = raw ? Number(raw) : fallback;
    if (!Number.isInteger(value) || value < 1 || value > 65535) {
      throw new Error(`${name} must be a TCP port (1-65535), got "${raw}"`);
    }
    return value;
  };
  const kafkaPort = port("STACK_KAFKA_PORT", 19092);
  const pgPort = port("STACK_PG_PORT", 15432);
  const pgbouncerPort = port("STACK_PGBOUNCER_PORT", 16432);
  const kafkaControllerPort = port("STACK_KAFKA_CONTROLLER_PORT", kafkaPort + 1);
  const kafkaJmxExporterPort = port("STACK_KAFKA_JMX_EXPORTER_PORT", 19404);
  const pgHa = pgHaFlag(env.PG_HA);
  const etcdPort = port("STACK_ETCD_PORT", 12379);
  const patroniPgPort = port("STACK_PATRONI_PG_PORT", 15452);
  const patroniRestPort = port("STACK_PATRONI_REST_PORT", 18008);
  const below = (p: number, what: string) => {
    if (p > 65535) throw new Error(`${what} would listen on port ${p}: lower its STACK_* port`);
    return p;
  };
  const etcdMembers: EtcdMember[] = Array.from({ length: ETCD_MEMBER_COUNT }, (_, i) => ({
    name: `etcd${i + 1}`,
    clientPort: below(etcdPort + ETCD_PORT_STEP * i, `etcd member ${i + 1}`),
    peerPort: below(etcdPort + ETCD_PORT_STEP * i + 1, `etcd member ${i + 1}`),
  }));
  const patroniMembers: PatroniMember[] = Array.from({ length: PATRONI_MEMBER_COUNT }, (_, i) => ({
    name: `pg${i + 1}`,
    pgPort: below(patroniPgPort + i, `Patroni member ${i + 1}`),
    restPort: below(patroniRestPort + i, `Patroni member ${i + 1}`),
  }));
  const kafkaNodes: KafkaNode[] = Array.from({ length: kafkaNodeCount(env.KAFKA_NODES) }, (_, i) => {
    const at = (base: number) => {
      const p = base + KAFKA_NODE_PORT_STEP * i;
      if (p > 65535) throw new Error(`Kafka node ${i + 1} would listen on port ${p}: lower STACK_KAFKA_* ports`);
      return p;
    };
    return {
      id: i + 1,
      port: at(kafkaPort),
      controllerPort: at(kafkaControllerPort),
      jmxExporterPort: at(kafkaJmxExporterPort),
    };
  });
  return {
    dir: resolve(env.STACK_DIR ?? new URL("../.stack", import.meta.url).pathname),
    /** Node 1's broker port (the others: kafkaNodes). */
    kafkaPort,
    kafkaControllerPort,
    /** Node 1's JMX exporter javaagent (Prometheus metrics of the broker's MBeans). */
    kafkaJmxExporterPort,
    /** Every Kafka node, node 1 first (KAFKA_NODES: 1 or 3). */
    kafkaNodes,
    /** KAFKA_SECURITY: plaintext (default) or sasl_ssl, a separate cluster with its own data. */
    kafkaSecurity: kafkaSecurityMode(env.KAFKA_SECURITY),
    /** Postgres' port: the server itself, or with PG_HA HAProxy in front of the Patroni leader. */
    pgPort,
    pgbouncerPort,
    /** PG_HA=1: Patroni-managed leader + synchronous standby behind HAProxy (tools/stack/patroni.ts). */
    pgHa,
    /** PG_HA's etcd (the Patroni cluster's state), three members on loopback. */
    etcdMembers,
    /** PG_HA's Postgres members, each with its Patroni REST API. */
    patroniMembers,
    /** HAProxy's stats page (PG_HA): which member is up, i.e. where STACK_PG_PORT goes. */
    haproxyStatsPort: port("STACK_HAPROXY_STATS_PORT", 18404),
    postgresExporterPort: port("STACK_PG_EXPORTER_PORT", 19187),
    pgbouncerExporterPort: port("STACK_PGBOUNCER_EXPORTER_PORT", 19127),
    prometheusPort: port("STACK_PROMETHEUS_PORT", 19090),
    // Not 19093: that is the Kafka controller's default (STACK_KAFKA_PORT + 1).
    alertmanagerPort: port("STACK_ALERTMANAGER_PORT", 19094),
    /** The stack's webhook receiver for Alertmanager's pager and ticket routes (tools/stack/alert-receiver.ts). */
    alertReceiverPort: port("STACK_ALERT_RECEIVER_PORT", 19095),
    database: "qrscan",
    /** The migration owner: migrations, operator commands (keys, dlq, maintain…) and the tests' fixtures. */
    user: "qrscan",
    password: "qrscan",
    /** The login users the stack creates, each in its group role (docs/security.md, "Database roles"). */
    logins: DB_LOGINS,
    /** The bootstrap list of every node: the one source the server, worker, tests, jobs and tools use. */
    brokers: kafkaNodes.map((n) => `127.0.0.1:${n.port}`).join(","),
    /** Through pgbouncer (transaction pooling), as the owner: the operator commands' default. */
    databaseUrl: `postgres://qrscan:qrscan@127.0.0.1:${pgbouncerPort}/qrscan`,
    /** Through pgbouncer as the edge (qrscan_edge): the server's default DATABASE_URL. */
    edgeDatabaseUrl: loginUrl(DB_LOGINS.edge, pgbouncerPort, "qrscan"),
    /** The edge's key refresh: pgbouncer's alias with a pool of its own (KEYS_DATABASE_SUFFIX). */
    keysDatabaseUrl: loginUrl(DB_LOGINS.edge, pgbouncerPort, `qrscan${KEYS_DATABASE_SUFFIX}`),
    /** Through pgbouncer as the worker (qrscan_worker): the worker's default DATABASE_URL. */
    workerDatabaseUrl: loginUrl(DB_LOGINS.worker, pgbouncerPort, "qrscan"),
    /** Straight to Postgres: migrations and admin tasks that need a session. */
    directDatabaseUrl: `postgres://qrscan:qrscan@127.0.0.1:${pgPort}/qrscan`,
    /** As the superuser, to the maintenance database: creating and dropping databases. */
    adminDatabaseUrl: `postgres://postgres@127.0.0.1:${pgPort}/postgres`,
  };
}

export type LocalStack = ReturnType<typeof localStack>;

/** A login user of the local stack and of compose.yaml, and the role it is a member of. */
export interface DbLogin {
  user: string;
  /** The local stack's (loopback only); compose.yaml takes POSTGRES_PASSWORD. */
  password: string;
  /** A group role of sql/migrations/0009_roles.sql, or pg_monitor. */
  member: "qrscan_edge" | "qrscan_worker" | "pg_monitor";
}

export const DB_LOGINS = {
  edge: { user: "edge", password: "edge", member: "qrscan_edge" },
  worker: { user: "worker", password: "worker", member: "qrscan_worker" },
  /** The exporters: pg_monitor in Postgres, one of pgbouncer's stats_users. */
  monitor: { user: "monitor", password: "monitor", member: "pg_monitor" },
} as const satisfies Record<string, DbLogin>;

/**
 * pgbouncer serves each product database a second time as `<database>_keys`, with a small pool of
 * its own: the edge's key refresh (API_KEYS_DATABASE_URL) never queues behind the stats route.
 */
export const KEYS_DATABASE_SUFFIX = "_keys";

const loginUrl = (login: DbLogin, port: number, database: string) =>
  `postgres://${login.user}:${login.password}@127.0.0.1:${port}/${database}`;

/**
 * Replication of the product's topics (and the broker defaults) for a cluster of `nodes`: with 3,
 * every partition has 3 copies and a write (acks=all) is acknowledged once at least 2 in-sync
 * replicas have it; a replica that fell behind never becomes leader. One node: one copy.
 */
export function topicReplication(nodes: number): {
  replicationFactor: number;
  config: { "min.insync.replicas": string; "unclean.leader.election.enable": "false" };
} {
  const replicated = nodes >= 3;
  return {
    replicationFactor: replicated ? 3 : 1,
    config: { "min.insync.replicas": replicated ? "2" : "1", "unclean.leader.election.enable": "false" },
  };
}

/** Topics the product needs. `stack up` creates them; the server and the worker expect them to exist. */
export const TOPICS = {
  // Retention is explicit and longer than the backup interval (a daily backup plus continuous WAL):
  // after a restore the workers replay from the restored rows' offsets, which must still be in
  // the topic (jobs/restore-offsets.ts, docs/runbooks/restore.md).
  scans: { name: "scans", partitions: 12, config: { "retention.ms": String(7 * 24 * 3600 * 1000) } },
  deadLetters: { name: "analytics.errors", partitions: 3 },
} as const;
