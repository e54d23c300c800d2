// One worker process: the sink loop on `scans` and the dead-letter loop on `analytics.errors`,
// each with its own consumer group, sharing a Postgres pool through pgbouncer. SIGTERM finishes
// the current batches, commits, leaves both groups and exits 0 within SHUTDOWN_TIMEOUT_MS.
import { KafkaConsumer, KafkaError, KafkaProducer, librdkafkaVersion } from "bun-rdkafka";
import type { Sql } from "postgres";
import { isTransientDbError } from "../shared/db-errors.ts";
import { startProcess } from "../shared/logger.ts";
import { type ProbeResult, createRegistry, serveMetrics } from "../shared/metrics.ts";
import { startTracing, tracesUrl } from "../shared/tracing.ts";
import { loadWorkerConfig } from "./config.ts";
import { createDb } from "./db.ts";
import { runDeadLetterLoop } from "./dead-letters.ts";
import { createWorkerMetrics, recordLag } from "./metrics.ts";
import { PartitionProgress } from "./progress.ts";
import { createRetrier, pauseWhileRetrying } from "./retry.ts";
import { BatchFailedError, runScanLoop } from "./scan-loop.ts";
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

/**
 * The worker's /ready: joined the group, and the database answers `select 1` within 2 s. The
 * database's answer is kept for a second, so frequent probes do not take connections from the sink.
 * The probe is unauthenticated, so its answer names the state only; the database's own error is
 * logged, once each time the database becomes unreachable.
 */
function readiness(joined: () => boolean, sql: Sql): () => Promise<ProbeResult> {
  let checked: { at: number; error: string | null } | null = null;
  return async function ready() {
    if (!checked || Date.now() - checked.at > 1_000) {
      const error = await Promise.race([
        sql`select 1`.then(
          () => null,
          (e: Error) => e.message,
        ),
        Bun.sleep(2_000).then(() => "no answer within 2000 ms"),
      ]);
      if (error && !checked?.error) logger.warn({ err: error }, "/ready: the database is unreachable; answering 503");
      checked = { at: Date.now(), error };
    }
    if (!joined()) return { ok: false, body: { status: "joining the consumer group" } };
    if (checked.error) return { ok: false, body: { status: "database unreachable" } };
    return { ok: true, body: { status: "ready" } };
  };
}

async function main() {
  tolerateLeakedConnectionErrors();
  const registry = createRegistry("worker");
  const progress = new PartitionProgress(config.SCANS_TOPIC, config.STALL_TIMEOUT_MS);
  const metrics = createWorkerMetrics(registry, progress);
  const db = createDb({
    url: config.DATABASE_URL,
    poolMax: config.DB_POOL_MAX,
    statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
    deadlineMarginMs: config.DB_DEADLINE_MARGIN_MS,
  });
  // Set by the first rebalance that gives this worker its share (possibly none): it is in the group.
  let joinedGroup = false;
  const metricsServer = serveMetrics(
    registry,
    config.METRICS_HOST,
    config.METRICS_PORT,
    {
      // Liveness: answered from the progress tracker, so it fails while the loop is stuck in a write.
      health: () => {
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
      },
      // Readiness: in the consumer group (owning partitions or not: with more workers than
      // partitions, one without any is still ready) and the database answers.
      ready: readiness(() => joinedGroup, db.sql),
    },
    config.metricsAuth,
  );
  const onError = (error: KafkaError) => logger.warn({ code: error.code }, error.message);
  const producer = new KafkaProducer({ config: { ...config.kafka, ...config.producer }, onError });
  const consumer = new KafkaConsumer({
    config: { ...config.kafka, ...config.sinkConsumer, "group.id": config.CONSUMER_GROUP },
    onError,
    onStats: (json) => recordLag(metrics, json),
    onAssign: (ps) => {
      joinedGroup = true;
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

  const tracing = startTracing("qrscan-worker", config);
  let stopping = false;
  const retrier = (c: KafkaConsumer) =>
    createRetrier({
      baseMs: config.DB_RETRY_BASE_MS,
      capMs: config.DB_RETRY_CAP_MS,
      maxMs: config.DB_RETRY_MAX_MS,
      isRetriable: (e) => isTransientDbError(e) || (e instanceof KafkaError && e.retriable),
      ...pauseWhileRetrying(c, metrics.paused),
      onRetry: (what, attempt, delayMs, error, log = logger) => {
        metrics.retries.inc();
        log.warn({ what, attempt, delayMs, err: error.message }, "transient failure; retrying");
      },
    });

  consumer.subscribe([config.SCANS_TOPIC]);
  dlqConsumer.subscribe([config.DEAD_LETTER_TOPIC]);
  logger.info(
    {
      topic: config.SCANS_TOPIC,
      group: config.CONSUMER_GROUP,
      librdkafka: librdkafkaVersion(),
      traces: tracesUrl(config) ?? "off",
      metrics: `http://${metricsServer.hostname}:${metricsServer.port}/metrics`,
    },
    "worker started",
  );
  const loops = Promise.all([
    runScanLoop({
      config,
      consumer,
      producer,
      sink: new ScanSink(db.transaction, { optimistic: config.SINK_OPTIMISTIC_COPY }),
      metrics,
      progress,
      logger,
      isStopping: () => stopping,
      withRetry: retrier(consumer),
      tracing,
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
  await tracing.shutdown();
  metricsServer.stop(true);
  logger.info("stopped");
  process.exit(0);
}

main().catch((error) => {
  // A failed batch's id, offsets and request and trace ids go into the one line that reports it.
  const batch =
    error instanceof BatchFailedError
      ? { batch_id: error.batch_id, offsets: error.offsets, request_ids: error.request_ids, trace_ids: error.trace_ids }
      : {};
  logger.fatal({ err: error, ...batch }, "worker failed; exiting for the supervisor to restart it");
  process.exit(1);
});
