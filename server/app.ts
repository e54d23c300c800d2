// The edge HTTP app (Hono). Built from its dependencies so tests run it in-process with
// app.request() against the real broker, and main.ts serves it with Bun.serve.
import type { KafkaProducer } from "bun-rdkafka";
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { getConnInfo } from "hono/bun";
import { cors } from "hono/cors";
import { getPath } from "hono/utils/url";
import type { Sql } from "postgres";
import { type Logger, throttledWarn } from "../shared/logger.ts";
import { TRACING_OFF, type Tracing } from "../shared/tracing.ts";
import { createAuth } from "./auth.ts";
import { bodyBudget } from "./body-budget.ts";
import { storedClientIp } from "./client-ip.ts";
import type { ServerConfig } from "./config.ts";
import { ApiError, errorHandler, errorResponse } from "./errors.ts";
import { ingestHandler } from "./ingest.ts";
import type { KeyStore } from "./keys.ts";
import { type ServerMetrics, observeRequests } from "./metrics.ts";
import { openApiDocument } from "./openapi.ts";
import { rateLimits } from "./rate-limit.ts";
import type { ReplicaCount } from "./replicas.ts";
import { statsHandler } from "./stats.ts";
import { requestIds, requestLogFields, traceRequests } from "./tracing.ts";
import { clientIpResolver } from "./trusted-proxies.ts";

export interface AppDeps {
  config: ServerConfig;
  producer: KafkaProducer;
  metrics: ServerMetrics;
  logger: Logger;
  /** Postgres (through pgbouncer) for the read side. */
  sql: Sql;
  /** True while shutting down: /ready answers 503 so load balancers stop sending traffic. */
  isDraining: () => boolean;
  /** Default: off (no spans; the client's traceparent is forwarded unchanged). */
  tracing?: Tracing;
  /** Managed API keys (server/keys.ts), started by the caller; absent: static keys and JWTs only. */
  keyStore?: KeyStore | null;
  /** The live edge replicas that share the rate limits (server/replicas.ts); absent: this one alone. */
  replicas?: ReplicaCount | null;
}

/** What the unauthenticated probes say of librdkafka's fatal state (its message is in the server's log). */
export const PRODUCER_FAILED = "the Kafka producer failed permanently (see the server's log); restart the server";

/** Headers a browser may send cross-origin, and those its script may read from our answers. */
export const CORS_ALLOW_HEADERS = ["Authorization", "X-API-Key", "Content-Type", "Content-Encoding", "traceparent"];
export const CORS_EXPOSE_HEADERS = ["Retry-After", "RateLimit", "RateLimit-Policy", "Max-Batch-Events", "X-Request-Id"];

/**
 * CORS for the origins in CORS_ORIGINS (hono/cors); a request from any other origin (or none) gets
 * no CORS header at all, so its preflight falls through to the route's 405 and the browser blocks it.
 */
export function corsAllowlist(
  config: Pick<ServerConfig, "CORS_ORIGINS" | "CORS_ALLOW_CREDENTIALS" | "CORS_MAX_AGE_SECONDS">,
): MiddlewareHandler | null {
  if (config.CORS_ORIGINS.length === 0) return null;
  const any = config.CORS_ORIGINS.includes("*");
  const allowed = new Set(config.CORS_ORIGINS);
  const middleware = cors({
    origin: any ? "*" : [...allowed],
    allowMethods: ["GET", "HEAD", "POST", "OPTIONS"],
    allowHeaders: CORS_ALLOW_HEADERS,
    exposeHeaders: CORS_EXPOSE_HEADERS,
    maxAge: config.CORS_MAX_AGE_SECONDS,
    credentials: config.CORS_ALLOW_CREDENTIALS,
  });
  const exposeHeaders = CORS_EXPOSE_HEADERS.join(",");
  return async function corsAllowlist(c, next) {
    const origin = c.req.header("origin");
    if (!origin || !(any || allowed.has(origin))) {
      // This answer has no CORS headers and an allowed origin's would: a shared cache must not
      // hand one to the other.
      await next();
      varyOrigin(c.res.headers);
      return;
    }
    if (c.req.method === "OPTIONS") return middleware(c, next);
    // An actual request: hono/cors's headers for it, written once onto the final answer (errors
    // included, so a script can read a 4xx or 429). hono/cors sets them before the handler runs,
    // which makes Hono build a placeholder response and copy its headers onto the real one, most
    // of what the security layer cost a request (docs/benchmarks.md, the edge).
    await next();
    const h = c.res.headers;
    h.set("Access-Control-Allow-Origin", any ? "*" : origin);
    if (config.CORS_ALLOW_CREDENTIALS) h.set("Access-Control-Allow-Credentials", "true");
    h.set("Access-Control-Expose-Headers", exposeHeaders);
    // With "*" too: the answer to a request without Origin has no Access-Control-Allow-Origin.
    varyOrigin(h);
  };
}

// Nothing else on these routes sets Vary, so appending cannot repeat it.
function varyOrigin(h: Headers): void {
  h.append("Vary", "Origin");
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

let openApiCache: string | null = null;
/** The document's text, converted from the schemas once per process (tests build many apps). */
function openApiText(): string {
  openApiCache ??= JSON.stringify(openApiDocument());
  return openApiCache;
}

export function createApp(deps: AppDeps) {
  const { config, producer, metrics, logger } = deps;
  const resolveIp = clientIpResolver(config.TRUSTED_PROXIES);
  const app = new Hono({ getPath: routingPath });

  const tracing = deps.tracing ?? TRACING_OFF;
  const deliveryWarnings = throttledWarn(logger, 10_000);
  app.use(requestIds());
  app.use(observeRequests(metrics));
  if (tracing.enabled) app.use(traceRequests(tracing));
  // The one error path (server/errors.ts): every error answer is {error, errors?, request_id}.
  app.onError(errorHandler({ logger }));
  app.notFound((c) => errorResponse(c, new ApiError(404, `no route for ${c.req.method} ${c.req.path}`)));
  // A known path with a method it does not serve: 405 and the methods it does (registered after
  // the real handlers, so it only answers what they did not). HEAD is served by every GET route.
  const methodNotAllowed = (allow: string) =>
    function methodNotAllowed(c: Context): never {
      throw new ApiError(405, `${c.req.method} is not allowed on ${c.req.path}; allowed: ${allow}`, {
        headers: { Allow: allow },
      });
    };

  // Liveness: fails once the producer is in librdkafka's fatal state, which only a restart heals.
  // The probes are unauthenticated: they say what state the server is in, never Kafka's own
  // message (main.ts logged it once, where it was raised).
  app.get("/health", (c) => {
    if (producer.fatalError) return c.json({ status: "failed", reason: PRODUCER_FAILED }, 503);
    return c.json({ status: "ok" });
  });
  const auth = createAuth({ config, keyStore: deps.keyStore, metrics, logger });
  app.get("/ready", (c) => {
    if (deps.isDraining()) return c.json({ status: "draining" }, 503);
    // No credential could be verified: every request would be a 401 that is not the client's fault.
    if (!auth.trusted()) return c.json({ status: "waiting for the API keys" }, 503);
    if (producer.fatalError) return c.json({ status: "failed", reason: PRODUCER_FAILED }, 503);
    // READY_REQUIRES_KAFKA=false keeps a pod that has been connected in rotation through an outage
    // (answering 503 + Retry-After, which the edge SLI counts); a new pod still waits for its first
    // connection, or a canary would take traffic only to refuse it.
    const kafkaReady = config.READY_REQUIRES_KAFKA ? producer.connected : producer.hasConnected;
    if (!kafkaReady) return c.json({ status: "waiting for Kafka" }, 503);
    return c.json({ status: "ready" });
  });
  app.all("/health", methodNotAllowed("GET, HEAD"));
  app.all("/ready", methodNotAllowed("GET, HEAD"));

  // The API's OpenAPI document (server/openapi.ts): public like the docs, the same bytes for the
  // process's life, so built once and cacheable.
  const openApiJson = openApiText();
  app.get("/openapi.json", (c) =>
    c.body(openApiJson, 200, { "Content-Type": "application/json", "Cache-Control": "public, max-age=3600" }),
  );
  app.all("/openapi.json", methodNotAllowed("GET, HEAD"));

  // Without Bun.serve (in-process app.request() in tests) there is no server, so no peer address.
  const clientIp = (c: Context) =>
    resolveIp(c.env ? (getConnInfo(c).remote.address ?? null) : null, c.req.header("x-forwarded-for"));
  const limits = rateLimits({
    ...config.rateLimits,
    replicas: deps.replicas?.count ?? 1,
    maxBuckets: config.RATE_LIMIT_MAX_BUCKETS,
    rateLimited: metrics.rateLimited,
    logger,
    clientIp,
    logIp: (ip) => storedClientIp(ip, config.CLIENT_IP_STORAGE),
  });
  deps.replicas?.onChange(limits.setReplicas);
  const keyLimited = config.rateLimits.perKey !== null;
  const ipLimited = config.rateLimits.perIp !== null;
  // Before every authenticated route: CORS (a preflight needs no key), the failed-auth limit per
  // address, the key check, the key's limit. Only what is configured is in the chain.
  const corsMw = corsAllowlist(config);
  if (corsMw) {
    app.use("/v1/scans", corsMw);
    app.use("/v1/qr/:qr_id/stats", corsMw);
  }
  // The failed-auth limit around the route's auth (server/auth.ts): ipGuard before it, ipGate after
  // it (an address over its limit goes on only with a valid managed key or JWT); then the key's own limit.
  const authChain = (authMiddleware: MiddlewareHandler): MiddlewareHandler[] => [
    ...(ipLimited ? [limits.ipGuard] : []),
    authMiddleware,
    ...(ipLimited ? [limits.ipGate] : []),
    ...(keyLimited ? [limits.keyGuard] : []),
  ];
  // Hono's typings have no overload for a spread of handlers; each element is a MiddlewareHandler.
  const route = (method: "get" | "post") => app[method] as unknown as (path: string, ...h: MiddlewareHandler[]) => void;
  route("get")(
    "/v1/qr/:qr_id/stats",
    ...authChain(auth.require("stats:read", { qrIdParam: "qr_id" })),
    ...(keyLimited ? [limits.chargeRequest] : []),
    statsHandler({ sql: deps.sql, logger, retryAfterSeconds: config.RETRY_AFTER_SECONDS }),
  );
  app.all("/v1/qr/:qr_id/stats", methodNotAllowed("GET, HEAD"));
  const budget = bodyBudget({
    limitBytes: config.MAX_BODY_BYTES_IN_FLIGHT,
    maxBodyBytes: config.MAX_BODY_BYTES,
    retryAfterSeconds: config.RETRY_AFTER_SECONDS,
  });
  route("post")(
    "/v1/scans",
    ...authChain(auth.require("scans:write")),
    budget.middleware,
    ingestHandler({
      producer,
      metrics,
      topic: config.SCANS_TOPIC,
      partitionKey: config.KAFKA_PARTITION_KEY,
      maxBodyBytes: config.MAX_BODY_BYTES,
      maxEventsPerRequest: config.MAX_EVENTS_PER_REQUEST,
      ...config.scannedAtWindow,
      retryAfterSeconds: config.RETRY_AFTER_SECONDS,
      // What the stored event gets of the address: CLIENT_IP_STORAGE (server/client-ip.ts).
      clientIp: (c) => storedClientIp(clientIp(c), config.CLIENT_IP_STORAGE),
      ...(keyLimited ? { onEvents: limits.chargeEvents } : {}),
      tracing,
      tenantDenied: auth.tenantDenied,
      // Once per error code per 10 s: an outage would otherwise log a line per request.
      onRetriableDeliveryError: (error, c) =>
        deliveryWarnings(
          error.code,
          { err: error, ...requestLogFields(c) },
          "Kafka did not acknowledge a request's events; answered 503",
        ),
    }),
  );
  app.all("/v1/scans", methodNotAllowed("POST"));
  return app;
}
