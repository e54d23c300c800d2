// The edge's one error path (server/errors.ts) and its request metrics middleware
// (server/metrics.ts observeRequests), each on a bare Hono app.
import { describe, expect, test } from "bun:test";
import { Writable } from "node:stream";
import { KafkaError } from "bun-rdkafka";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { requestId } from "hono/request-id";
import pino from "pino";
import { Registry } from "prom-client";
import { ApiError, errorHandler } from "../../server/errors.ts";
import { createServerMetrics, observeRequests } from "../../server/metrics.ts";
import { throttledWarn } from "../../shared/logger.ts";
import { parsePrometheusText } from "../../shared/prometheus-text.ts";

function appWithLog() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  const app = new Hono();
  app.use(requestId());
  app.onError(errorHandler({ logger: pino({ level: "info" }, stream) }));
  return { app, lines };
}

const answer = async (res: Response) => ({
  status: res.status,
  body: (await res.json()) as Record<string, unknown>,
  id: res.headers.get("x-request-id"),
});

describe("errorHandler", () => {
  test("an ApiError is the one body {error, errors?, request_id} with its status and headers, not logged", async () => {
    const { app, lines } = appWithLog();
    app.get("/busy", () => {
      throw new ApiError(503, "busy; retry later", { headers: { "Retry-After": "2" } });
    });
    app.get("/fields", () => {
      throw new ApiError(400, "invalid query", { errors: [{ path: "interval", message: "must be minute" }] });
    });
    const busy = await app.request("/busy");
    expect(busy.headers.get("retry-after")).toBe("2");
    const b = await answer(busy);
    expect(b).toEqual({ status: 503, body: { error: "busy; retry later", request_id: b.id }, id: b.id });
    const f = await answer(await app.request("/fields"));
    expect(f.body).toEqual({
      error: "invalid query",
      errors: [{ path: "interval", message: "must be minute" }],
      request_id: f.id,
    });
    expect(f.status).toBe(400);
    expect(lines).toEqual([]);
  });

  test("an unexpected error is a 500 without its details, logged once with the request id", async () => {
    const { app, lines } = appWithLog();
    app.get("/bug", () => {
      throw new TypeError("secret internals");
    });
    const trace = "0af7651916cd43dd8448eb211c80319c";
    const a = await answer(await app.request("/bug", { headers: { traceparent: `00-${trace}-b7ad6b7169203331-01` } }));
    expect(a).toEqual({ status: 500, body: { error: "internal error", request_id: a.id }, id: a.id });
    expect(lines).toHaveLength(1);
    // With tracing off, the trace id is the client's (its traceparent), so logs still correlate.
    expect(lines[0]).toMatchObject({
      msg: "request failed",
      request_id: a.id,
      trace_id: trace,
      path: "/bug",
      level: 50,
    });
    expect((lines[0]?.err as { message: string }).message).toBe("secret internals");
  });

  test("a non-retriable KafkaError is a 500 that says so; hono's own 4xx keeps its status, unlogged", async () => {
    const { app, lines } = appWithLog();
    app.get("/kafka", () => {
      throw new KafkaError("UNKNOWN_TOPIC", "no such topic");
    });
    app.get("/hono", () => {
      throw new HTTPException(413, { message: "too large" });
    });
    const k = await answer(await app.request("/kafka"));
    expect(k.status).toBe(500);
    expect(k.body.error).toBe(
      "events not stored: Kafka refused them (UNKNOWN_TOPIC: no such topic); retrying will not help until the server is fixed",
    );
    const h = await answer(await app.request("/hono"));
    expect(h).toEqual({ status: 413, body: { error: "too large", request_id: h.id }, id: h.id });
    expect(lines).toHaveLength(1);
  });
});

describe("observeRequests", () => {
  test("counts by matched route and status (errors included), unmatched paths as one label, and times by route", async () => {
    const registry = new Registry();
    const metrics = createServerMetrics(registry, () => null);
    const { app } = appWithLog();
    app.use(observeRequests(metrics));
    app.get("/v1/qr/:qr_id/stats", (c) => c.json({}));
    app.get("/fail", () => {
      throw new ApiError(503, "later");
    });
    await app.request("/v1/qr/A/stats");
    await app.request("/v1/qr/B/stats");
    await app.request("/fail");
    await app.request("/nope-1");
    await app.request("/nope-2");
    const samples = parsePrometheusText(await registry.metrics());
    const count = (route: string, status: string) =>
      samples.find((s) => s.name === "http_requests_total" && s.labels.route === route && s.labels.status === status)
        ?.value;
    expect(count("/v1/qr/:qr_id/stats", "200")).toBe(2);
    expect(count("/fail", "503")).toBe(1);
    expect(count("unmatched", "404")).toBe(2);
    const timed = samples.find(
      (s) => s.name === "http_request_duration_seconds_count" && s.labels.route === "/v1/qr/:qr_id/stats",
    );
    expect(timed?.value).toBe(2);
  });
});

describe("throttledWarn", () => {
  test("one line per key per window; the next line counts what was left out", () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, { write: (l: string) => lines.push(JSON.parse(l)) });
    let t = 0;
    const warn = throttledWarn(logger, 10_000, () => t);
    for (let i = 0; i < 5; i++) warn("TIMEOUT", { n: i }, "not acknowledged");
    warn("BROKER_UNAVAILABLE", { n: 9 }, "not acknowledged");
    t = 10_000;
    warn("TIMEOUT", { n: 5 }, "not acknowledged");
    expect(lines.map(({ n, suppressed }) => ({ n, suppressed }))).toEqual([
      { n: 0, suppressed: undefined },
      { n: 9, suppressed: undefined },
      { n: 5, suppressed: 4 },
    ]);
  });
});
