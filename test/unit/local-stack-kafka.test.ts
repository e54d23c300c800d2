// KAFKA_NODES in shared/local-stack.ts: the node list, its ports and the one bootstrap list every
// client gets, the validation of the variable, and the replication each mode gives the topics.
import { describe, expect, test } from "bun:test";
import { localStack, topicReplication } from "../../shared/local-stack.ts";

describe("localStack: Kafka nodes", () => {
  test("default: one node on STACK_KAFKA_PORT, the bootstrap list is that node", () => {
    const s = localStack({ STACK_KAFKA_PORT: "23092" });
    expect(s.kafkaNodes).toEqual([{ id: 1, port: 23092, controllerPort: 23093, jmxExporterPort: 19404 }]);
    expect(s.brokers).toBe("127.0.0.1:23092");
  });

  test("KAFKA_NODES=3: node n on the node-1 ports + 10 * (n - 1), all three in the bootstrap list", () => {
    const s = localStack({ KAFKA_NODES: "3", STACK_KAFKA_PORT: "23092", STACK_KAFKA_JMX_EXPORTER_PORT: "23404" });
    expect(s.kafkaNodes).toEqual([
      { id: 1, port: 23092, controllerPort: 23093, jmxExporterPort: 23404 },
      { id: 2, port: 23102, controllerPort: 23103, jmxExporterPort: 23414 },
      { id: 3, port: 23112, controllerPort: 23113, jmxExporterPort: 23424 },
    ]);
    expect(s.brokers).toBe("127.0.0.1:23092,127.0.0.1:23102,127.0.0.1:23112");
  });

  test("KAFKA_NODES other than 1 or 3, or a node port past 65535, is refused with the variable's name", () => {
    for (const bad of ["2", "0", "three", "1.5"]) {
      expect(() => localStack({ KAFKA_NODES: bad })).toThrow(`KAFKA_NODES must be 1 or 3, got "${bad}"`);
    }
    expect(() => localStack({ KAFKA_NODES: "3", STACK_KAFKA_PORT: "65530" })).toThrow("lower STACK_KAFKA_* ports");
  });

  test("replication: 3 copies and 2 in sync with three nodes, 1 and 1 with one; never an unclean election", () => {
    expect(topicReplication(3)).toEqual({
      replicationFactor: 3,
      config: { "min.insync.replicas": "2", "unclean.leader.election.enable": "false" },
    });
    expect(topicReplication(1)).toEqual({
      replicationFactor: 1,
      config: { "min.insync.replicas": "1", "unclean.leader.election.enable": "false" },
    });
  });
});
