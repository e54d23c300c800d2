// Kafka with SCRAM over TLS and ACLs (KAFKA_SECURITY=sasl_ssl, tools/stack/kafka-security.ts) on
// a private broker of this test, the stack's Postgres and pgbouncer as the database:
// - the product works end to end: the real edge server (principal edge) answers 202 and a real
//   worker pool (principal worker, its supervisor reading the group's lag) stores the row; and
//   restore-offsets as ops moves both groups;
// - nobody else gets in: no client without SASL (plaintext, TLS alone), no wrong password; the
//   edge cannot read scans nor write dead letters; the worker cannot write scans; no principal
//   can touch a topic nobody was granted (allow.everyone.if.no.acl.found=false);
// - no Kafka password in any line the server and the pool wrote at LOG_LEVEL=trace.
// Each refusal is matched by its own error (the broker's or librdkafka's), and the same kcat call
// with the right principal succeeds, so a refusal is never a broken client.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KafkaAdmin } from "bun-rdkafka";
import { TOPICS } from "../../shared/local-stack.ts";
import { stopProcess } from "../../tools/harness.ts";
import { type KafkaPrincipal, clientEnv, readPassword } from "../../tools/stack/kafka-security.ts";
import { createDatabase, onCleanup, spawnServer, spawnSupervisor } from "../helpers/fixtures.ts";
import { type PrivateCluster, startPrivateCluster } from "../helpers/kafka-cluster.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { metric } from "../helpers/worker.ts";

await ensureStack();

const SCANS = TOPICS.scans.name;
const DEAD_LETTERS = TOPICS.deadLetters.name;
/** A topic the super user creates and nobody is granted. */
const UNLISTED = "unlisted";

/** The secure broker of the running test (each test starts its own: cleanups run after each test). */
let kafka: PrivateCluster;

interface Kcat {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The librdkafka settings of a client: none (plaintext), TLS alone, or SCRAM over TLS as `as`. */
function clientSettings(as: KafkaPrincipal | "plaintext" | "tls", password?: string): Record<string, string> {
  if (as === "plaintext") return {};
  const tls = { "security.protocol": "ssl", "ssl.ca.location": kafka.security.caCert };
  if (as === "tls") return tls;
  return {
    ...tls,
    "security.protocol": "sasl_ssl",
    "sasl.mechanisms": "SCRAM-SHA-512",
    "sasl.username": as,
    "sasl.password": password ?? readPassword(kafka.security, as),
  };
}

/** kcat as `as` (its own process, killed after 20 s): exit code and output, never throws. */
async function kcat(as: Parameters<typeof clientSettings>[0], args: string[], input?: string, password?: string) {
  const settings = Object.entries(clientSettings(as, password)).flatMap(([k, v]) => ["-X", `${k}=${v}`]);
  const proc = Bun.spawn(["kcat", "-b", kafka.brokers, ...settings, ...args], {
    stdin: input === undefined ? "ignore" : new Blob([input]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr } satisfies Kcat;
  } finally {
    clearTimeout(timer);
  }
}

/** Reads every message of `topic` from the start (no group), up to 10 s of metadata wait. */
const read = (as: Parameters<typeof clientSettings>[0], topic: string) =>
  kcat(as, ["-C", "-t", topic, "-o", "beginning", "-e", "-m", "5"]);
/** Produces one message to `topic` (acks=all, idempotent, like the product's producers). */
const write = (as: Parameters<typeof clientSettings>[0], topic: string, value: string) =>
  kcat(as, ["-P", "-t", topic, "-X", "enable.idempotence=true", "-X", "acks=all", "-m", "5"], `${value}\n`);

describe("Kafka over SASL_SSL with ACLs", () => {
  test("(a) the edge (as edge) gets 202 and the workers (as worker) store the row; the supervisor reads the lag; restore-offsets runs as ops", async () => {
    kafka = await startPrivateCluster({ nodes: 1, security: "sasl_ssl" });
    const dir = mkdtempSync(join(tmpdir(), "kafka-sasl-"));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    const db = await createDatabase();
    const serverLog = join(dir, "server.log");
    const poolLog = join(dir, "pool.log");
    const server = await spawnServer(
      { KAFKA_BROKERS: kafka.brokers, ...clientEnv(kafka.security, "edge"), LOG_LEVEL: "trace" },
      { output: { file: serverLog } },
    );
    const pool = await spawnSupervisor(
      { scansTopic: SCANS, deadLetterTopic: DEAD_LETTERS, group: "qrscan-sink", databaseUrl: db.url },
      {
        workers: 1,
        extra: {
          KAFKA_BROKERS: kafka.brokers,
          ...clientEnv(kafka.security, "worker"),
          DEAD_LETTER_GROUP: "qrscan-dead-letters",
          LAG_INTERVAL_MS: "500",
          LOG_LEVEL: "trace",
        },
        output: { file: poolLog },
      },
    );

    const event = scan({ qr_id: "QR-sasl" });
    const eventId = event.event_id as string;
    const res = await fetch(`${server.url}/v1/scans`, {
      method: "POST",
      body: JSON.stringify([event]),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(202);
    await waitFor(
      "the worker (principal worker) to store the event the edge (principal edge) produced",
      () => db.sql`select qr_id from scan_events where event_id = ${eventId}`,
      (rows) => rows.length === 1,
      60_000,
    );
    // The supervisor's lag exporter (principal worker) reads the group's committed offsets.
    await waitFor(
      "the supervisor to read the committed lag of qrscan-sink (0 once the worker committed)",
      () => metric(`${pool.supervisorUrl}/metrics`, "consumer_group_lag").catch((e: Error) => e.message),
      (lag) => lag === 0,
      30_000,
    );

    await stopProcess(server.proc);
    await stopProcess(pool.proc);
    // Operator commands as ops: restore-offsets moves both groups (Read on the groups and topics).
    const restore = Bun.spawnSync(["bun", "jobs/restore-offsets.ts"], {
      env: {
        ...process.env,
        KAFKA_BROKERS: kafka.brokers,
        ...clientEnv(kafka.security, "ops"),
        DATABASE_URL: db.url,
      },
      timeout: 60_000,
    });
    expect(`${restore.stdout}${restore.stderr}`).toContain("offsets set");
    expect(restore.exitCode).toBe(0);

    // No Kafka password in anything the server, the supervisor or its worker wrote at trace.
    const output = `${readFileSync(serverLog, "utf8")}\n${readFileSync(poolLog, "utf8")}`;
    for (const msg of ["edge server listening", "worker started", '"service":"supervisor"'])
      expect(output).toContain(msg);
    const passwords = (["admin", "edge", "worker", "ops"] as const).map((p) => readPassword(kafka.security, p));
    const planted = `${output}\n{"msg":"planted","value":"${passwords.join(" ")}"}`;
    expect(passwords.filter((pw) => planted.includes(pw))).toHaveLength(4);
    expect(passwords.filter((pw) => output.includes(pw))).toEqual([]);
  }, 180_000);

  test("(b, c, d) only the granted principals get in, each only where granted", async () => {
    kafka = await startPrivateCluster({ nodes: 1, security: "sasl_ssl" });
    const admin = new KafkaAdmin({ config: kafka.admin });
    try {
      await admin.createTopics([{ name: UNLISTED, partitions: 1 }]);
    } finally {
      admin.close();
    }
    // An event in scans, and the positive control of every read below: the worker's principal reads it.
    const eventId = crypto.randomUUID();
    expect((await write("edge", SCANS, JSON.stringify({ event_id: eventId }))).code).toBe(0);
    const allowed = await read("worker", SCANS);
    expect(allowed.stdout).toContain(eventId);

    // (b) No client without SASL gets in: plaintext, TLS alone, a wrong password.
    // Each of these waits out kcat's metadata timeout (-m 5): run at once.
    const [plaintext, tlsOnly, badPassword] = await Promise.all([
      read("plaintext", SCANS),
      read("tls", SCANS),
      kcat("worker", ["-C", "-t", SCANS, "-o", "beginning", "-e", "-m", "5"], undefined, "wrong"),
    ]);
    expect(plaintext.stdout).not.toContain(eventId);
    // librdkafka's words for a plaintext client on a TLS listener.
    expect(plaintext.stderr).toContain("might be caused by incorrect security.protocol configuration");
    expect(plaintext.stderr).toContain("Failed to query metadata for topic scans");

    expect(tlsOnly.stdout).not.toContain(eventId);
    expect(tlsOnly.stderr).toContain("broker might require SASL authentication");
    // The broker's side: the client's first request came before any SASL handshake.
    expect(readFileSync(kafka.log(1), "utf8")).toContain(
      "Unexpected Kafka request of type METADATA during SASL handshake",
    );

    expect(badPassword.stdout).not.toContain(eventId);
    expect(badPassword.stderr).toContain(
      "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
    );

    // (c) The edge's principal cannot read scans (alone or in the workers' group) nor write dead letters.
    const alone = await read("edge", SCANS);
    expect(alone.stdout).not.toContain(eventId);
    expect(alone.stderr).toContain("Broker: Topic authorization failed");
    expect(alone.code).not.toBe(0);

    const inGroup = await kcat("edge", ["-G", "qrscan-sink", SCANS, "-e", "-m", "5"]);
    expect(inGroup.stdout).not.toContain(eventId);
    expect(inGroup.stderr).toContain("FindCoordinator response error: Group authorization failed");

    // Positive control: the worker's principal writes dead letters.
    expect((await write("worker", DEAD_LETTERS, "a dead letter")).code).toBe(0);
    const deadLetter = await write("edge", DEAD_LETTERS, "a forged dead letter");
    expect(deadLetter.stderr).toContain("Delivery failed for message: Broker: Topic authorization failed");
    expect(deadLetter.code).not.toBe(0);

    // (d) The worker's principal cannot write scans (the edge's could, above, with the same client);
    // no principal can write a topic no ACL names (allow.everyone.if.no.acl.found=false).
    const forged = await write("worker", SCANS, "a forged event");
    expect(forged.stderr).toContain("Delivery failed for message: Broker: Topic authorization failed");
    expect(forged.code).not.toBe(0);

    for (const as of ["edge", "worker", "ops"] as const) {
      const w = await write(as, UNLISTED, "x");
      expect(`${as}: ${w.stderr}`).toContain("Delivery failed for message: Broker: Topic authorization failed");
    }
    // Positive control: the super user may.
    expect((await write("admin", UNLISTED, "x")).code).toBe(0);
  }, 180_000);
});
