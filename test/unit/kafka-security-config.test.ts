// The Kafka security settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_CA_FILE): one
// definition in shared/config.ts, the same librdkafka settings in the server's and the workers'
// configuration, and start-up errors that name the variable. The broker side: test/integration/kafka-sasl.test.ts.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KafkaProducer } from "bun-rdkafka";
import { loadServerConfig } from "../../server/config.ts";
import { ConfigError } from "../../shared/config.ts";
import { TOPICS, localStack } from "../../shared/local-stack.ts";
import { KAFKA_ACLS, aclCommandArgs } from "../../tools/stack/kafka-security.ts";
import { loadWorkerConfig } from "../../worker/config.ts";

const dir = mkdtempSync(join(tmpdir(), "kafka-security-"));
const passwordFile = join(dir, "edge.password");
writeFileSync(passwordFile, "s3cret-password\n");
const caFile = join(dir, "ca.crt");
writeFileSync(caFile, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");

const SASL = {
  KAFKA_SECURITY_PROTOCOL: "sasl_ssl",
  KAFKA_SASL_USERNAME: "edge",
  KAFKA_SASL_PASSWORD_FILE: passwordFile,
  KAFKA_SSL_CA_FILE: caFile,
};
const server = (env: Record<string, string>) => loadServerConfig({ API_KEY_SHA256: "ab".repeat(32), ...env });

function problems(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("Kafka security configuration", () => {
  test("default: plaintext, no credentials", () => {
    expect(server({}).kafka["security.protocol"]).toBe("plaintext");
    expect(server({}).kafka["sasl.password"]).toBeUndefined();
  });

  test("sasl_ssl: SCRAM-SHA-512 with the file's password and the CA, in the producer, the consumers and the admin clients", () => {
    const expected = {
      "security.protocol": "sasl_ssl",
      "sasl.mechanisms": "SCRAM-SHA-512",
      "sasl.username": "edge",
      "sasl.password": "s3cret-password",
      "ssl.ca.location": caFile,
      "enable.ssl.certificate.verification": "true",
      "ssl.endpoint.identification.algorithm": "https",
    };
    expect(server(SASL).kafka).toMatchObject(expected);
    // The durability settings still come last.
    expect(server(SASL).kafka.acks).toBe("all");
    const worker = loadWorkerConfig(SASL);
    expect(worker.kafka).toMatchObject(expected);
    expect(worker.kafkaClient).toEqual({ "bootstrap.servers": worker.KAFKA_BROKERS, ...expected });
    // The password is read from the file, never taken from the environment.
    expect(JSON.stringify(loadWorkerConfig({ ...SASL, KAFKA_SASL_PASSWORD: "from-env" }).kafka)).not.toContain(
      "from-env",
    );
  });

  test("sasl_ssl without a username or a password file, or with an unreadable or empty one, stops start-up", () => {
    const text = problems(() => server({ KAFKA_SECURITY_PROTOCOL: "sasl_ssl" }));
    expect(text).toContain("KAFKA_SASL_USERNAME: required with KAFKA_SECURITY_PROTOCOL=sasl_ssl");
    expect(text).toContain("KAFKA_SASL_PASSWORD_FILE: required with KAFKA_SECURITY_PROTOCOL=sasl_ssl");
    expect(problems(() => server({ ...SASL, KAFKA_SASL_PASSWORD_FILE: join(dir, "missing") }))).toContain(
      "KAFKA_SASL_PASSWORD_FILE=",
    );
    const empty = join(dir, "empty");
    writeFileSync(empty, "\n");
    expect(problems(() => loadWorkerConfig({ ...SASL, KAFKA_SASL_PASSWORD_FILE: empty }))).toContain(
      "the file is empty",
    );
    const notPem = join(dir, "not-pem");
    writeFileSync(notPem, "hello\n");
    expect(problems(() => server({ ...SASL, KAFKA_SSL_CA_FILE: notPem }))).toContain("holds no PEM certificate");
  });

  test("unknown protocols and mechanisms, and credentials that would not be sent, are refused", () => {
    expect(problems(() => server({ KAFKA_SECURITY_PROTOCOL: "sasl_plaintext" }))).toContain(
      'KAFKA_SECURITY_PROTOCOL="sasl_plaintext": must be one of plaintext, ssl, sasl_ssl',
    );
    expect(problems(() => server({ ...SASL, KAFKA_SASL_MECHANISM: "PLAIN" }))).toContain("KAFKA_SASL_MECHANISM");
    expect(problems(() => server({ KAFKA_SASL_USERNAME: "edge", KAFKA_SASL_PASSWORD_FILE: passwordFile }))).toContain(
      "KAFKA_SECURITY_PROTOCOL=plaintext would not send them",
    );
  });

  test("KAFKA_OPT_* may not set what the security variables own (no password in the environment, no verification off)", () => {
    for (const name of [
      "KAFKA_OPT_SASL_PASSWORD",
      "KAFKA_OPT_SECURITY_PROTOCOL",
      "KAFKA_OPT_ENABLE_SSL_CERTIFICATE_VERIFICATION",
    ]) {
      expect(problems(() => server({ ...SASL, [name]: "x" }))).toContain(`${name}: not allowed`);
      expect(problems(() => loadWorkerConfig({ ...SASL, [name]: "x" }))).toContain(`${name}: not allowed`);
    }
  });

  test("the local stack's ACLs: the edge only writes scans; the workers never write scans", () => {
    expect(localStack({ KAFKA_SECURITY: "sasl_ssl" }).kafkaSecurity).toBe("sasl_ssl");
    expect(() => localStack({ KAFKA_SECURITY: "tls" })).toThrow("KAFKA_SECURITY must be plaintext or sasl_ssl");
    expect(KAFKA_ACLS.filter((a) => a.principal === "edge")).toEqual([
      { principal: "edge", operation: "Write", topics: [TOPICS.scans.name], groups: [] },
    ]);
    const workerWrites = KAFKA_ACLS.filter((a) => a.principal === "worker" && a.operation === "Write");
    expect(workerWrites.flatMap((a) => a.topics)).toEqual([TOPICS.deadLetters.name]);
    expect(aclCommandArgs(KAFKA_ACLS[0] as (typeof KAFKA_ACLS)[number])).toEqual([
      "--add",
      "--allow-principal",
      "User:edge",
      "--operation",
      "Write",
      "--topic",
      "scans",
    ]);
  });

  test("a setting librdkafka refuses is reported without its value when it holds a secret", () => {
    const attempt = (config: Record<string, string>) => {
      try {
        new KafkaProducer({ config: { "bootstrap.servers": "127.0.0.1:1", ...config } }).close();
        return "accepted";
      } catch (error) {
        return (error as Error).message;
      }
    };
    const secret = attempt({ "qrscan.sasl.password": "hunter2-secret" });
    expect(secret).toContain("invalid Kafka setting qrscan.sasl.password=<redacted>");
    expect(secret).not.toContain("hunter2-secret");
    // Other values are shown, so a typo stays easy to find.
    expect(attempt({ "linger.ms": "soon" })).toContain("linger.ms=soon");
  });
});
