// One worker process: the sink loop on `scans` and the dead-letter loop on `analytics.errors`,
// each with its own consumer group, sharing a Postgres pool through pgbouncer. SIGTERM finishes
// the current batches, commits, leaves both groups and exits 0 within SHUTDOWN_TIMEOUT_MS.
import { isTransientDbError } from "../shared/db-errors.ts";
import { KafkaConsumer, KafkaError, KafkaProducer, librdkafkaVersion } from "../shared/kafka/index.ts";
import { startProcess } from "../shared/logger.ts";
import { createRegistry, serveMetrics } from "../shared/metrics.ts";
import { loadWorkerConfig } from "./config.ts";
import { createDb } from "./db.ts";
import { runDeadLetterLoop } from "./dead-letters.ts";
import { createWorkerMetrics, recordLag } from "./metrics.ts";
import { PartitionProgress } from "./progress.ts";
import { createRetrier, pauseWhileRetrying } from "./retry.ts";
import { runScanLoop } from "./scan-loop.ts";
import { ScanSink } from "./sink.ts";

const started = startProcess("worker", () => loadWorkerConfig());
const config = started.config;
const logger = started.logger.child({ worker: config.WORKER_INDEX });

/**
 * postgres.js (3.4.x) can reject a second, internal promise when a connection fails during login
 * inside sql.begin() (porsager/postgres#162 and related): the awaited call gets the same error,
 * which our retrier handles. Only that connection-level class is tolerated here, and logged;
 * any other unhandled rejection still ends the process for the supervisor to restart it.
 */
function tolerateLeakedConnectionErrors() {
  process.on("unhandledRejection", (reason) => {
    if (reason instanceof Error && reason.name === "PostgresError" && isTransientDbError(reason)) {
      logger.warn({ err: reason.message }, "postgres.js leaked a connection error (already retried)");
      return;
    }
    logger.fatal({ err: reason }, "unhandled rejection");
    process.exit(1);
  });
}

async function main() {
  tolerateLeakedConnectionErrors();
  const registry = createRegistry("worker");
  const progress = new PartitionProgress(config.SCANS_TOPIC, config.STALL_TIMEOUT_MS);
  const metrics = createWorkerMetrics(registry, progress);
  // Liveness: answered from the progress tracker, so it fails while the loop is stuck in a write.
  const metricsServer = serveMetrics(registry, config.METRICS_HOST, config.METRICS_PORT, () => {
    const partitions = progress.view();
    const stalled = partitions.filter((p) => p.stalled).map((p) => p.partition);
    return stalled.length === 0
      ? { ok: true, body: { status: "ok", partitions } }
      : {
          ok: false,
          body: {
            status: "stalled",
            reason: `partitions ${stalled.join(", ")} have pending work and no commit for over ${config.STALL_TIMEOUT_MS} ms`,
            partitions,
          },
        };
  });
  const db = createDb({
    url: config.DATABASE_URL,
    poolMax: config.DB_POOL_MAX,
    statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
    deadlineMarginMs: config.DB_DEADLINE_MARGIN_MS,
  });
  const onError = (error: KafkaError) => logger.warn({ code: error.code }, error.message);
  const producer = new KafkaProducer({ config: { ...config.kafka, ...config.producer }, onError });
  const consumer = new KafkaConsumer({
    config: { ...config.kafka, "group.id": config.CONSUMER_GROUP },
    onError,
    onStats: (json) => recordLag(metrics, json),
    onAssign: (ps) => {
      progress.assigned(ps);
      metrics.assigned.set(consumer.assignment().length);
      logger.info({ partitions: ps.map((p) => p.partition) }, "partitions assigned");
    },
    onRevoke: (ps) => {
      progress.revoked(ps);
      metrics.assigned.set(consumer.assignment().length);
      logger.info({ partitions: ps.map((p) => p.partition) }, "partitions revoked");
    },
  });
  const dlqConsumer = new KafkaConsumer({
    config: { ...config.kafka, "group.id": config.DEAD_LETTER_GROUP, "statistics.interval.ms": 0 },
    onError,
  });

  let stopping = false;
  const retrier = (c: KafkaConsumer) =>
    createRetrier({
      baseMs: config.DB_RETRY_BASE_MS,
      capMs: config.DB_RETRY_CAP_MS,
      maxMs: config.DB_RETRY_MAX_MS,
      isRetriable: (e) => isTransientDbError(e) || (e instanceof KafkaError && e.retriable),
      ...pauseWhileRetrying(c, metrics.paused),
      onRetry: (what, attempt, delayMs, error) => {
        metrics.retries.inc();
        logger.warn({ what, attempt, delayMs, err: error.message }, "transient failure; retrying");
      },
    });

  consumer.subscribe([config.SCANS_TOPIC]);
  dlqConsumer.subscribe([config.DEAD_LETTER_TOPIC]);
  logger.info(
    {
      topic: config.SCANS_TOPIC,
      group: config.CONSUMER_GROUP,
      librdkafka: librdkafkaVersion(),
      metrics: `http://${metricsServer.hostname}:${metricsServer.port}/metrics`,
    },
    "worker started",
  );
  const loops = Promise.all([
    runScanLoop({
      config,
      consumer,
      producer,
      sink: new ScanSink(db.transaction),
      metrics,
      progress,
      logger,
      isStopping: () => stopping,
      withRetry: retrier(consumer),
    }),
    runDeadLetterLoop({
      consumer: dlqConsumer,
      transaction: db.transaction,
      metrics,
      logger,
      isStopping: () => stopping,
      withRetry: retrier(dlqConsumer),
    }),
  ]);

  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping: finishing the current batch");
    setTimeout(() => {
      logger.error({ timeoutMs: config.SHUTDOWN_TIMEOUT_MS }, "shutdown timed out; exiting without a clean leave");
      process.exit(1);
    }, config.SHUTDOWN_TIMEOUT_MS).unref();
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  await loops;
  await Promise.all([consumer.close(), dlqConsumer.close()]);
  await producer.close(5_000);
  await db.sql.end({ timeout: 5 });
  metricsServer.stop(true);
  logger.info("stopped");
  process.exit(0);
}

main().catch((error) => {
  logger.fatal({ err: error }, "worker failed; exiting for the supervisor to restart it");
  process.exit(1);
});
