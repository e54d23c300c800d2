// Where the project's own local stack (scripts/stack.ts) listens. One source of truth for the
// stack script and for the defaults of the server's and worker's configuration.
import { resolve } from "node:path";

const port = (name: string, fallback: number) => {
  const raw = process.env[name];
  const value = raw ? Number(raw) : fallback;
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new Error(`${name} must be a TCP port (1-65535), got "${raw}"`);
  }
  return value;
};

export function localStack() {
  const kafkaPort = port("STACK_KAFKA_PORT", 19092);
  const pgPort = port("STACK_PG_PORT", 15432);
  const pgbouncerPort = port("STACK_PGBOUNCER_PORT", 16432);
  return {
    dir: resolve(process.env.STACK_DIR ?? new URL("../.stack", import.meta.url).pathname),
    kafkaPort,
    kafkaControllerPort: port("STACK_KAFKA_CONTROLLER_PORT", kafkaPort + 1),
    /** The broker's JMX exporter javaagent (Prometheus metrics of the broker's MBeans). */
    kafkaJmxExporterPort: port("STACK_KAFKA_JMX_EXPORTER_PORT", 19404),
    pgPort,
    pgbouncerPort,
    postgresExporterPort: port("STACK_PG_EXPORTER_PORT", 19187),
    pgbouncerExporterPort: port("STACK_PGBOUNCER_EXPORTER_PORT", 19127),
    prometheusPort: port("STACK_PROMETHEUS_PORT", 19090),
    // Not 19093: that is the Kafka controller's default (STACK_KAFKA_PORT + 1).
    alertmanagerPort: port("STACK_ALERTMANAGER_PORT", 19094),
    database: "qrscan",
    user: "qrscan",
    password: "qrscan",
    brokers: `127.0.0.1:${kafkaPort}`,
    /** Through pgbouncer (transaction pooling): what the worker and server use. */
    databaseUrl: `postgres://qrscan:qrscan@127.0.0.1:${pgbouncerPort}/qrscan`,
    /** Straight to Postgres: migrations and admin tasks that need a session. */
    directDatabaseUrl: `postgres://qrscan:qrscan@127.0.0.1:${pgPort}/qrscan`,
    /** As the superuser, to the maintenance database: creating and dropping databases. */
    adminDatabaseUrl: `postgres://postgres@127.0.0.1:${pgPort}/postgres`,
  };
}

export type LocalStack = ReturnType<typeof localStack>;

/** Topics the product needs. `stack up` creates them; the server and the worker expect them to exist. */
export const TOPICS = {
  // Retention is explicit and longer than the backup interval (a daily backup plus continuous WAL):
  // after a restore the workers replay from the restored rows' offsets, which must still be in
  // the topic (scripts/restore-offsets.ts, docs/runbooks/restore.md).
  scans: { name: "scans", partitions: 12, config: { "retention.ms": String(7 * 24 * 3600 * 1000) } },
  deadLetters: { name: "analytics.errors", partitions: 3 },
} as const;
