// The edge HTTP app (Hono). Built from its dependencies so tests run it in-process with
// app.request() against the real broker, and main.ts serves it with Bun.serve.
import { isIP } from "node:net";
import { type Context, Hono } from "hono";
import { requestId } from "hono/request-id";
import { getPath } from "hono/utils/url";
import type { Sql } from "postgres";
import { KafkaError, type KafkaProducer } from "../shared/kafka/index.ts";
import type { Logger } from "../shared/logger.ts";
import { apiKeyAuth } from "./auth.ts";
import { bodyBudget } from "./body-budget.ts";
import type { ServerConfig } from "./config.ts";
import { ingestHandler } from "./ingest.ts";
import type { ServerMetrics } from "./metrics.ts";
import { statsHandler } from "./stats.ts";

export interface AppDeps {
  config: ServerConfig;
  apiKeyHashes: readonly string[];
  producer: KafkaProducer;
  metrics: ServerMetrics;
  logger: Logger;
  /** Postgres (through pgbouncer) for the read side. */
  sql: Sql;
  /** True while shutting down: /ready answers 503 so load balancers stop sending traffic. */
  isDraining: () => boolean;
}

/** The client's address: X-Forwarded-For is believed only when the peer is a trusted proxy. */
export function clientIpResolver(trustedProxies: readonly string[]) {
  const trusted = new Set(trustedProxies);
  return (peer: string | null, forwardedFor: string | undefined): string | null => {
    if (!peer || !forwardedFor || !trusted.has(peer)) return peer;
    // Walk from the nearest hop back; the first address that is not a trusted proxy is the client.
    const hops = forwardedFor
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i] as string;
      // A hop that is not an IP address means the chain is garbage from here on: stop at the peer side.
      if (!isIP(hop)) return peer;
      if (!trusted.has(hop)) return hop;
    }
    return hops[0] ?? peer;
  };
}

/**
 * The request's path for routing. Bun gives a request without a Host header (HTTP/1.0) or with an
 * empty one a relative URL ("/v1/scans"), which Hono's parser, expecting an absolute URL, would
 * cut into the wrong path ("/scans").
 */
export function routingPath(req: Request): string {
  const url = req.url;
  return url.charCodeAt(0) === 47 /* "/" */ ? getPath({ url: `http://host${url}` } as Request) : getPath(req);
}

export function createApp(deps: AppDeps) {
  const { config, producer, metrics, logger } = deps;
  const resolveIp = clientIpResolver(config.TRUSTED_PROXIES);
  const app = new Hono({ getPath: routingPath });

  app.use(requestId());
  // Labelled children are cached: prom-client hashes the label object on every unbound call.
  const requestCounters = new Map<string, { inc(): void }>();
  const durations = new Map<string, { observe(v: number): void }>();
  app.use(async function observe(c, next) {
    const started = performance.now();
    await next();
    const route = c.req.routePath || "unmatched";
    const key = `${route} ${c.res.status}`;
    let counter = requestCounters.get(key);
    if (!counter) {
      counter = metrics.requests.labels({ route, status: String(c.res.status) });
      requestCounters.set(key, counter);
    }
    counter.inc();
    let duration = durations.get(route);
    if (!duration) {
      duration = metrics.duration.labels({ route });
      durations.set(route, duration);
    }
    duration.observe((performance.now() - started) / 1000);
  });

  // The one place an unexpected error is logged (once, with the request id the client is given).
  app.onError((error, c) => {
    const id = c.get("requestId");
    logger.error({ err: error, requestId: id, path: c.req.path }, "request failed");
    const message =
      error instanceof KafkaError
        ? `events not stored: Kafka refused them (${error.code}: ${error.message}); retrying will not help until the server is fixed`
        : "internal error";
    return c.json({ error: message, request_id: id }, 500);
  });
  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));
  // A known path with a method it does not serve: 405 and the methods it does (registered after
  // the real handlers, so it only answers what they did not). HEAD is served by every GET route.
  const methodNotAllowed = (allow: string) => (c: Context) =>
    c.json({ error: `${c.req.method} is not allowed on ${c.req.path}; allowed: ${allow}` }, 405, { Allow: allow });

  // Liveness: fails once the producer is in librdkafka's fatal state, which only a restart heals.
  app.get("/health", (c) => {
    const fatal = producer.fatalError;
    if (fatal) return c.json({ status: "failed", reason: `Kafka producer: ${fatal.message}` }, 503);
    return c.json({ status: "ok" });
  });
  app.get("/ready", (c) => {
    if (deps.isDraining()) return c.json({ status: "draining" }, 503);
    const fatal = producer.fatalError;
    if (fatal) return c.json({ status: "failed", reason: `Kafka producer: ${fatal.message}` }, 503);
    if (!producer.connected) return c.json({ status: "waiting for Kafka" }, 503);
    return c.json({ status: "ready" });
  });
  app.all("/health", methodNotAllowed("GET, HEAD"));
  app.all("/ready", methodNotAllowed("GET, HEAD"));

  const auth = apiKeyAuth({ hashes: deps.apiKeyHashes, disabled: config.AUTH_DISABLED });
  app.get(
    "/v1/qr/:qr_id/stats",
    auth,
    statsHandler({ sql: deps.sql, logger, retryAfterSeconds: config.RETRY_AFTER_SECONDS }),
  );
  app.all("/v1/qr/:qr_id/stats", methodNotAllowed("GET, HEAD"));
  const budget = bodyBudget({
    limitBytes: config.MAX_BODY_BYTES_IN_FLIGHT,
    maxBodyBytes: config.MAX_BODY_BYTES,
    retryAfterSeconds: config.RETRY_AFTER_SECONDS,
  });
  app.post(
    "/v1/scans",
    auth,
    budget.middleware,
    ingestHandler({
      producer,
      metrics,
      topic: config.SCANS_TOPIC,
      maxBodyBytes: config.MAX_BODY_BYTES,
      maxEventsPerRequest: config.MAX_EVENTS_PER_REQUEST,
      maxAgeMs: config.SCANNED_AT_MAX_AGE_HOURS * 3_600_000,
      maxFutureMs: config.SCANNED_AT_MAX_FUTURE_MINUTES * 60_000,
      retryAfterSeconds: config.RETRY_AFTER_SECONDS,
      // Without Bun.serve (in-process app.request() in tests) there is no peer address.
      clientIp: (c) => {
        const server = c.env as { requestIP?: (r: Request) => { address: string } | null } | undefined;
        return resolveIp(server?.requestIP?.(c.req.raw)?.address ?? null, c.req.header("x-forwarded-for"));
      },
      onRetriableDeliveryError: (error) =>
        logger.warn({ err: error }, "Kafka did not acknowledge a request's events; answered 503"),
    }),
  );
  app.all("/v1/scans", methodNotAllowed("POST"));
  return app;
}
