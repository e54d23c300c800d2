// compose.yaml's Kafka is the replicated cluster of `KAFKA_NODES=3 bun run stack up`: three KRaft
// nodes, each broker + controller, one quorum of the three, the same host ports as the local stack's
// nodes, and replication 3 with min.insync.replicas=2 and no unclean election, both as the brokers'
// defaults and on the topics it creates (the settings of shared/local-stack.ts's topicReplication).
// And it is secure like `KAFKA_SECURITY=sasl_ssl bun run stack up`: SASL_SSL for every client,
// TLS with client certificates between the nodes, the same ACLs (KAFKA_ACLS), a principal per
// product container, every certificate and password a secret file made by tools/kafka-secrets.ts.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadOpsConfig } from "../../jobs/config.ts";
import { loadServerConfig } from "../../server/config.ts";
import { TOPICS, localStack, topicReplication } from "../../shared/local-stack.ts";
import { COMPOSE_KAFKA_PRINCIPALS } from "../../tools/kafka-secrets.ts";
import {
  BROKER_CERT_SUBJECT,
  KAFKA_ACLS,
  aclCommandArgs,
  kafkaSecurityFiles,
} from "../../tools/stack/kafka-security.ts";
import { loadWorkerConfig } from "../../worker/config.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const compose = Bun.YAML.parse(readFileSync(`${ROOT}/compose.yaml`, "utf8")) as {
  services: Record<
    string,
    {
      environment?: Record<string, string>;
      ports?: string[];
      command?: string[];
      depends_on?: Record<string, unknown>;
      secrets?: string[];
      volumes?: string[];
      healthcheck?: { test: string[] };
    }
  >;
  secrets: Record<string, { file?: string }>;
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
      expect(env(n).KAFKA_ADVERTISED_LISTENERS).toContain(`CLIENT://127.0.0.1:${node.port}`);
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
      const create = creates.find((c) => c.includes("--create") && c.includes(`--topic ${t.name} `));
      if (!create) throw new Error(`kafka-topics does not create ${t.name}: ${script}`);
      expect(create).toContain(`--partitions ${t.partitions} `);
      expect(create).toContain(`--replication-factor ${replication.replicationFactor}`);
      expect(create).toContain(`--config min.insync.replicas=${replication.config["min.insync.replicas"]}`);
      expect(create).toContain("--config unclean.leader.election.enable=false");
    }
  });
});

/** The compose secret `name`'s file, as kafka-secrets.ts lays the directory out. */
const secretFile = (name: string) => compose.secrets[name]?.file;
const SECRETS = kafkaSecurityFiles(".secrets/kafka");
const fromRoot = (path: string) => `./${path}`;

describe("compose.yaml: Kafka over SASL_SSL with ACLs", () => {
  test("every listener is TLS: SASL_SSL for clients (host and containers), client certificates between nodes", () => {
    for (const n of kafkaNodes) {
      const map = Object.fromEntries(
        (env(n).KAFKA_LISTENER_SECURITY_PROTOCOL_MAP ?? "").split(",").map((e) => e.split(":")),
      );
      expect(map).toEqual({ CLIENT: "SASL_SSL", SERVICES: "SASL_SSL", INTERNAL: "SSL", CONTROLLER: "SSL" });
      const listeners = (env(n).KAFKA_LISTENERS ?? "").split(",").map((l) => l.split(":")[0]);
      expect(listeners.sort()).toEqual(["CLIENT", "CONTROLLER", "INTERNAL", "SERVICES"]);
      expect(env(n).KAFKA_INTER_BROKER_LISTENER_NAME).toBe("INTERNAL");
      expect(env(n).KAFKA_LISTENER_NAME_INTERNAL_SSL_CLIENT_AUTH).toBe("required");
      expect(env(n).KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH).toBe("required");
      expect(env(n).KAFKA_SASL_ENABLED_MECHANISMS).toBe("SCRAM-SHA-512");
      expect(env(n).KAFKA_SSL_KEYSTORE_LOCATION).toBe("/run/secrets/kafka_broker_keystore");
      expect(env(n).KAFKA_SSL_TRUSTSTORE_LOCATION).toBe("/run/secrets/kafka_ca");
      expect(services[n]?.secrets?.sort()).toEqual(["kafka_broker_keystore", "kafka_ca"]);
      // No listener name with an SSL/SASL_ prefix: the image's entrypoint would demand its own files.
      expect(env(n).KAFKA_ADVERTISED_LISTENERS).not.toMatch(/SSL:\/\/|SASL_/);
      // Every SASL listener has its JAAS entry: without one the broker exits at start (found when
      // compose first ran on a real engine).
      for (const [listener, protocol] of Object.entries(map))
        if (protocol === "SASL_SSL")
          expect({
            listener,
            jaas: env(n)[`KAFKA_LISTENER_NAME_${listener}_SCRAM___SHA___512_SASL_JAAS_CONFIG`],
          }).toEqual({
            listener,
            jaas: "org.apache.kafka.common.security.scram.ScramLoginModule required;",
          });
      // Healthy: the node's own broker state (3, running), read from its JMX exporter's port.
      const exporterPort = /jmx_prometheus_javaagent\.jar=(\d+):/.exec(env(n).KAFKA_OPTS ?? "")?.[1];
      expect(services[n]?.healthcheck?.test.join(" ")).toContain(`/dev/tcp/127.0.0.1/${exporterPort}`);
      expect(services[n]?.healthcheck?.test.join(" ")).toContain('grep -q "^kafka_server_kafkaserver_brokerstate 3"');
    }
  });

  test("ACLs: the StandardAuthorizer, nothing allowed without an ACL, only the brokers' certificate is a super user", () => {
    for (const n of kafkaNodes) {
      expect(env(n).KAFKA_AUTHORIZER_CLASS_NAME).toBe("org.apache.kafka.metadata.authorizer.StandardAuthorizer");
      expect(env(n).KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND).toBe("false");
      expect(env(n).KAFKA_SUPER_USERS).toBe(`User:${BROKER_CERT_SUBJECT}`);
    }
  });

  test("kafka-topics creates the SCRAM users from the secret files and grants exactly KAFKA_ACLS", () => {
    const script = (services["kafka-topics"]?.command ?? []).join(" ");
    const steps = script.split("&&").map((c) => c.trim());
    for (const p of COMPOSE_KAFKA_PRINCIPALS) {
      expect(steps).toContainEqual(
        expect.stringContaining(
          `--entity-name ${p} --add-config "SCRAM-SHA-512=[password=$$(cat /run/secrets/kafka_${p}_password)]"`,
        ),
      );
    }
    const grants = steps.filter((c) => c.includes("kafka-acls.sh")).map((c) => c.slice(c.indexOf("--add")));
    expect(grants).toEqual(KAFKA_ACLS.map((a) => aclCommandArgs(a).join(" ")));
    for (const step of steps.filter((c) => c.includes("/opt/kafka/bin/")))
      expect(step).toContain("--command-config $$C");
  });

  test("the server, the workers and the ops service connect to SERVICES as their own principal, password and CA from secret files", () => {
    const dir = mkdtempSync(join(tmpdir(), "compose-kafka-"));
    const files: Record<string, string> = {};
    for (const [name, content] of [
      ["kafka_ca", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"],
      ["kafka_edge_password", "edge-password\n"],
      ["kafka_worker_password", "worker-password\n"],
      ["kafka_ops_password", "ops-password\n"],
    ] as const) {
      files[`/run/secrets/${name}`] = join(dir, name);
      writeFileSync(join(dir, name), content);
    }
    // compose's Kafka variables, the secrets' container paths mapped to files of this test.
    const containerEnv = (name: string) =>
      Object.fromEntries(
        Object.entries(env(name))
          .filter(([k]) => k.startsWith("KAFKA_"))
          .map(([k, v]) => [k, files[String(v)] ?? String(v)]),
      );
    for (const [name, principal] of [
      ["server", "edge"],
      ["worker", "worker"],
      // The operator's jobs (dlq replays to scans), never as the worker.
      ["ops", "ops"],
    ] as const) {
      expect(env(name).KAFKA_BROKERS).toBe("kafka-1:9094,kafka-2:9094,kafka-3:9094");
      expect(services[name]?.secrets?.sort()).toEqual(["kafka_ca", `kafka_${principal}_password`]);
      const settings =
        name === "server"
          ? loadServerConfig({ ...containerEnv(name), API_KEY_SHA256: "ab".repeat(32) }).kafka
          : name === "ops"
            ? loadOpsConfig(containerEnv(name)).kafka
            : loadWorkerConfig(containerEnv(name)).kafka;
      expect(settings).toMatchObject({
        "security.protocol": "sasl_ssl",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": principal,
        "sasl.password": `${principal}-password`,
        "ssl.ca.location": files["/run/secrets/kafka_ca"],
      });
    }
  });

  test("every Kafka secret is a file made by tools/kafka-secrets.ts under the git-ignored .secrets/", () => {
    expect(secretFile("kafka_ca")).toBe(fromRoot(SECRETS.caCert));
    expect(secretFile("kafka_broker_keystore")).toBe(fromRoot(SECRETS.brokerKeystore));
    for (const p of COMPOSE_KAFKA_PRINCIPALS)
      expect(secretFile(`kafka_${p}_password`)).toBe(fromRoot(SECRETS.passwordFile(p)));
    expect(readFileSync(`${ROOT}/.gitignore`, "utf8")).toMatch(/^\.secrets\/$/m);
    // No password or key in compose.yaml itself.
    expect(readFileSync(`${ROOT}/compose.yaml`, "utf8")).not.toMatch(/password=[0-9a-f]{8}|PRIVATE KEY/);
  });
});
