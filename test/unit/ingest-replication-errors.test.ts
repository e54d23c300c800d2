// What the edge answers when a replicated cluster cannot take a write: too few in-sync replicas
// (NOT_ENOUGH_REPLICAS, or _AFTER_APPEND when the leader wrote but could not replicate) and the
// timeouts of a broker or a quorum that is gone. Each is a retriable KafkaError (errorFromCode), and
// ingestHandler answers 503 + Retry-After, never 202 and never 500. The producer is a fake whose
// send fails with the error librdkafka's delivery report would carry; the rest is the real handler.
import { describe, expect, test } from "bun:test";
import { ErrorCode, type KafkaProducer, errorFromCode } from "bun-rdkafka";
import { Hono } from "hono";
import { requestId } from "hono/request-id";
import pino from "pino";
import { errorHandler } from "../../server/errors.ts";
import { ingestHandler } from "../../server/ingest.ts";
import { createServerMetrics } from "../../server/metrics.ts";
import { createRegistry } from "../../shared/metrics.ts";

const CODES = {
  NOT_ENOUGH_REPLICAS: ErrorCode.NOT_ENOUGH_REPLICAS,
  NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
  REQUEST_TIMED_OUT: ErrorCode.REQUEST_TIMED_OUT,
  _MSG_TIMED_OUT: ErrorCode._MSG_TIMED_OUT,
  _TIMED_OUT: ErrorCode._TIMED_OUT,
} as const;

function edge(failWith: number) {
  const producer = {
    fatalError: null,
    connected: true,
    send: async () => {
      throw errorFromCode(failWith, `delivery failed: code ${failWith}`);
    },
  } as unknown as KafkaProducer;
  const app = new Hono();
  app.use(requestId());
  app.onError(errorHandler({ logger: pino({ level: "silent" }) }));
  app.post(
    "/v1/scans",
    ingestHandler({
      producer,
      metrics: createServerMetrics(createRegistry("ingest-test"), () => producer),
      topic: "scans",
      maxBodyBytes: 1 << 20,
      maxEventsPerRequest: 100,
      maxAgeMs: 3_600_000,
      maxFutureMs: 300_000,
      maxClockSkewMs: 86_400_000,
      retryAfterSeconds: 2,
      clientIp: () => null,
      // No principal here (no auth middleware): never called.
      tenantDenied: () => new Error("no tenant in this test"),
    }),
  );
  return app;
}

describe("a write the replicated cluster refuses or never acknowledges", () => {
  for (const [name, code] of Object.entries(CODES)) {
    test(`${name}: a retriable KafkaError, answered 503 + Retry-After`, async () => {
      const error = errorFromCode(code, name);
      expect(error.retriable).toBe(true);
      const res = await edge(code).request("/v1/scans", {
        method: "POST",
        body: JSON.stringify({ event_id: crypto.randomUUID(), qr_id: "QR-1", scanned_at: new Date().toISOString() }),
        headers: { "content-type": "application/json" },
      });
      const body = (await res.json()) as { error: string };
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("2");
      expect(body.error).toContain("retry");
    });
  }
});
