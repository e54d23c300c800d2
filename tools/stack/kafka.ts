// Apache Kafka in KRaft mode from Maven Central jars on the JDK: one node (KAFKA_NODES=1, the dev
// default) or three (KAFKA_NODES=3), each a combined broker + controller, the three forming one
// controller quorum. Each node has its own ports (shared/local-stack.ts), data dir, log and pid file.
// KAFKA_SECURITY=sasl_ssl makes it a separate secure cluster (./kafka-security.ts) in .stack/kafka-sasl.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KafkaAdmin, type KafkaConfig, type NewTopic } from "bun-rdkafka";
import {
  KAFKA_NODE_PORT_STEP,
  KAFKA_SECURITY_MODES,
  type KafkaNode,
  type KafkaSecurityMode,
  type LocalStack,
  TOPICS,
  topicReplication,
} from "../../shared/local-stack.ts";
import {
  KAFKA_ACLS,
  aclCommandArgs,
  adminClientSecurity,
  ensureKafkaSecurityFiles,
  kafkaSecurityFiles,
  scramFormatArgs,
  secureListenerProperties,
  writeAdminProperties,
} from "./kafka-security.ts";
import { jmxExporterAgentFlag } from "./monitoring.ts";
import { killPidFile, portOpen, readPid, run, startDetached, stopPid, waitForService, writePid } from "./processes.ts";

const POM = new URL("../kafka/pom.xml", import.meta.url).pathname;

/** Where one node keeps its files. */
export interface KafkaNodePaths {
  root: string;
  data: string;
  config: string;
  log4j: string;
  log: string;
  pid: string;
}

function nodeFiles(root: string): KafkaNodePaths {
  return {
    root,
    data: join(root, "data"),
    config: join(root, "server.properties"),
    log4j: join(root, "log4j.properties"),
    log: join(root, "kafka.log"),
    pid: join(root, "kafka.pid"),
  };
}

/**
 * The single node lives in $STACK_DIR/kafka (as before there were modes); the three nodes of the
 * replicated cluster in $STACK_DIR/kafka/nodes/<id>: a separate cluster with its own data. The
 * secure clusters (KAFKA_SECURITY=sasl_ssl) likewise in $STACK_DIR/kafka-sasl, with their TLS files
 * and passwords.
 */
function securityRoot(stack: LocalStack, security: KafkaSecurityMode = stack.kafkaSecurity): string {
  return join(stack.dir, security === "sasl_ssl" ? "kafka-sasl" : "kafka");
}
function singleNodePaths(stack: LocalStack, security?: KafkaSecurityMode): KafkaNodePaths {
  return nodeFiles(securityRoot(stack, security));
}
function clusterRoot(stack: LocalStack, security?: KafkaSecurityMode): string {
  return join(securityRoot(stack, security), "nodes");
}
function clusterNodePaths(stack: LocalStack, id: number, security?: KafkaSecurityMode): KafkaNodePaths {
  return nodeFiles(join(clusterRoot(stack, security), String(id)));
}

/** Every node's files of every mode (node count and security): what `down` stops. */
function allNodePaths(stack: LocalStack): KafkaNodePaths[] {
  return KAFKA_SECURITY_MODES.flatMap((security) => [
    singleNodePaths(stack, security),
    ...[1, 2, 3].map((id) => clusterNodePaths(stack, id, security)),
  ]);
}

/** The secure mode's CA, broker certificate and passwords (KAFKA_SECURITY=sasl_ssl). */
export function kafkaSecurityPaths(stack: LocalStack) {
  return kafkaSecurityFiles(securityRoot(stack, "sasl_ssl"));
}

/** librdkafka settings of the stack's own admin client: the super user `admin` in the secure mode. */
export function kafkaAdminConfig(stack: LocalStack): KafkaConfig {
  const security = stack.kafkaSecurity === "sasl_ssl" ? adminClientSecurity(kafkaSecurityPaths(stack)) : {};
  return { "bootstrap.servers": stack.brokers, ...security };
}

/** The files of node `id` in the stack's mode (KAFKA_NODES). */
export function kafkaNodePaths(stack: LocalStack, id: number): KafkaNodePaths {
  return stack.kafkaNodes.length === 1 ? singleNodePaths(stack) : clusterNodePaths(stack, id);
}

/** The shared jar cache and node 1's files. */
export function kafkaPaths(stack: LocalStack) {
  const root = join(stack.dir, "kafka");
  return { ...kafkaNodePaths(stack, 1), libs: join(root, "libs"), clusterRoot: clusterRoot(stack) };
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

/**
 * Where each node listens and how its JVM is started: the stack's own is loopback and a plain
 * `java`; the multi-host bench (bench/e2e-hosts.ts) puts each node in a network namespace of its
 * own (its address, `ip netns exec <ns>` before the command).
 */
export interface KafkaPlacement {
  host(node: KafkaNode): string;
  commandPrefix(node: KafkaNode): string[];
}
export const LOOPBACK_PLACEMENT: KafkaPlacement = { host: () => "127.0.0.1", commandPrefix: () => [] };

function writeConfig(stack: LocalStack, node: KafkaNode, placement: KafkaPlacement): void {
  const p = kafkaNodePaths(stack, node.id);
  mkdirSync(p.data, { recursive: true });
  const nodes = stack.kafkaNodes.length;
  const replication = topicReplication(nodes);
  const rf = replication.replicationFactor;
  // The secure mode's file holds admin's password.
  writeFileSync(
    p.config,
    [
      "process.roles=broker,controller",
      `node.id=${node.id}`,
      `controller.quorum.voters=${stack.kafkaNodes.map((n) => `${n.id}@${placement.host(n)}:${n.controllerPort}`).join(",")}`,
      ...(stack.kafkaSecurity === "sasl_ssl"
        ? secureListenerProperties(kafkaSecurityPaths(stack), node)
        : [
            `listeners=PLAINTEXT://${placement.host(node)}:${node.port},CONTROLLER://${placement.host(node)}:${node.controllerPort}`,
            `advertised.listeners=PLAINTEXT://${placement.host(node)}:${node.port}`,
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
          ]),
      `log.dirs=${p.data}`,
      "num.partitions=1",
      "auto.create.topics.enable=false",
      // Replication (topicReplication): the broker defaults match the product topics' settings, so
      // the internal topics and any topic created without them get the same guarantees.
      `default.replication.factor=${rf}`,
      `min.insync.replicas=${replication.config["min.insync.replicas"]}`,
      "unclean.leader.election.enable=false",
      `offsets.topic.replication.factor=${rf}`,
      "offsets.topic.num.partitions=12",
      `transaction.state.log.replication.factor=${rf}`,
      `transaction.state.log.min.isr=${replication.config["min.insync.replicas"]}`,
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
    { mode: 0o600 },
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

/** The cluster id every node of the stack is formatted with (one per cluster, kept next to the nodes). */
function clusterId(stack: LocalStack): string {
  const file = join(stack.kafkaNodes.length === 1 ? singleNodePaths(stack).root : clusterRoot(stack), "cluster.id");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  // As Kafka's own Uuid.randomUuid(): never one starting with "-", which a command line takes for an option.
  let id = "-";
  while (id.startsWith("-")) id = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64url");
  mkdirSync(join(file, ".."), { recursive: true });
  writeFileSync(file, `${id}\n`);
  return id;
}

function formatStorage(stack: LocalStack, node: KafkaNode): void {
  const p = kafkaNodePaths(stack, node.id);
  if (existsSync(join(p.data, "meta.properties"))) return;
  // The secure mode's SCRAM users go into the first metadata: the brokers authenticate each other
  // as admin before any client could create a user.
  const scram = stack.kafkaSecurity === "sasl_ssl" ? scramFormatArgs(kafkaSecurityPaths(stack)) : [];
  run("java", [
    "-cp",
    javaClasspath(stack),
    "kafka.tools.StorageTool",
    "format",
    // The = form: an id written by an older stack may start with "-".
    `--cluster-id=${clusterId(stack)}`,
    "-c",
    p.config,
    ...scram,
  ]);
}

/** Grants KAFKA_ACLS (idempotent: an existing ACL is kept), as admin through node 1. */
async function applyAcls(stack: LocalStack): Promise<void> {
  const f = kafkaSecurityPaths(stack);
  writeAdminProperties(f);
  // One JVM per grant, in parallel: each takes a few seconds to start.
  await Promise.all(
    KAFKA_ACLS.map(async (acl) => {
      const args = ["-cp", javaClasspath(stack), "kafka.admin.AclCommand", "--bootstrap-server", stack.brokers];
      const proc = Bun.spawn(["java", ...args, "--command-config", f.adminProperties, ...aclCommandArgs(acl)], {
        stdout: "pipe",
        stderr: "pipe",
      });
      const [out, err, code] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ]);
      if (code !== 0) throw new Error(`kafka-acls for ${acl.principal} failed (${code}):\n${out}${err}`);
    }),
  );
}

/** Answers when the node serves metadata (asked alone), not merely when its port is open. */
async function nodeAnswers(stack: LocalStack, node: KafkaNode, host: string): Promise<boolean> {
  if (!(await portOpen(node.port, host))) return false;
  const admin = new KafkaAdmin({
    config: { ...kafkaAdminConfig(stack), "bootstrap.servers": `${host}:${node.port}` },
  });
  try {
    admin.describeTopics(undefined, 2_000);
    return true;
  } finally {
    admin.close();
  }
}

/** JVM flags per mode: three JVMs share this 2-core box, so each gets a smaller heap and fewer GC threads. */
function jvmFlags(stack: LocalStack): string[] {
  if (stack.kafkaNodes.length === 1) return ["-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"];
  return [
    "-Xms128m",
    "-Xmx384m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:ParallelGCThreads=1",
    "-XX:ConcGCThreads=1",
  ];
}

/** Fails when Kafka of another mode (KAFKA_NODES, KAFKA_SECURITY) runs on this stack: all use node 1's ports. */
function assertNoOtherMode(stack: LocalStack): void {
  const own = new Set(stack.kafkaNodes.map((n) => kafkaNodePaths(stack, n.id).root));
  for (const p of allNodePaths(stack)) {
    if (own.has(p.root)) continue;
    const pid = readPid(p.pid);
    if (pid !== null) {
      throw new Error(
        `Kafka of another mode runs (pid ${pid}, ${p.root}); stop it first with \`bun run stack down\`, then start with KAFKA_NODES=${stack.kafkaNodes.length} KAFKA_SECURITY=${stack.kafkaSecurity}`,
      );
    }
  }
}

/**
 * Starts every node that is not running (idempotent), waits until each answers, creates the topics.
 * `placement`: where the nodes listen and run (default loopback; `stack.brokers` must name the same).
 */
export async function startKafka(stack: LocalStack, placement: KafkaPlacement = LOOPBACK_PLACEMENT): Promise<void> {
  assertNoOtherMode(stack);
  const missing = stack.kafkaNodes.filter((n) => readPid(kafkaNodePaths(stack, n.id).pid) === null);
  if (missing.length > 0) {
    for (const node of missing) {
      for (const [port, variable] of [
        [node.port, "STACK_KAFKA_PORT"],
        [node.controllerPort, "STACK_KAFKA_CONTROLLER_PORT"],
        [node.jmxExporterPort, "STACK_KAFKA_JMX_EXPORTER_PORT"],
      ] as const) {
        if (await portOpen(port, placement.host(node))) {
          throw new Error(
            `port ${port} (Kafka node ${node.id}) is in use by another process; set ${variable} to a free port (node n uses it + ${KAFKA_NODE_PORT_STEP} * (n - 1))`,
          );
        }
      }
    }
    ensureKafkaJars(stack);
    if (stack.kafkaSecurity === "sasl_ssl") {
      const f = kafkaSecurityPaths(stack);
      const formatted = stack.kafkaNodes.some((n) =>
        existsSync(join(kafkaNodePaths(stack, n.id).data, "meta.properties")),
      );
      if (ensureKafkaSecurityFiles(f) && formatted) {
        throw new Error(
          `the secure Kafka's passwords in ${f.dir}/secrets were missing but its nodes are formatted with the old ones: delete ${f.dir} (or \`bun run stack reset\`) and start again`,
        );
      }
    }
    for (const node of missing) {
      const p = kafkaNodePaths(stack, node.id);
      // The broker's metrics for Prometheus (monitoring/jmx-exporter/kafka.yml), served by the broker's JVM.
      const jmxAgent = jmxExporterAgentFlag(stack, node.jmxExporterPort);
      writeConfig(stack, node, placement);
      formatStorage(stack, node);
      const [cmd = "java", ...prefixArgs] = [...placement.commandPrefix(node), "java"];
      const pid = startDetached(
        cmd,
        [
          ...prefixArgs,
          ...jvmFlags(stack),
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
  }
  await Promise.all(
    stack.kafkaNodes.map((n) =>
      waitForService(
        `Kafka node ${n.id}`,
        () => nodeAnswers(stack, n, placement.host(n)),
        120_000,
        kafkaNodePaths(stack, n.id).log,
      ),
    ),
  );
  await createProductTopics(stack);
  if (stack.kafkaSecurity === "sasl_ssl" && missing.length > 0) await applyAcls(stack);
}

/** The product's topics with the stack's replication (topicReplication) on top of their own settings. */
export function productTopics(stack: LocalStack): NewTopic[] {
  const replication = topicReplication(stack.kafkaNodes.length);
  return [TOPICS.scans, TOPICS.deadLetters].map((t: NewTopic) => ({
    ...t,
    replicationFactor: replication.replicationFactor,
    config: { ...t.config, ...replication.config },
  }));
}

export async function createProductTopics(stack: LocalStack): Promise<void> {
  const admin = new KafkaAdmin({ config: kafkaAdminConfig(stack) });
  try {
    await admin.createTopics(productTopics(stack));
  } finally {
    admin.close();
  }
}

/** Stops every Kafka node of this stack, of either mode (SIGTERM, by pid); true when one ran. */
export async function stopKafka(stack: LocalStack): Promise<boolean> {
  const all = allNodePaths(stack);
  const pids = all.map((p) => readPid(p.pid));
  await Promise.all(pids.map((pid) => (pid === null ? undefined : stopPid(pid, "SIGTERM"))));
  for (const p of all) rmSync(p.pid, { force: true });
  return pids.some((pid) => pid !== null);
}

/** kill -9 of every Kafka node of this stack, of either mode, by pid: no controlled shutdown. Returns the pids killed. */
export async function killKafka(stack: LocalStack): Promise<number[]> {
  const pids = await Promise.all(allNodePaths(stack).map((p) => killPidFile(p.pid)));
  return pids.filter((pid): pid is number => pid !== null);
}

/** Node 1's pid (null when it is not running). */
export function kafkaPid(stack: LocalStack): number | null {
  return kafkaNodePid(stack, 1);
}

/** Node `id`'s pid (null when it is not running). */
export function kafkaNodePid(stack: LocalStack, id: number): number | null {
  return readPid(kafkaNodePaths(stack, id).pid);
}
