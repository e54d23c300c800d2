// Factories for integration tests: each makes something real on the local stack (topics, clients,
// throwaway databases, the edge app, server and worker processes) and registers its cleanup, run
// after the test by test/setup.ts, so tests never share state and leave nothing behind. Names are
// random per test. The stack itself is started by ensureStack() (./stack.ts).
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KafkaAdmin, type KafkaConfig, KafkaConsumer, KafkaProducer } from "bun-rdkafka";
import type { ConsumerOptions, ProducerOptions } from "bun-rdkafka";
import postgres, { type Sql } from "postgres";
import { createApp } from "../../server/app.ts";
import { BackgroundDb, backgroundClient } from "../../server/background-db.ts";
import { loadServerConfig } from "../../server/config.ts";
import { KeyStore } from "../../server/keys.ts";
import { createServerMetrics } from "../../server/metrics.ts";
import type { ReplicaCount } from "../../server/replicas.ts";
import { newSecret } from "../../shared/api-keys.ts";
import { sha256 } from "../../shared/api-keys.ts";
import type { DbLogin } from "../../shared/local-stack.ts";
import { type Logger, createLogger } from "../../shared/logger.ts";
import { createRegistry } from "../../shared/metrics.ts";
import { startEdgeServer } from "../../tools/edge-server.ts";
import {
  type SpawnOptions,
  createThrowawayDatabase,
  killProcess,
  spawnProcess,
  spawnUntilReady,
  stopProcess,
} from "../../tools/harness.ts";
import { childPids } from "../../tools/pipeline.ts";
import { pgbouncerIni } from "../../tools/stack/postgres.ts";
import { asServiceUser, freePort, portOpen } from "../../tools/stack/processes.ts";
import { waitFor } from "../../tools/wait.ts";
import { onCleanup } from "./cleanup.ts";
import { brokerConfig, stack } from "./stack.ts";

export { onCleanup } from "./cleanup.ts";

export const uniqueName = (prefix: string) => `${prefix}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;

// ---------------------------------------------------------------------------------------------
// Kafka

export function createAdmin(): KafkaAdmin {
  const admin = new KafkaAdmin({ config: brokerConfig });
  onCleanup(() => admin.close());
  return admin;
}

/** Creates a fresh topic, deleted after the test. */
export async function createTopic(partitions = 3): Promise<string> {
  const name = uniqueName("test");
  const admin = createAdmin();
  await admin.createTopics([{ name, partitions }], { ignoreExisting: false });
  onCleanup(() => admin.deleteTopics([name]));
  return name;
}

export function createProducer(config: KafkaConfig = {}, options: Omit<ProducerOptions, "config"> = {}): KafkaProducer {
  const producer = new KafkaProducer({ ...options, config: { ...brokerConfig, ...config } });
  onCleanup(() => producer.close(2_000));
  return producer;
}

export function createConsumer(config: KafkaConfig = {}, options: Omit<ConsumerOptions, "config"> = {}): KafkaConsumer {
  const consumer = new KafkaConsumer({
    ...options,
    config: { ...brokerConfig, "group.id": uniqueName("g"), ...config },
  });
  onCleanup(() => consumer.close(5_000));
  return consumer;
}

// ---------------------------------------------------------------------------------------------
// Postgres

/**
 * A throwaway database for this test (tools/harness.ts), migrated unless `migrated: false`, with
 * a pool through the real pgbouncer (transaction pooling) like production; dropped after the test.
 */
export async function createDatabase({ migrated = true } = {}): Promise<{
  name: string;
  directUrl: string;
  url: string;
  sql: postgres.Sql;
  /** Drops it now (closing its connections), e.g. to take Postgres away from a process under test. */
  drop: () => Promise<void>;
}> {
  const db = await createThrowawayDatabase("qrscan_t", { migrated, stack });
  onCleanup(db.drop);
  const sql = postgres(db.url, { prepare: false, max: 2, onnotice: () => {} });
  onCleanup(() => sql.end({ timeout: 1 }));
  return { name: db.name, directUrl: db.directUrl, url: db.url, sql, drop: db.drop };
}

/**
 * `url` (the stack's, or a throwaway database's through it) as one of the stack's login users
 * (stack.logins: edge, worker, monitor) instead of the owner.
 */
export function urlAs(url: string, login: DbLogin): string {
  const owner = `//${stack.user}:${stack.password}@`;
  if (!url.includes(owner)) throw new Error(`urlAs: ${url} is not the owner's URL`);
  return url.replace(owner, `//${login.user}:${login.password}@`);
}

/**
 * A pgbouncer of this test's own in front of the stack's Postgres (every database, transaction
 * pooling), with its own users (plain passwords) and, with `tls`, client TLS required with that
 * certificate and key (files readable by the postgres user). Killed by pid after the test.
 */
export async function spawnPgbouncer({
  users,
  tls,
  product,
}: {
  users: Record<string, string>;
  tls?: { certFile: string; keyFile: string };
  /**
   * The product's pgbouncer.ini (tools/stack/postgres.ts, pgbouncerIni) for this database, pools
   * and aliases included, instead of the plain one; its stats user is the first of `users`.
   */
  product?: { database: string };
}): Promise<{ port: number; url: (user: string, database: string) => string }> {
  const dir = mkdtempSync(join(tmpdir(), "pgbouncer-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const port = freePort();
  const ini = join(dir, "pgbouncer.ini");
  const userlist = join(dir, "userlist.txt");
  const log = join(dir, "pgbouncer.log");
  writeFileSync(
    userlist,
    Object.entries(users)
      .map(([u, pw]) => `"${u}" "${pw}"\n`)
      .join(""),
  );
  const productIni = (database: string) =>
    `${pgbouncerIni({
      database,
      statsUsers: [Object.keys(users)[0] as string],
      listenAddr: "127.0.0.1",
      listenPort: port,
      serverHost: "127.0.0.1",
      serverPort: stack.pgPort,
      authFile: userlist,
    })}logfile = ${log}\n`;
  writeFileSync(
    ini,
    product
      ? productIni(product.database)
      : [
          "[databases]",
          `* = host=127.0.0.1 port=${stack.pgPort}`,
          "[pgbouncer]",
          "listen_addr = 127.0.0.1",
          `listen_port = ${port}`,
          "unix_socket_dir =",
          "auth_type = plain",
          `auth_file = ${userlist}`,
          `logfile = ${log}`,
          "pool_mode = transaction",
          "ignore_startup_parameters = extra_float_digits,options,search_path",
          ...(tls
            ? [
                "client_tls_sslmode = require",
                `client_tls_cert_file = ${tls.certFile}`,
                `client_tls_key_file = ${tls.keyFile}`,
              ]
            : []),
          "",
        ].join("\n"),
  );
  chmodSync(userlist, 0o600);
  // pgbouncer refuses to run as root: it runs as the postgres user, like the stack's.
  Bun.spawnSync(["chown", "-R", "postgres:postgres", dir]);
  const [cmd, args] = asServiceUser("pgbouncer", [ini]);
  const proc = spawnProcess({ cmd: [cmd, ...args], output: "ignore" });
  onCleanup(() => killProcess(proc));
  await waitFor(
    `pgbouncer (pid ${proc.pid}) to listen on 127.0.0.1:${port}`,
    async () => ({ exited: proc.exitCode, open: await portOpen(port) }),
    (s) => s.open || s.exited !== null,
    10_000,
    50,
  );
  if (proc.exitCode !== null) {
    throw new Error(`pgbouncer exited with ${proc.exitCode}; its log:\n${readFileSync(log, "utf8")}`);
  }
  return {
    port,
    url: (user, database) =>
      `postgres://${user}:${encodeURIComponent(users[user] ?? "")}@127.0.0.1:${port}/${database}`,
  };
}

// ---------------------------------------------------------------------------------------------
// The edge: in-process app and server process

/** The static key of createTestApp: generated, as the edge accepts only static keys of that shape. */
export const API_KEY = newSecret();

/** A pool for tests that never reach the read side: connects lazily, so it never connects. */
function unusedSql(): Sql {
  const sql = postgres(stack.databaseUrl, { prepare: false, max: 1 });
  onCleanup(() => sql.end({ timeout: 1 }));
  return sql;
}

/** Builds the edge app in-process against the real broker, with a random topic per test. */
export async function createTestApp(
  env: Record<string, string> = {},
  {
    waitForKafka = true,
    sql = unusedSql(),
    onStats,
    logger = createLogger("server-test", "silent"),
    topic,
    keyStore,
    replicas,
  }: {
    waitForKafka?: boolean;
    sql?: Sql;
    onStats?: (json: string) => void;
    logger?: Logger;
    /** An existing topic to send to; default: a fresh one of 3 partitions. */
    topic?: string;
    /** Managed API keys (see createKeyStore); default: static keys only. */
    keyStore?: KeyStore;
    /** The live edge replicas sharing the rate limits (server/replicas.ts); default: this one alone. */
    replicas?: ReplicaCount;
  } = {},
) {
  topic ??= await createTopic(3);
  const config = loadServerConfig({
    KAFKA_BROKERS: String(brokerConfig["bootstrap.servers"]),
    SCANS_TOPIC: topic,
    API_KEY_SHA256: sha256(API_KEY).toString("hex"),
    ...env,
  });
  // The producer the server would make: from the same config (loadServerConfig(env).kafka).
  const producer = createProducer(config.kafka, { onStats });
  if (waitForKafka) await producer.waitUntilConnected(10_000);
  const registry = createRegistry("server-test");
  const metrics = createServerMetrics(registry, () => producer);
  let draining = false;
  const app = createApp({
    config,
    producer,
    sql,
    metrics,
    logger,
    keyStore,
    replicas,
    isDraining: () => draining,
  });
  const post = (body: RequestInit["body"], headers: Record<string, string> = {}) =>
    app.request("/v1/scans", {
      method: "POST",
      body,
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json", ...headers },
    });
  return {
    app,
    topic,
    config,
    producer,
    registry,
    post,
    setDraining: (d: boolean) => {
      draining = d;
    },
  };
}

/**
 * The frozen-sink fault: another session holds scan_events in ACCESS EXCLUSIVE mode, so the
 * worker's write waits without an error. release() rolls back (the lock goes); rolled back after
 * the test in any case.
 */
export async function lockScanEvents(directUrl: string): Promise<{ release: () => Promise<void> }> {
  const locker = postgres(directUrl, { max: 1, onnotice: () => {} });
  const session = await locker.reserve();
  onCleanup(async () => {
    await session`rollback`.catch(() => {});
    session.release();
    await locker.end({ timeout: 1 });
  });
  await session`begin`;
  await session`lock table scan_events in access exclusive mode`;
  return {
    release: async () => {
      await session`rollback`;
    },
  };
}

/** Starts `bun server/main.ts` as its own process, once it answers /ready; killed by pid after the test. */
export async function spawnServer(
  env: Record<string, string>,
  { output = "pipe" }: { output?: SpawnOptions["output"] } = {},
) {
  const server = await startEdgeServer({ env, output, readyTimeoutMs: 20_000 });
  // Stopped as in production (SIGTERM, SIGKILL after 3 s): a killed server would leave its
  // heartbeat (server/replicas.ts) behind, a live replica for the next server on that database
  // for 15 s, halving its rate limits.
  // A server behind a balancer waits DRAIN_DELAY_MS before it drains: the SIGKILL comes after that.
  onCleanup(() => stopProcess(server.proc, 3_000 + Number(env.DRAIN_DELAY_MS ?? 0)));
  return { proc: server.proc, url: server.url, metricsUrl: server.metricsUrl };
}

/**
 * The managed API keys of database `url` (through pgbouncer), loaded once and then refreshed every
 * `refreshSeconds`; stopped after the test.
 */
export async function createKeyStore(url: string, { refreshSeconds = 1, registry = createRegistry("keys-test") } = {}) {
  const logger = createLogger("keys-test", "silent");
  const db = new BackgroundDb({
    connect: () => backgroundClient(url),
    logger,
    registry,
  });
  const store = new KeyStore({ db, refreshSeconds, registry, logger });
  onCleanup(async () => {
    await store.stop();
    await db.end({ timeout: 1 });
  });
  await store.start();
  return { store, registry };
}

// ---------------------------------------------------------------------------------------------
// Workers

export interface WorkerEnv {
  scansTopic: string;
  deadLetterTopic: string;
  group: string;
  databaseUrl: string;
}

/** Fresh topics (scans and dead letters) and a fresh group for workers writing to `databaseUrl`. */
export async function workerEnv(databaseUrl: string, partitions = 6): Promise<WorkerEnv> {
  return {
    scansTopic: await createTopic(partitions),
    deadLetterTopic: await createTopic(2),
    group: uniqueName("sink"),
    databaseUrl,
  };
}

/** The environment of a worker process (or of the supervisor) bound to this test's topics and database. */
export function workerProcessEnv(env: WorkerEnv): Record<string, string> {
  return {
    KAFKA_BROKERS: String(brokerConfig["bootstrap.servers"]),
    SCANS_TOPIC: env.scansTopic,
    DEAD_LETTER_TOPIC: env.deadLetterTopic,
    CONSUMER_GROUP: env.group,
    DEAD_LETTER_GROUP: `${env.group}-dlq`,
    DATABASE_URL: env.databaseUrl,
    LOG_LEVEL: "warn",
    DB_RETRY_BASE_MS: "50",
    DB_RETRY_CAP_MS: "1000",
    // A supervisor started with this environment picks a free port for its own metrics.
    SUPERVISOR_METRICS_PORT: "0",
  };
}

/** Starts `bun worker/main.ts` for `env` (not waiting for it); killed by pid after the test. */
export function spawnWorker(
  env: WorkerEnv,
  extra: Record<string, string> = {},
  { output = "inherit" }: { output?: SpawnOptions["output"] } = {},
) {
  const metricsPort = freePort();
  const proc = spawnProcess({
    cmd: ["bun", "worker/main.ts"],
    env: { ...workerProcessEnv(env), METRICS_PORT: String(metricsPort), ...extra },
    output,
  });
  onCleanup(() => killProcess(proc));
  return { proc, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` };
}

/** A free port whose next `count - 1` ports are free too (worker i listens on METRICS_PORT + i). */
export function freePorts(count: number): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = freePort();
    try {
      for (let i = 1; i < count; i++)
        Bun.listen({ hostname: "127.0.0.1", port: first + i, socket: { data() {} } }).stop(true);
      return first;
    } catch {
      // one of them is taken: try another
    }
  }
  throw new Error(`no ${count} consecutive free ports in 50 tries`);
}

/**
 * Starts `bun worker/supervisor.ts` with `workers` workers for `env`, once its /health answers;
 * after the test its workers (its children) and then the supervisor are stopped by pid.
 */
export async function spawnSupervisor(
  env: WorkerEnv,
  {
    workers = 2,
    extra = {},
    output = "inherit",
  }: { workers?: number; extra?: Record<string, string>; output?: SpawnOptions["output"] } = {},
) {
  const workerPort = freePorts(workers);
  const supervisorPort = freePort();
  const proc = await spawnUntilReady({
    name: "supervisor",
    cmd: ["bun", "worker/supervisor.ts"],
    env: {
      ...workerProcessEnv(env),
      WORKER_POOL_SIZE: String(workers),
      METRICS_PORT: String(workerPort),
      SUPERVISOR_METRICS_PORT: String(supervisorPort),
      ...extra,
    },
    output,
    readyUrl: `http://127.0.0.1:${supervisorPort}/health`,
    readyTimeoutMs: 30_000,
  });
  onCleanup(async () => {
    for (const pid of childPids(proc.pid)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await killProcess(proc);
  });
  return {
    proc,
    workerPort,
    supervisorPort,
    /** Worker i's metrics listener (/metrics, /health, /ready). */
    workerUrl: (i: number) => `http://127.0.0.1:${workerPort + i}`,
    supervisorUrl: `http://127.0.0.1:${supervisorPort}`,
    workerPids: () => childPids(proc.pid),
  };
}
