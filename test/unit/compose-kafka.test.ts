// compose.yaml's Kafka is the replicated cluster of `KAFKA_NODES=3 bun run stack up`: three KRaft
// nodes, each broker + controller, one quorum of the three, the same host ports as the local stack's
// nodes, and replication 3 with min.insync.replicas=2 and no unclean election, both as the brokers'
// defaults and on the topics it creates (the settings of shared/local-stack.ts's topicReplication).
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { TOPICS, localStack, topicReplication } from "../../shared/local-stack.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const compose = Bun.YAML.parse(readFileSync(`${ROOT}/compose.yaml`, "utf8")) as {
  services: Record<
    string,
    { environment?: Record<string, string>; ports?: string[]; command?: string[]; depends_on?: Record<string, unknown> }
  >;
};
const services = compose.services;
const kafkaNodes = Object.keys(services)
  .filter((name) => /^kafka-\d+$/.test(name))
  .sort();
const env = (name: string) => services[name]?.environment ?? {};
const replication = topicReplication(3);
// The local stack's three nodes on the default ports (no STACK_* variables).
const local = localStack({ KAFKA_NODES: "3" });

describe("compose.yaml: a three-node KRaft cluster", () => {
  test("three nodes kafka-1..3, and no single-node kafka service besides them", () => {
    expect(kafkaNodes).toEqual(["kafka-1", "kafka-2", "kafka-3"]);
    expect(services.kafka).toBeUndefined();
  });

  test("each is broker + controller with its own node id, and all three are the one controller quorum", () => {
    const ids = kafkaNodes.map((n) => env(n).KAFKA_NODE_ID);
    expect(ids).toEqual(["1", "2", "3"]);
    for (const n of kafkaNodes) {
      expect(env(n).KAFKA_PROCESS_ROLES).toBe("broker,controller");
      const voters = (env(n).KAFKA_CONTROLLER_QUORUM_VOTERS ?? "").split(",");
      expect(voters).toEqual(kafkaNodes.map((name, i) => `${i + 1}@${name}:9093`));
      expect(env(n).KAFKA_LISTENERS).toContain("CONTROLLER://0.0.0.0:9093");
      expect(env(n).KAFKA_ADVERTISED_LISTENERS).toContain(`INTERNAL://${n}:9092`);
    }
    // One cluster id for the three (their storage is formatted with it).
    expect(new Set(kafkaNodes.map((n) => env(n).CLUSTER_ID)).size).toBe(1);
    expect(env("kafka-1").CLUSTER_ID).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  test("each node's host listener and JMX exporter are the local stack's ports for that node, on loopback", () => {
    kafkaNodes.forEach((n, i) => {
      const node = local.kafkaNodes[i];
      if (!node) throw new Error(`the local stack has no node ${i + 1}`);
      expect(env(n).KAFKA_ADVERTISED_LISTENERS).toContain(`PLAINTEXT://127.0.0.1:${node.port}`);
      expect(services[n]?.ports).toEqual([
        `127.0.0.1:${node.port}:${node.port}`,
        `127.0.0.1:${node.jmxExporterPort}:${node.jmxExporterPort}`,
      ]);
      expect(env(n).KAFKA_OPTS).toContain(`=${node.jmxExporterPort}:`);
    });
    expect(local.brokers).toBe("127.0.0.1:19092,127.0.0.1:19102,127.0.0.1:19112");
  });

  test("broker defaults: rf=3, min.insync.replicas=2, no unclean election, internal topics replicated", () => {
    for (const n of kafkaNodes) {
      expect(env(n).KAFKA_DEFAULT_REPLICATION_FACTOR).toBe(String(replication.replicationFactor));
      expect(env(n).KAFKA_MIN_INSYNC_REPLICAS).toBe(replication.config["min.insync.replicas"]);
      expect(env(n).KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE).toBe("false");
      expect(env(n).KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR).toBe("3");
      expect(env(n).KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR).toBe("3");
      expect(env(n).KAFKA_TRANSACTION_STATE_LOG_MIN_ISR).toBe("2");
      expect(env(n).KAFKA_AUTO_CREATE_TOPICS_ENABLE).toBe("false");
    }
  });

  test("the product topics are created with rf=3, min.insync.replicas=2 and no unclean election, once all nodes are healthy", () => {
    const topics = services["kafka-topics"];
    expect(Object.keys(topics?.depends_on ?? {}).sort()).toEqual(kafkaNodes);
    const script = (topics?.command ?? []).join(" ");
    const creates = script.split("&&").map((c) => c.trim());
    for (const t of [TOPICS.scans, TOPICS.deadLetters]) {
      const create = creates.find((c) => c.includes(`--topic ${t.name} `));
      if (!create) throw new Error(`kafka-topics does not create ${t.name}: ${script}`);
      expect(create).toContain(`--partitions ${t.partitions} `);
      expect(create).toContain(`--replication-factor ${replication.replicationFactor}`);
      expect(create).toContain(`--config min.insync.replicas=${replication.config["min.insync.replicas"]}`);
      expect(create).toContain("--config unclean.leader.election.enable=false");
    }
  });
});
