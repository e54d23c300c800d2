// The local stack: real Kafka (KRaft), PostgreSQL and pgbouncer on loopback, data in .stack/, and
// their monitoring: Prometheus, Alertmanager, the Postgres and pgbouncer exporters (monitoring/).
//   bun run stack up      start what is not running (idempotent), wait until each answers
//   bun run stack down    stop exactly the processes `up` started, by their pids
//   bun run stack status  what runs where
//   bun run stack reset   down, then delete all data
// KAFKA_NODES=3 makes Kafka a replicated cluster of three nodes (default 1); KAFKA_SECURITY=sasl_ssl a
// secure one (SCRAM over TLS, ACLs; status prints each principal's settings). PG_HA=1 makes Postgres a
// Patroni leader + synchronous standby with etcd, behind HAProxy on STACK_PG_PORT (tools/stack/patroni.ts). `up --only kafka` and
// `down --only kafka` start or stop Kafka alone (a test's private cluster).
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type CliSpec, MAIN, UsageError, parseCommand, runCli } from "../shared/cli.ts";
import { localStack } from "../shared/local-stack.ts";
import { KAFKA_PRINCIPALS, clientEnv } from "./stack/kafka-security.ts";
import { kafkaNodePid, kafkaSecurityPaths, startKafka, stopKafka } from "./stack/kafka.ts";
import { monitoringPaths, monitoringStatus, startMonitoring, stopMonitoring } from "./stack/monitoring.ts";
import { ensurePackages } from "./stack/packages.ts";
import { haStatusLines, haproxyPid, patroniPid, stopHa } from "./stack/patroni.ts";
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
  ensurePackages(stack.pgHa);
  // Where `bun run dev` writes the app's logs (logs/app) and promtail reads them: there from the
  // start, so the disk runbook's `du` over the stack's directories works before any dev run.
  mkdirSync(join(stack.dir, "logs"), { recursive: true });
  await Promise.all([startKafka(stack), startPostgres(stack).then(() => startPgbouncer(stack))]);
  await startMonitoring(stack);
  await status();
}

export async function down(): Promise<void> {
  await stopMonitoring(stack);
  await stopPgbouncer(stack);
  await Promise.all([stopKafka(stack), stack.pgHa ? stopHa(stack) : stopPostgres(stack)]);
  console.log("stack: stopped");
}

export async function status(): Promise<void> {
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
  if (stack.pgHa) {
    // PG_HA=1: every Patroni member with its role and pids, etcd, and HAProxy on the stack's pgPort.
    for (const l of await haStatusLines(stack)) console.log(l);
    console.log(`${"".padEnd(35)} DATABASE_DIRECT_URL=${stack.directDatabaseUrl}`);
  } else line("postgres", postgresPid(stack), `DATABASE_DIRECT_URL=${stack.directDatabaseUrl}`);
  line("pgbouncer", pgbouncerPid(stack), `DATABASE_URL=${stack.databaseUrl}`);
  for (const m of monitoringStatus(stack)) line(m.name, m.pid, m.where);
}

const only = { only: { type: "string", value: "kafka", description: "that service alone" } } as const;
export const STACK_CLI: CliSpec = {
  program: "bun run stack",
  description: "The local services: Kafka, Postgres, pgbouncer and the monitoring, on the STACK_* ports.",
  commands: {
    [MAIN]: { args: "", description: "the same as status", options: {} },
    up: { args: "", description: "start what is not running", options: only },
    down: { args: "", description: "stop everything", options: only },
    status: { args: "", description: "what runs, and the variables to reach it", options: only },
    reset: { args: "", description: "stop, then delete the data (the Kafka jar cache stays)", options: {} },
  },
};

/**
 * The two Postgres modes share STACK_PG_PORT and the pg/ directory, and PG_HA only says which one
 * to start: refuse to act on the other one's processes (a plain `down` would leave the HA cluster
 * running, a plain `reset` delete its data under it), naming the command that would.
 */
function assertPgMode(command: string): void {
  const haLive = stack.patroniMembers.some((m) => patroniPid(stack, m.name) !== null) || haproxyPid(stack) !== null;
  if (!stack.pgHa && haLive)
    throw new UsageError(`Postgres runs as the PG_HA=1 cluster here: run PG_HA=1 bun run stack ${command}`);
  if (stack.pgHa && postgresPid(stack) !== null)
    throw new UsageError(
      `Postgres runs as one server here (started without PG_HA): run bun run stack down first, then PG_HA=1 bun run stack ${command}`,
    );
}

async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(STACK_CLI, argv);
  const command = parsed.command || "status";
  if (parsed.values.only === undefined) assertPgMode(command);
  if (parsed.values.only !== undefined && parsed.values.only !== "kafka")
    throw new UsageError(`--only ${parsed.values.only}: only kafka can run alone`);
  const kafkaOnly = parsed.values.only === "kafka";
  if (kafkaOnly && command === "up") await startKafka(stack);
  else if (kafkaOnly && command === "down") await stopKafka(stack);
  else if (command === "up") await up();
  else if (command === "down") await down();
  else if (command === "status") await status();
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
  }
  return 0;
}

if (import.meta.main) await runCli(STACK_CLI, main);
