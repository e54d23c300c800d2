// A private replicated Kafka cluster for one test: three KRaft nodes (KAFKA_NODES=3) started by the
// stack's own code (tools/stack/kafka.ts) under a temporary STACK_DIR on free ports, sharing the
// main stack's jar caches; or one node, or a secure one (KAFKA_SECURITY=sasl_ssl), as asked. The main stack's Postgres and pgbouncer stay the test's database. The
// nodes are killed by pid and the directory deleted after the test.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { KafkaConfig } from "bun-rdkafka";
import { KAFKA_NODE_PORT_STEP, type KafkaSecurityMode, type LocalStack, localStack } from "../../shared/local-stack.ts";
import type { KafkaSecurityFiles } from "../../tools/stack/kafka-security.ts";
import {
  ensureKafkaJars,
  kafkaAdminConfig,
  kafkaNodePaths,
  kafkaNodePid,
  kafkaPaths,
  kafkaSecurityPaths,
  startKafka,
} from "../../tools/stack/kafka.ts";
import { ensureJmxExporterJar, monitoringPaths } from "../../tools/stack/monitoring.ts";
import { freePort, isAlive } from "../../tools/stack/processes.ts";
import { onCleanup } from "./cleanup.ts";
import { stack as mainStack } from "./stack.ts";
import { waitFor } from "./wait.ts";

const portFree = (port: number) => {
  try {
    Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true);
    return true;
  } catch {
    return false;
  }
};

/** A free port whose node-2 and node-3 counterparts (+10, +20) are free too. */
function freeNodePort(taken: Set<number>): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = freePort();
    const all = [0, 1, 2].map((i) => first + KAFKA_NODE_PORT_STEP * i);
    if (all.every((p) => p <= 65535 && !taken.has(p) && portFree(p))) {
      for (const p of all) taken.add(p);
      return first;
    }
  }
  throw new Error("no free port with free +10 and +20 neighbours in 50 tries");
}

export interface PrivateCluster {
  stack: LocalStack;
  /** The bootstrap list of the nodes. */
  brokers: string;
  /** The super user's librdkafka settings (bootstrap list included). */
  admin: KafkaConfig;
  /** The CA, the broker's certificate and each principal's password (KAFKA_SECURITY=sasl_ssl). */
  security: KafkaSecurityFiles;
  /** Where node `id` writes its log. */
  log(id: number): string;
  pid(id: number): number;
  /** kill -9 of node `id`; resolves once the process is gone. */
  kill(id: number): Promise<void>;
  /** SIGSTOP of node `id`: it keeps its connections and answers nothing (kill() still ends it). */
  freeze(id: number): void;
  /** Starts the nodes that are not running (the stack's own `up`) and waits until each answers. */
  restart(): Promise<void>;
  /** Leader, replicas and ISR of each partition of `topic`, from the cluster's metadata (kcat -L). */
  describe(topic: string): Promise<PartitionMetadata[]>;
  /** The high watermark of each partition of `topic` (kcat -Q). */
  highWatermarks(topic: string, partitions: number): Promise<number[]>;
}

export interface PartitionMetadata {
  partition: number;
  /** The leader's node id, -1 when there is none. */
  leader: number;
  replicas: number[];
  isr: number[];
}

/**
 * Runs kcat against `brokers` (a child process, so the metadata is read without blocking this
 * process's event loop, which is timing a load); throws with its stderr when it fails.
 */
async function kcat(admin: KafkaConfig, args: string[], timeoutMs = 10_000): Promise<string> {
  const settings = Object.entries(admin).flatMap(([k, v]) => ["-X", `${k}=${v}`]);
  const proc = Bun.spawn(["kcat", ...settings, ...args], { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) throw new Error(`kcat ${args.join(" ")} exited with ${code}: ${err.trim()}`);
    return out;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts a private cluster of `nodes` (3: rf=3, min.insync=2) with the product topics, plaintext or
 * secure (`security`: SASL_SSL with the stack's principals and ACLs); gone after the test.
 */
export async function startPrivateCluster({
  nodes = 3,
  security = "plaintext",
}: { nodes?: 1 | 3; security?: KafkaSecurityMode } = {}): Promise<PrivateCluster> {
  const dir = mkdtempSync(join(tmpdir(), "qrscan-kafka3-"));
  const taken = new Set<number>();
  const stack = localStack({
    ...process.env,
    STACK_DIR: dir,
    KAFKA_NODES: String(nodes),
    KAFKA_SECURITY: security,
    STACK_KAFKA_PORT: String(freeNodePort(taken)),
    STACK_KAFKA_CONTROLLER_PORT: String(freeNodePort(taken)),
    STACK_KAFKA_JMX_EXPORTER_PORT: String(freeNodePort(taken)),
  });
  // The jars come from the main stack's caches (fetched once by Maven), linked, not copied.
  ensureKafkaJars(mainStack);
  const jmxJar = ensureJmxExporterJar(mainStack);
  for (const [target, link] of [
    [kafkaPaths(mainStack).libs, kafkaPaths(stack).libs],
    [dirname(jmxJar), monitoringPaths(stack).jmxLibs],
  ] as const) {
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(target, link);
  }
  const pids = new Set<number>();
  const track = () => {
    for (const n of stack.kafkaNodes) {
      const pid = kafkaNodePid(stack, n.id);
      if (pid !== null) pids.add(pid);
    }
  };
  onCleanup(async () => {
    track();
    // The data is thrown away, so no clean shutdown: SIGKILL by pid, then wait until each is gone.
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await waitFor(
      `the private Kafka nodes (pids ${[...pids].join(", ")}) to exit`,
      async () => [...pids].filter(isAlive),
      (alive) => alive.length === 0,
      20_000,
      50,
    );
    rmSync(dir, { recursive: true, force: true });
  });
  const restart = async () => {
    await startKafka(stack);
    track();
  };
  try {
    await restart();
  } finally {
    track();
  }
  const pidOf = (id: number) => {
    const pid = kafkaNodePid(stack, id);
    if (pid === null) throw new Error(`Kafka node ${id} of the private cluster in ${dir} is not running`);
    return pid;
  };
  return {
    stack,
    brokers: stack.brokers,
    admin: kafkaAdminConfig(stack),
    security: kafkaSecurityPaths(stack),
    log: (id) => kafkaNodePaths(stack, id).log,
    pid: pidOf,
    async kill(id) {
      const pid = pidOf(id);
      process.kill(pid, "SIGKILL");
      await waitFor(
        `Kafka node ${id} (pid ${pid}) to be gone after kill -9`,
        async () => isAlive(pid),
        (a) => !a,
        10_000,
        10,
      );
    },
    freeze(id) {
      process.kill(pidOf(id), "SIGSTOP");
    },
    restart,
    async describe(topic) {
      const md = JSON.parse(await kcat(kafkaAdminConfig(stack), ["-L", "-J", "-m", "5", "-t", topic])) as {
        topics: {
          topic: string;
          error?: string;
          partitions: { partition: number; leader: number; replicas: { id: number }[]; isrs: { id: number }[] }[];
        }[];
      };
      const t = md.topics.find((x) => x.topic === topic);
      if (!t || t.error) throw new Error(`topic ${topic} on ${stack.brokers}: ${t?.error ?? "not in the metadata"}`);
      return t.partitions
        .map((p) => ({
          partition: p.partition,
          leader: p.leader,
          replicas: p.replicas.map((r) => r.id),
          isr: p.isrs.map((r) => r.id),
        }))
        .sort((a, b) => a.partition - b.partition);
    },
    async highWatermarks(topic, partitions) {
      const args = ["-Q", "-J", ...Array.from({ length: partitions }, (_, i) => ["-t", `${topic}:${i}:-1`]).flat()];
      const out = JSON.parse(await kcat(kafkaAdminConfig(stack), args)) as Record<
        string,
        Record<string, { partition: number; offset: number }>
      >;
      return Array.from({ length: partitions }, (_, i) => {
        const offset = out[topic]?.[String(i)]?.offset;
        if (typeof offset !== "number") throw new Error(`kcat -Q gave no offset for ${topic}/${i}`);
        return offset;
      });
    },
  };
}
