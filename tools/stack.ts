// The local stack: real Kafka (KRaft), PostgreSQL and pgbouncer on loopback, data in .stack/, and
// their monitoring: Prometheus, Alertmanager, the Postgres and pgbouncer exporters (monitoring/).
//   bun run stack up      start what is not running (idempotent), wait until each answers
//   bun run stack down    stop exactly the processes `up` started, by their pids
//   bun run stack status  what runs where
//   bun run stack reset   down, then delete all data
// KAFKA_NODES=3 makes Kafka a replicated cluster of three nodes (default 1); KAFKA_SECURITY=sasl_ssl a
// secure one (SCRAM over TLS, ACLs; status prints each principal's settings). `up --only kafka` and
// `down --only kafka` start or stop Kafka alone (a test's private cluster).
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { localStack } from "../shared/local-stack.ts";
import { KAFKA_PRINCIPALS, clientEnv } from "./stack/kafka-security.ts";
import { kafkaNodePid, kafkaSecurityPaths, startKafka, stopKafka } from "./stack/kafka.ts";
import { monitoringPaths, monitoringStatus, startMonitoring, stopMonitoring } from "./stack/monitoring.ts";
import { ensurePackages } from "./stack/packages.ts";
import { pgPaths } from "./stack/pg-paths.ts";
import {
  pgbouncerPid,
  postgresPid,
  startPgbouncer,
  startPostgres,
  stopPgbouncer,
  stopPostgres,
} from "./stack/postgres.ts";

const stack = localStack();

export async function up(): Promise<void> {
  ensurePackages();
  // Where `bun run dev` writes the app's logs (logs/app) and promtail reads them: there from the
  // start, so the disk runbook's `du` over the stack's directories works before any dev run.
  mkdirSync(join(stack.dir, "logs"), { recursive: true });
  await Promise.all([startKafka(stack), startPostgres(stack).then(() => startPgbouncer(stack))]);
  await startMonitoring(stack);
  status();
}

export async function down(): Promise<void> {
  await stopMonitoring(stack);
  await stopPgbouncer(stack);
  await Promise.all([stopKafka(stack), stopPostgres(stack)]);
  console.log("stack: stopped");
}

export function status(): void {
  const line = (name: string, pid: number | null, where: string) =>
    console.log(`${name.padEnd(12)} ${pid ? `running (pid ${pid})`.padEnd(22) : "stopped".padEnd(22)} ${where}`);
  for (const node of stack.kafkaNodes) {
    line(
      stack.kafkaNodes.length === 1 ? "kafka" : `kafka-${node.id}`,
      kafkaNodePid(stack, node.id),
      `${node.id === 1 ? `KAFKA_BROKERS=${stack.brokers}  ` : ""}(JMX exporter http://127.0.0.1:${node.jmxExporterPort}/metrics)`,
    );
  }
  if (stack.kafkaSecurity === "sasl_ssl") {
    console.log("kafka (sasl_ssl): each principal's settings (their ACLs: tools/stack/kafka-security.ts):");
    for (const p of KAFKA_PRINCIPALS) {
      const env = Object.entries(clientEnv(kafkaSecurityPaths(stack), p)).map(([k, v]) => `${k}=${v}`);
      console.log(`  ${p.padEnd(7)} ${env.join(" ")}`);
    }
  }
  line("postgres", postgresPid(stack), `DATABASE_DIRECT_URL=${stack.directDatabaseUrl}`);
  line("pgbouncer", pgbouncerPid(stack), `DATABASE_URL=${stack.databaseUrl}`);
  for (const m of monitoringStatus(stack)) line(m.name, m.pid, m.where);
}

if (import.meta.main) {
  const command = process.argv[2] ?? "status";
  const only = process.argv[3] === "--only" ? process.argv[4] : undefined;
  if (process.argv.length > 3 && (only !== "kafka" || !["up", "down", "status"].includes(command))) {
    console.error("usage: bun run stack up|down|status|reset [--only kafka]");
    process.exit(2);
  }
  try {
    if (only === "kafka" && command === "up") await startKafka(stack);
    else if (only === "kafka" && command === "down") await stopKafka(stack);
    else if (only === "kafka" && command === "status") status();
    else if (command === "up") await up();
    else if (command === "down") await down();
    else if (command === "status") status();
    else if (command === "reset") {
      await down();
      // Data goes; the Kafka jar cache (kafka/libs) stays, so the next `up` needs no download.
      rmSync(pgPaths(stack).root, { recursive: true, force: true });
      rmSync(join(stack.dir, "kafka", "data"), { recursive: true, force: true });
      rmSync(join(stack.dir, "kafka", "nodes"), { recursive: true, force: true });
      // The secure clusters' data, certificates and passwords: all made again by the next `up`.
      rmSync(kafkaSecurityPaths(stack).dir, { recursive: true, force: true });
      rmSync(monitoringPaths(stack).prometheusData, { recursive: true, force: true });
      rmSync(monitoringPaths(stack).alertmanagerData, { recursive: true, force: true });
      console.log(`stack: deleted the data in ${stack.dir}`);
    } else {
      console.error("usage: bun run stack up|down|status|reset [--only kafka]");
      process.exit(2);
    }
  } catch (error) {
    console.error(`stack ${command} failed: ${(error as Error).message}`);
    process.exit(1);
  }
}
