// Entry point of the edge server: config, producer, HTTP and metrics listeners, graceful shutdown.
import { KafkaProducer, librdkafkaVersion } from "bun-rdkafka";
import postgres from "postgres";
import { startProcess } from "../shared/logger.ts";
import { createRegistry, serveMetrics } from "../shared/metrics.ts";
import { startTracing, tracesUrl } from "../shared/tracing.ts";
import { createApp } from "./app.ts";
import { BackgroundDb, backgroundClient } from "./background-db.ts";
import { loadServerConfig } from "./config.ts";
import { KeyStore } from "./keys.ts";
import { createServerMetrics } from "./metrics.ts";
import { EdgeReplicas } from "./replicas.ts";

const { config, logger } = startProcess("server", () => loadServerConfig());

async function main() {
  if (config.AUTH_DISABLED) logger.warn("AUTH_DISABLED=true: POST /v1/scans accepts requests without an API key");

  const registry = createRegistry("server");
  let producer: KafkaProducer | null = null;
  const queueCapacity = Number(config.kafka["queue.buffering.max.messages"] ?? 100_000);
  const metrics = createServerMetrics(registry, () => producer, queueCapacity);
  producer = new KafkaProducer({
    config: config.kafka,
    // A fatal error is logged here once; /health then fails so the process is restarted.
    onError: (error) =>
      error.code === "FATAL"
        ? logger.error({ code: error.code, kafkaCode: error.kafkaCode }, `${error.message}; restart required`)
        : logger.warn({ code: error.code, kafkaCode: error.kafkaCode }, error.message),
  });
  // The read side goes through pgbouncer (transaction pooling): no prepared statements. No type
  // lookup on connect either: during a Postgres failover pgbouncer answers a new connection's first
  // query with query_wait_timeout, and postgres.js leaves a failed lookup unhandled
  // (porsager/postgres#279), which ended the process (test/integration/pg-ha-failover.test.ts).
  const sql = postgres(config.DATABASE_URL, {
    prepare: false,
    max: config.DB_POOL_MAX,
    fetch_types: false,
    onnotice: () => {},
  });
  // Managed API keys: their own one-connection pool, and (API_KEYS_DATABASE_URL) pgbouncer's pool of
  // their own, so a saturated stats route can delay a revocation neither here nor in pgbouncer. A
  // query past its deadline gets the client replaced (server/background-db.ts): a wedged connection
  // would otherwise freeze the key set for the process' life.
  const keysDb = new BackgroundDb({
    connect: () => backgroundClient(config.API_KEYS_DATABASE_URL ?? config.DATABASE_URL),
    logger,
    registry,
  });
  const keyStore =
    config.API_KEYS_DB && !config.AUTH_DISABLED
      ? new KeyStore({ db: keysDb, refreshSeconds: config.API_KEYS_REFRESH_SECONDS, logger, registry })
      : null;
  // Not awaited: /ready answers 503 until a key set is trusted (static keys and JWT need no load).
  void keyStore?.start();
  // The live replica count that divides the rate limits: heartbeats on the key store's pool. With
  // AUTH_DISABLED no limit applies (no principal to count, no 401 to charge), so none is needed.
  const replicas =
    !config.AUTH_DISABLED && (config.rateLimits.perKey || config.rateLimits.perIp)
      ? new EdgeReplicas({ db: keysDb, heartbeatSeconds: config.RATE_LIMIT_HEARTBEAT_SECONDS, logger, registry })
      : null;
  // Not awaited: until the first beat this replica counts itself alone.
  void replicas?.start();
  let draining = false;
  const tracing = startTracing("qrscan-server", config);
  const app = createApp({
    config,
    producer,
    sql,
    metrics,
    logger,
    tracing,
    keyStore,
    replicas,
    isDraining: () => draining,
  });
  const server = Bun.serve({
    hostname: config.HOST,
    port: config.PORT,
    fetch: app.fetch,
    maxRequestBodySize: config.MAX_BODY_BYTES,
    // Never Bun's development error page (it shows source code), whatever NODE_ENV says.
    development: false,
    // Only reached if app.fetch itself throws (Hono's onError answers everything else). Bun's own
    // 400/413/431/505 answers to unparsable requests never get here (docs/api.md "What Bun answers itself").
    error(error) {
      logger.error({ err: error }, "unhandled error in the HTTP server");
      return Response.json({ error: "internal error" }, { status: 500 });
    },
  });
  const metricsServer = serveMetrics(registry, config.METRICS_HOST, config.METRICS_PORT, {}, config.metricsAuth);
  logger.info(
    {
      url: `http://${server.hostname}:${server.port}`,
      metrics: `http://${metricsServer.hostname}:${metricsServer.port}/metrics`,
      topic: config.SCANS_TOPIC,
      librdkafka: librdkafkaVersion(),
      traces: tracesUrl(config) ?? "off",
      // Where client addresses come from (docs/runbooks/rate-limited-address.md reads this).
      trusted_proxies: config.TRUSTED_PROXIES.length
        ? config.TRUSTED_PROXIES.join(",")
        : config.CLIENTS_CONNECT_DIRECTLY
          ? "none: clients connect directly"
          : "none",
      auth: config.AUTH_DISABLED
        ? "disabled"
        : {
            managedKeys: keyStore ? `api_keys, every ${config.API_KEYS_REFRESH_SECONDS} s` : "off",
            staticKeys: config.apiKeyHashes.length,
            jwt: config.jwt ? (config.jwt.jwksUrl ?? `${config.jwt.keys.length} key(s) from files`) : "off",
          },
    },
    "edge server listening",
  );
  producer.waitUntilConnected(30_000).then(
    () => logger.info({ brokers: config.KAFKA_BROKERS }, "connected to Kafka; ready"),
    (error) => logger.error({ err: error }, "Kafka not reachable yet; /ready stays 503 until it is"),
  );

  const shutdown = async (signal: string) => {
    if (draining) return;
    draining = true;
    // A balancer in front follows /ready, not the signal: keep serving while it notices the 503.
    const delayMs = signal === "SIGTERM" ? config.DRAIN_DELAY_MS : 0;
    logger.info({ signal, drainDelayMs: delayMs, drainTimeoutMs: config.DRAIN_TIMEOUT_MS }, "draining");
    const hardStop = setTimeout(
      () => {
        logger.error("drain timeout passed; exiting with in-flight work");
        process.exit(1);
      },
      delayMs + config.DRAIN_TIMEOUT_MS + 2_000,
    );
    // Leave the replica count first, so the others' shares grow while this one drains.
    const left = replicas?.stop();
    if (delayMs > 0) await Bun.sleep(delayMs);
    // Stop accepting; in-flight requests finish (each waits for its Kafka acknowledgements).
    await server.stop(false);
    const flushed = await producer.flush(config.DRAIN_TIMEOUT_MS);
    await producer.close(1_000);
    await keyStore?.stop();
    await left;
    await sql.end({ timeout: 2 });
    await keysDb.end({ timeout: 2 });
    await tracing.shutdown();
    metricsServer.stop(true);
    clearTimeout(hardStop);
    logger.info({ flushed }, "stopped");
    process.exit(flushed ? 0 : 1);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((error) => {
  logger.fatal({ err: error }, "server failed to start");
  process.exit(1);
});
