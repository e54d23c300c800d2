// The configuration of a worker process and of the supervisor that runs the pool, each resolved
// once at start-up: the environment, validated, then defaults. docs/operations.md documents every
// variable; test/docs/config-docs.test.ts keeps it in step.
import { availableParallelism } from "node:os";
import * as v from "valibot";
import {
  ConfigError,
  type DURABLE_PRODUCER,
  type MetricsAuth,
  MetricsAuthEntries,
  bool,
  int,
  loadConfig,
  loadMetricsAuth,
  logLevel,
  str,
} from "../shared/config.ts";
import { localStack } from "../shared/local-stack.ts";
import {
  BATCH_MAX_ROWS,
  SinkKafkaEntries,
  WRITES_IN_FLIGHT,
  pipelineKafkaSettings,
} from "../shared/pipeline-config.ts";
import { TracingConfigEntries } from "../shared/tracing.ts";

export const WorkerConfigSchema = v.object({
  ...SinkKafkaEntries,
  /** As a member of qrscan_worker (docs/security.md, "Database roles"). */
  DATABASE_URL: str(localStack().workerDatabaseUrl),
  DB_POOL_MAX: int(4, 1, 100),
  BATCH_MAX_ROWS,
  BATCH_MAX_WAIT_MS: int(50, 1, 60_000),
  /**
   * The sink consumer's fetch: the broker answers a fetch once it has this many bytes for it, or
   * after KAFKA_FETCH_WAIT_MAX_MS. Larger means fewer fetch requests for the broker to serve.
   */
  KAFKA_FETCH_MIN_BYTES: int(256 * 1024, 1, 100 * 1024 * 1024),
  KAFKA_FETCH_WAIT_MAX_MS: int(25, 0, 60_000),
  WRITES_IN_FLIGHT,
  /**
   * A batch is first COPYed straight into scan_events, with counts made by the worker, and goes
   * the staging path (ON CONFLICT DO NOTHING) only if a row was already stored (worker/sink.ts).
   * false: the staging path for every batch (a stream mostly of duplicates; the benches' baseline).
   */
  SINK_OPTIMISTIC_COPY: bool(true),
  DB_RETRY_BASE_MS: int(100, 1),
  DB_RETRY_CAP_MS: int(5_000, 1),
  /** Retrying gives up after this long; the process exits non-zero and the supervisor restarts it. */
  DB_RETRY_MAX_MS: int(120_000, 1_000),
  /** Server-side bound of every statement (SET LOCAL statement_timeout); SQLSTATE 57014 is retried. */
  DB_STATEMENT_TIMEOUT_MS: int(30_000, 100),
  /** Client-side bound of a transaction: past it the worker exits, so the connection is discarded. */
  DB_DEADLINE_MARGIN_MS: int(5_000, 100),
  /**
   * A partition with polled, uncommitted messages and no commit for this long is stalled: /health
   * answers 503 and the supervisor restarts the worker. Must exceed DB_RETRY_MAX_MS, so an outage
   * being retried is not taken for a stall.
   */
  STALL_TIMEOUT_MS: int(180_000, 1_000),
  METRICS_HOST: str("127.0.0.1"),
  METRICS_PORT: int(9470, 0, 65535),
  ...MetricsAuthEntries,
  SHUTDOWN_TIMEOUT_MS: int(15_000, 100),
  /** Fault injection for tests and the crash suite: sleep after the DB commit, before the Kafka commit. */
  FAULT_DELAY_BEFORE_COMMIT_MS: int(0, 0),
  /** This worker's slot in the pool (set by the supervisor); in every log line. */
  WORKER_INDEX: int(0, 0, 255),
  LOG_LEVEL: logLevel(),
  ...TracingConfigEntries,
});

export type WorkerConfig = v.InferOutput<typeof WorkerConfigSchema> & {
  /** librdkafka settings shared by the consumers and the producer (KAFKA_OPT_* overrides and security included). */
  kafka: Record<string, string | number | boolean>;
  /**
   * Where and how to connect, nothing else: the brokers and the security settings, for the admin
   * clients and one-shot consumers (the supervisor's lag reads, restore-offsets).
   */
  kafkaClient: Record<string, string>;
  /** The sink consumer's own settings (fetch sizing), then KAFKA_OPT_* overrides. */
  sinkConsumer: Record<string, string | number | boolean>;
  /** Applied last to the producer's settings. */
  producer: typeof DURABLE_PRODUCER;
  /** GET /metrics' credentials (the worker's and the supervisor's listeners); none = open. */
  metricsAuth: MetricsAuth;
};

export function loadWorkerConfig(env: Record<string, string | undefined> = process.env): WorkerConfig {
  const c = loadConfig(WorkerConfigSchema, env);
  // Each batch in flight holds a connection, and the dead-letter loop needs one more.
  if (c.DB_POOL_MAX <= c.WRITES_IN_FLIGHT) {
    throw new ConfigError([
      `DB_POOL_MAX (${c.DB_POOL_MAX}) must be greater than WRITES_IN_FLIGHT (${c.WRITES_IN_FLIGHT}): raise DB_POOL_MAX or lower WRITES_IN_FLIGHT`,
    ]);
  }
  if (c.STALL_TIMEOUT_MS <= c.DB_RETRY_MAX_MS) {
    throw new ConfigError([
      `STALL_TIMEOUT_MS (${c.STALL_TIMEOUT_MS}) must be greater than DB_RETRY_MAX_MS (${c.DB_RETRY_MAX_MS}): an outage being retried is not a stall`,
    ]);
  }
  const kafka = pipelineKafkaSettings(c, env);
  return {
    ...c,
    kafka: kafka.kafka,
    kafkaClient: kafka.kafkaClient,
    sinkConsumer: {
      "fetch.min.bytes": c.KAFKA_FETCH_MIN_BYTES,
      "fetch.wait.max.ms": c.KAFKA_FETCH_WAIT_MAX_MS,
      ...kafka.overrides,
    },
    // The dead-letter producer: a poison message's offset is committed only after Kafka has it.
    producer: kafka.producer,
    metricsAuth: loadMetricsAuth(c),
  };
}

/** The supervisor's own settings; the workers' (ports, topic, group, timeouts) are WorkerConfigSchema's. */
export const SupervisorConfigSchema = v.object({
  WORKER_POOL_SIZE: int(availableParallelism(), 1, 256),
  /** The supervisor's metrics listener (committed lag, commit age, restarts); 0 picks a free port. */
  SUPERVISOR_METRICS_PORT: int(9469, 0, 65535),
  HEALTH_CHECK_INTERVAL_MS: int(5_000, 100),
  /** Consecutive failed probes (503 or no answer within the interval) before a restart. */
  HEALTH_CHECK_FAILURES: int(3, 1),
  /** How often the group's committed offsets and the high watermarks are read from the broker. */
  LAG_INTERVAL_MS: int(5_000, 500),
});

export type SupervisorConfig = v.InferOutput<typeof SupervisorConfigSchema> & {
  /** The workers' configuration, from the same environment (worker i listens on METRICS_PORT + i). */
  worker: WorkerConfig;
  /** The workers' LOG_LEVEL, which the supervisor logs at too. */
  LOG_LEVEL: WorkerConfig["LOG_LEVEL"];
};

export function loadSupervisorConfig(env: Record<string, string | undefined> = process.env): SupervisorConfig {
  const worker = loadWorkerConfig(env);
  return { ...loadConfig(SupervisorConfigSchema, env), worker, LOG_LEVEL: worker.LOG_LEVEL };
}
