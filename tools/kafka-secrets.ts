// compose.yaml's Kafka secrets, made once (existing files are kept):
//   bun tools/kafka-secrets.ts [dir]      (default .secrets/kafka)
// A CA (ca.crt, ca.key), the brokers' certificate and key (broker.pem: valid for kafka-1..3,
// localhost and 127.0.0.1, and their client certificate on the controller and inter-broker
// listeners), and a random SCRAM password per principal (edge, worker, ops). compose's kafka-topics
// service creates the SCRAM users with these passwords and grants the ACLs. The directories are
// 0700 and the files 0644: compose bind-mounts them as they are, into containers running as other
// users. No default password exists anywhere: compose refuses to start without these files.
import { join } from "node:path";
import { type CliSpec, MAIN, parseProcessArgs } from "../shared/cli.ts";
import { ensureKafkaSecurityFiles, kafkaSecurityFiles } from "./stack/kafka-security.ts";

/** The principals compose creates: its brokers authenticate each other with their certificate, not as admin. */
export const COMPOSE_KAFKA_PRINCIPALS = ["edge", "worker", "ops"] as const;
export const COMPOSE_KAFKA_HOSTS = ["kafka-1", "kafka-2", "kafka-3", "localhost", "127.0.0.1"];

export const KAFKA_SECRETS_CLI: CliSpec = {
  program: "bun tools/kafka-secrets.ts",
  description: "compose.yaml's Kafka secrets, made once (existing files are kept).",
  commands: { [MAIN]: { args: "[dir]", description: "default .secrets/kafka", options: {} } },
};

if (import.meta.main) {
  const dir =
    parseProcessArgs(KAFKA_SECRETS_CLI).positionals[0] ??
    join(new URL("..", import.meta.url).pathname, ".secrets", "kafka");
  const f = kafkaSecurityFiles(dir);
  ensureKafkaSecurityFiles(f, {
    hosts: COMPOSE_KAFKA_HOSTS,
    principals: COMPOSE_KAFKA_PRINCIPALS,
    forContainers: true,
  });
  console.log(`kafka secrets in ${dir}: tls/ca.crt, tls/broker.pem, secrets/{edge,worker,ops}.password`);
}
