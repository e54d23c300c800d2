// Apache Kafka in KRaft mode (combined broker + controller, one node) from Maven Central jars on the JDK.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KafkaAdmin } from "../../shared/kafka/admin.ts";
import { type LocalStack, TOPICS } from "../../shared/local-stack.ts";
import { jmxExporterAgentFlag } from "./monitoring.ts";
import { portOpen, readPid, run, startDetached, stopPidFile, waitForService, writePid } from "./processes.ts";

const POM = new URL("../kafka/pom.xml", import.meta.url).pathname;

export function kafkaPaths(stack: LocalStack) {
  const root = join(stack.dir, "kafka");
  return {
    root,
    libs: join(root, "libs"),
    data: join(root, "data"),
    config: join(root, "server.properties"),
    log4j: join(root, "log4j.properties"),
    log: join(root, "kafka.log"),
    pid: join(root, "kafka.pid"),
  };
}

/** Copies the broker's jars (and kafka-tools for the perf test) from Maven Central once. */
export function ensureKafkaJars(stack: LocalStack): void {
  const p = kafkaPaths(stack);
  if (existsSync(p.libs) && readdirSync(p.libs).some((f) => f.startsWith("kafka_2.13-"))) return;
  mkdirSync(p.libs, { recursive: true });
  console.log("stack: fetching Kafka jars with Maven (first run only)...");
  run("mvn", [
    "-q",
    "-B",
    "-f",
    POM,
    "dependency:copy-dependencies",
    `-DoutputDirectory=${p.libs}`,
    "-DincludeScope=runtime",
  ]);
}

export function javaClasspath(stack: LocalStack): string {
  return `${kafkaPaths(stack).libs}/*`;
}

function writeConfig(stack: LocalStack): void {
  const p = kafkaPaths(stack);
  mkdirSync(p.data, { recursive: true });
  writeFileSync(
    p.config,
    [
      "process.roles=broker,controller",
      "node.id=1",
      `controller.quorum.voters=1@127.0.0.1:${stack.kafkaControllerPort}`,
      `listeners=PLAINTEXT://127.0.0.1:${stack.kafkaPort},CONTROLLER://127.0.0.1:${stack.kafkaControllerPort}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${stack.kafkaPort}`,
      "controller.listener.names=CONTROLLER",
      "inter.broker.listener.name=PLAINTEXT",
      "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
      `log.dirs=${p.data}`,
      "num.partitions=1",
      "auto.create.topics.enable=false",
      "offsets.topic.replication.factor=1",
      "offsets.topic.num.partitions=12",
      "transaction.state.log.replication.factor=1",
      "transaction.state.log.min.isr=1",
      "group.initial.rebalance.delay.ms=0",
      "delete.topic.enable=true",
      "log.retention.hours=24",
      // Sized to a small dev box: the defaults (3 network + 8 I/O threads) contend on 2 cores.
      // At 3,000 single-event requests/s the broker used 98-129 us of CPU per request with these
      // against 117-149 us with the defaults (6 and 5 warm runs; the edge's p99 is too noisy here to tell).
      "num.network.threads=2",
      "num.io.threads=2",
      "",
    ].join("\n"),
  );
  writeFileSync(
    p.log4j,
    [
      "log4j.rootLogger=INFO, stdout",
      "log4j.appender.stdout=org.apache.log4j.ConsoleAppender",
      "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout",
      "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n",
      "log4j.logger.kafka=INFO",
      "log4j.logger.org.apache.kafka=INFO",
      "log4j.logger.state.change.logger=WARN",
      "",
    ].join("\n"),
  );
}

function formatStorage(stack: LocalStack): void {
  const p = kafkaPaths(stack);
  if (existsSync(join(p.data, "meta.properties"))) return;
  const clusterId = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64url");
  run("java", ["-cp", javaClasspath(stack), "kafka.tools.StorageTool", "format", "-t", clusterId, "-c", p.config]);
}

/** Answers when the broker serves metadata, not merely when its port is open. */
async function brokerAnswers(stack: LocalStack): Promise<boolean> {
  if (!(await portOpen(stack.kafkaPort))) return false;
  const admin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
  try {
    admin.describeTopics(undefined, 2_000);
    return true;
  } finally {
    admin.close();
  }
}

export async function startKafka(stack: LocalStack): Promise<void> {
  const p = kafkaPaths(stack);
  if (readPid(p.pid) === null) {
    if (await portOpen(stack.kafkaPort)) {
      throw new Error(`port ${stack.kafkaPort} is in use by another process; set STACK_KAFKA_PORT to a free port`);
    }
    if (await portOpen(stack.kafkaJmxExporterPort)) {
      throw new Error(
        `port ${stack.kafkaJmxExporterPort} is in use by another process; set STACK_KAFKA_JMX_EXPORTER_PORT to a free port`,
      );
    }
    ensureKafkaJars(stack);
    // The broker's metrics for Prometheus (monitoring/jmx-exporter/kafka.yml), served by the broker's JVM.
    const jmxAgent = jmxExporterAgentFlag(stack);
    writeConfig(stack);
    formatStorage(stack);
    const pid = startDetached(
      "java",
      [
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        jmxAgent,
        `-Dlog4j.configuration=file:${p.log4j}`,
        "-cp",
        javaClasspath(stack),
        "kafka.Kafka",
        p.config,
      ],
      p.log,
    );
    writePid(p.pid, pid);
  }
  await waitForService("Kafka", () => brokerAnswers(stack), 90_000, p.log);
  await createProductTopics(stack);
}

export async function createProductTopics(stack: LocalStack): Promise<void> {
  const admin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
  try {
    await admin.createTopics([TOPICS.scans, TOPICS.deadLetters]);
  } finally {
    admin.close();
  }
}

export async function stopKafka(stack: LocalStack): Promise<boolean> {
  return stopPidFile(kafkaPaths(stack).pid, "SIGTERM");
}

export function kafkaPid(stack: LocalStack): number | null {
  return readPid(kafkaPaths(stack).pid);
}
