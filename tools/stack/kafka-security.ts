// The local stack's secure Kafka (KAFKA_SECURITY=sasl_ssl): clients authenticate with SCRAM-SHA-512
// over TLS, and the StandardAuthorizer allows each principal only what its process needs (KAFKA_ACLS).
// The brokers talk to the controllers over mutual TLS (their certificate is the principal) and to
// each other over the client listener as `admin`. A CA, the broker's certificate and one random
// password per principal are made once under <kafka root>/tls and <kafka root>/secrets (mode 0600).
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TOPICS } from "../../shared/local-stack.ts";
import { run } from "./processes.ts";

/** The principals: the super user the stack itself acts as, and one per kind of process. */
export const KAFKA_PRINCIPALS = ["admin", "edge", "worker", "ops"] as const;
export type KafkaPrincipal = (typeof KAFKA_PRINCIPALS)[number];

/** The DN of the brokers' certificate: their principal on the controller listener (a super user). */
export const BROKER_CERT_SUBJECT = "CN=kafka-broker";

/** The consumer groups of the workers (WorkerConfigSchema's CONSUMER_GROUP and DEAD_LETTER_GROUP defaults). */
export const KAFKA_GROUPS = { sink: "qrscan-sink", deadLetters: "qrscan-dead-letters" } as const;

export interface KafkaAcl {
  principal: Exclude<KafkaPrincipal, "admin">;
  operation: "Read" | "Write";
  topics: string[];
  groups: string[];
}

/**
 * Every grant (literal resource names; nothing else is allowed: allow.everyone.if.no.acl.found=false).
 * Read and Write imply Describe; Write on a topic also lets a principal open an idempotent producer
 * (InitProducerId, Kafka >= 3.0), so nobody needs IdempotentWrite on the cluster.
 * - edge (server/): produce to scans. It cannot read them back.
 * - worker (worker/ and its supervisor's lag exporter): consume scans and the dead letters in their
 *   groups (OffsetFetch for the lag needs Describe, implied by Read), produce dead letters.
 * - ops (`bun run dlq` replays to scans, `bun run restore-offsets` commits both groups' offsets,
 *   which Kafka authorizes as Read on the group and on the topic).
 */
export const KAFKA_ACLS: readonly KafkaAcl[] = [
  { principal: "edge", operation: "Write", topics: [TOPICS.scans.name], groups: [] },
  {
    principal: "worker",
    operation: "Read",
    topics: [TOPICS.scans.name, TOPICS.deadLetters.name],
    groups: [KAFKA_GROUPS.sink, KAFKA_GROUPS.deadLetters],
  },
  { principal: "worker", operation: "Write", topics: [TOPICS.deadLetters.name], groups: [] },
  {
    principal: "ops",
    operation: "Read",
    topics: [TOPICS.scans.name, TOPICS.deadLetters.name],
    groups: [KAFKA_GROUPS.sink, KAFKA_GROUPS.deadLetters],
  },
  { principal: "ops", operation: "Write", topics: [TOPICS.scans.name], groups: [] },
];

/** kafka.admin.AclCommand's (kafka-acls.sh's) arguments that add `acl`, after the connection's. */
export function aclCommandArgs(acl: KafkaAcl): string[] {
  return [
    "--add",
    "--allow-principal",
    `User:${acl.principal}`,
    "--operation",
    acl.operation,
    ...acl.topics.flatMap((t) => ["--topic", t]),
    ...acl.groups.flatMap((g) => ["--group", g]),
  ];
}

export interface KafkaSecurityFiles {
  dir: string;
  caKey: string;
  /** The CA's certificate: what clients trust (KAFKA_SSL_CA_FILE). */
  caCert: string;
  /** The broker's key and certificate chain in one PEM file (ssl.keystore.type=PEM). */
  brokerKeystore: string;
  /** `<principal>.password`: its SCRAM password (KAFKA_SASL_PASSWORD_FILE). */
  passwordFile: (principal: KafkaPrincipal) => string;
  /** admin's client properties for the Java tools (AclCommand). */
  adminProperties: string;
}

export function kafkaSecurityFiles(root: string): KafkaSecurityFiles {
  const tls = join(root, "tls");
  const secrets = join(root, "secrets");
  return {
    dir: root,
    caKey: join(tls, "ca.key"),
    caCert: join(tls, "ca.crt"),
    brokerKeystore: join(tls, "broker.pem"),
    passwordFile: (p) => join(secrets, `${p}.password`),
    adminProperties: join(secrets, "admin.properties"),
  };
}

/** A private file (0600): keys and passwords. */
function writePrivate(path: string, text: string, mode = 0o600): void {
  writeFileSync(path, text, { mode });
  chmodSync(path, mode);
}

export interface SecurityFileOptions {
  /** The names the broker's certificate is valid for (IP addresses or DNS names). */
  hosts?: string[];
  principals?: readonly KafkaPrincipal[];
  /**
   * Keys and passwords readable by any user (0644) inside directories only their owner may enter
   * (0700): for containers running as other users (compose bind-mounts the files as they are).
   */
  forContainers?: boolean;
}

/**
 * Makes what is missing: the CA, the broker's certificate (also a TLS client certificate, for the
 * controller listener), and a password per principal. Returns true when a password was made (so
 * nodes formatted before have other ones).
 */
export function ensureKafkaSecurityFiles(
  f: KafkaSecurityFiles,
  {
    hosts = ["127.0.0.1", "localhost"],
    principals = KAFKA_PRINCIPALS,
    forContainers = false,
  }: SecurityFileOptions = {},
): boolean {
  const tls = join(f.caCert, "..");
  const secretMode = forContainers ? 0o644 : 0o600;
  mkdirSync(f.dir, { recursive: true, mode: 0o700 });
  mkdirSync(tls, { recursive: true, mode: 0o700 });
  mkdirSync(join(f.passwordFile("admin"), ".."), { recursive: true, mode: 0o700 });
  if (!existsSync(f.brokerKeystore)) {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(
      "openssl",
      ["req", "-x509", ...ec, "-keyout", f.caKey, "-out", f.caCert, "-days", "3650"].concat([
        "-subj",
        "/CN=qrscan local Kafka CA",
      ]),
    );
    const key = join(tls, "broker.key");
    const csr = join(tls, "broker.csr");
    const cert = join(tls, "broker.crt");
    const ext = join(tls, "broker.ext");
    run("openssl", ["req", ...ec, "-keyout", key, "-out", csr, "-subj", `/${BROKER_CERT_SUBJECT}`]);
    const names = hosts.map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(",");
    writeFileSync(ext, `subjectAltName=${names}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n`);
    run(
      "openssl",
      ["x509", "-req", "-in", csr, "-CA", f.caCert, "-CAkey", f.caKey, "-CAcreateserial"].concat([
        "-out",
        cert,
        "-days",
        "3650",
        "-extfile",
        ext,
      ]),
    );
    // openssl 3 writes unencrypted PKCS#8 ("BEGIN PRIVATE KEY"), which Kafka's PEM keystore reads.
    writePrivate(f.brokerKeystore, `${readFileSync(key, "utf8")}${readFileSync(cert, "utf8")}`, secretMode);
    chmodSync(key, 0o600);
    chmodSync(f.caKey, 0o600);
  }
  let created = false;
  for (const p of principals) {
    if (existsSync(f.passwordFile(p))) continue;
    const password = Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("hex");
    writePrivate(f.passwordFile(p), `${password}\n`, secretMode);
    created = true;
  }
  return created;
}

export const readPassword = (f: KafkaSecurityFiles, p: KafkaPrincipal) =>
  readFileSync(f.passwordFile(p), "utf8").trim();

/** The SCRAM credentials `kafka-storage format` writes into the first metadata (--add-scram, KIP-900). */
export function scramFormatArgs(f: KafkaSecurityFiles): string[] {
  return KAFKA_PRINCIPALS.flatMap((p) => ["--add-scram", `SCRAM-SHA-512=[name=${p},password=${readPassword(f, p)}]`]);
}

/** The JAAS line of a SCRAM login (the broker's inter-broker login, the Java tools' client login). */
const jaas = (user: string, password: string) =>
  `org.apache.kafka.common.security.scram.ScramLoginModule required username="${user}" password="${password}";`;

/**
 * The listener settings of a secure node: CLIENT (SASL_SSL, SCRAM-SHA-512) for clients and
 * replication, CONTROLLER (TLS with client certificates) for the quorum, the StandardAuthorizer.
 */
export function secureListenerProperties(
  f: KafkaSecurityFiles,
  node: { port: number; controllerPort: number },
): string[] {
  return [
    `listeners=CLIENT://127.0.0.1:${node.port},CONTROLLER://127.0.0.1:${node.controllerPort}`,
    `advertised.listeners=CLIENT://127.0.0.1:${node.port}`,
    "controller.listener.names=CONTROLLER",
    "inter.broker.listener.name=CLIENT",
    "listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SSL",
    "sasl.enabled.mechanisms=SCRAM-SHA-512",
    "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
    `listener.name.client.scram-sha-512.sasl.jaas.config=${jaas("admin", readPassword(f, "admin"))}`,
    "ssl.keystore.type=PEM",
    `ssl.keystore.location=${f.brokerKeystore}`,
    "ssl.truststore.type=PEM",
    `ssl.truststore.location=${f.caCert}`,
    // Only a holder of the broker's key joins the quorum.
    "listener.name.controller.ssl.client.auth=required",
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found=false",
    `super.users=User:admin;User:${BROKER_CERT_SUBJECT}`,
  ];
}

/** admin's settings for librdkafka (the stack's own admin client: readiness, topics). */
export function adminClientSecurity(f: KafkaSecurityFiles): Record<string, string> {
  return {
    "security.protocol": "sasl_ssl",
    "sasl.mechanisms": "SCRAM-SHA-512",
    "sasl.username": "admin",
    "sasl.password": readPassword(f, "admin"),
    "ssl.ca.location": f.caCert,
  };
}

/** Writes admin's client properties for the Java tools (kafka-acls, kafka-configs --command-config). */
export function writeAdminProperties(f: KafkaSecurityFiles): void {
  writePrivate(
    f.adminProperties,
    [
      "security.protocol=SASL_SSL",
      "sasl.mechanism=SCRAM-SHA-512",
      `sasl.jaas.config=${jaas("admin", readPassword(f, "admin"))}`,
      "ssl.truststore.type=PEM",
      `ssl.truststore.location=${f.caCert}`,
      "",
    ].join("\n"),
  );
}

/** The variables a product process sets to connect as `principal` (printed by `stack status`). */
export function clientEnv(f: KafkaSecurityFiles, principal: KafkaPrincipal): Record<string, string> {
  return {
    KAFKA_SECURITY_PROTOCOL: "sasl_ssl",
    KAFKA_SASL_MECHANISM: "SCRAM-SHA-512",
    KAFKA_SASL_USERNAME: principal,
    KAFKA_SASL_PASSWORD_FILE: f.passwordFile(principal),
    KAFKA_SSL_CA_FILE: f.caCert,
  };
}
