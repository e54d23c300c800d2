// Edge hardening of the in-process app against the real broker: charset and UTF-8, 405 with Allow,
// the request-body budget, and how producer errors map to answers (retriable 503, anything else
// 500 logged exactly once; librdkafka's fatal state fails /health).
import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import pino from "pino";
import { PRODUCER_FAILED } from "../../server/app.ts";
import { createAdmin, createConsumer, createTestApp, createTopic, onCleanup, uniqueName } from "../helpers/fixtures.ts";
import { consumeN, text } from "../helpers/kafka.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

interface Answer {
  accepted?: number;
  error?: string;
  request_id?: string;
  status?: string;
  reason?: string;
}
const json = async (res: Response) => (await res.json()) as Answer;
type LogLine = { level: number; msg: string; request_id?: string; err?: { message: string } };

/** The app as createTestApp builds it, with a logger whose lines the test can read. */
async function appWithLog(env: Record<string, string>, topic?: string) {
  const logs: LogLine[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => logs.push(JSON.parse(line)) });
  return { ...(await createTestApp(env, { logger, topic: topic ?? (await createTopic(1)) })), logs };
}

describe("Content-Type charset and UTF-8", () => {
  test("a charset other than UTF-8 is a 415 naming it; utf-8 in any case, quoted or not, is accepted", async () => {
    const { post } = await createTestApp();
    for (const type of [
      "application/json; charset=latin1",
      "application/json;charset=ISO-8859-1",
      'application/x-ndjson; charset="utf-16"',
      "application/json; format=x; charset=windows-1252",
    ]) {
      const res = await post(JSON.stringify(scan()), { "content-type": type });
      expect(res.status).toBe(415);
      const charset = /charset="?([^";]+)/.exec(type)?.[1] as string;
      expect((await json(res)).error).toBe(
        `unsupported charset "${charset}": the body must be UTF-8 (send charset=utf-8, or no charset parameter)`,
      );
    }
    for (const type of [
      "application/json; charset=utf-8",
      "application/json;charset=UTF-8",
      'application/json; charset="utf-8"',
      'application/json; charset="UtF-8"',
      "application/json; format=x; charset=utf-8",
      "application/x-ndjson; charset=utf-8",
    ]) {
      const res = await post(JSON.stringify(scan()), { "content-type": type });
      expect(res.status).toBe(202);
    }
  });

  test("invalid UTF-8 is a 400 naming the first bad byte, also inside gzip; valid UTF-8 is stored as sent", async () => {
    const { post, topic } = await createTestApp();
    const prefix = Buffer.from(`[{"event_id":"${crypto.randomUUID()}","qr_id":"QR-1","scanner_id":"`);
    const suffix = Buffer.from(`","scanned_at":"${new Date().toISOString()}"}]`);
    const cases: [string, number[]][] = [
      ["a byte that never occurs in UTF-8", [0x61, 0xff]],
      ["a truncated sequence", [0xe2, 0x82]],
      ["an overlong encoding", [0xc0, 0xaf]],
      ["an encoded surrogate", [0xed, 0xa0, 0x80]],
      ["Latin-1 text", [0x5a, 0xfc, 0x72, 0x69, 0x63, 0x68]], // "Zürich" in ISO-8859-1
    ];
    for (const [what, bytes] of cases) {
      const body = Buffer.concat([prefix, Buffer.from(bytes), suffix]);
      const offset = prefix.length + bytes.findIndex((b) => b >= 0x80);
      const expected = `the body is not valid UTF-8 (first invalid byte at offset ${offset})`;
      const res = await post(new Uint8Array(body));
      expect({ what, status: res.status, error: (await json(res)).error }).toEqual({
        what,
        status: 400,
        error: expected,
      });
      const gz = await post(gzipSync(body), { "content-encoding": "gzip" });
      expect({ what, status: gz.status, error: (await json(gz)).error }).toEqual({
        what,
        status: 400,
        error: expected,
      });
    }
    const event = scan({ scanner_id: "Zürich-🙂-東京" });
    const ok = await post(new Uint8Array(Buffer.from(JSON.stringify([event]))));
    expect(ok.status).toBe(202);
    const consumer = createConsumer();
    consumer.subscribe([topic]);
    const [message] = await consumeN(consumer, 1);
    expect((JSON.parse(text(message?.value) as string) as { scanner_id: string }).scanner_id).toBe("Zürich-🙂-東京");
  });
});

describe("405 for a known path with a wrong method", () => {
  test("405 with Allow and a JSON body, before authentication; unknown paths stay 404", async () => {
    const { app } = await createTestApp();
    const cases: [string, string, string][] = [
      ["GET", "/v1/scans", "POST"],
      ["PUT", "/v1/scans", "POST"],
      ["DELETE", "/v1/scans", "POST"],
      ["PATCH", "/v1/scans", "POST"],
      ["OPTIONS", "/v1/scans", "POST"],
      ["POST", "/v1/qr/gate-7/stats", "GET, HEAD"],
      ["PUT", "/v1/qr/gate-7/stats", "GET, HEAD"],
      ["DELETE", "/v1/qr/gate-7/stats", "GET, HEAD"],
      ["POST", "/health", "GET, HEAD"],
      ["DELETE", "/ready", "GET, HEAD"],
    ];
    for (const [method, path, allow] of cases) {
      const res = await app.request(path, { method }); // no API key: 405 does not depend on it
      expect({ method, path, status: res.status, allow: res.headers.get("allow") }).toEqual({
        method,
        path,
        status: 405,
        allow,
      });
      expect(res.headers.get("content-type")).toStartWith("application/json");
      expect((await json(res)).error).toBe(`${method} is not allowed on ${path}; allowed: ${allow}`);
    }
    for (const [method, path] of [
      ["GET", "/nope"],
      ["POST", "/v1/scan"],
      ["GET", "/v1/scans/extra"],
      ["POST", "/v1/qr/gate-7"],
    ] as const) {
      const res = await app.request(path, { method });
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 404 });
      expect((await json(res)).error).toBe(`no route for ${method} ${path}`);
    }
    // The allowed methods still work: HEAD is served by GET routes.
    expect((await app.request("/health", { method: "HEAD" })).status).toBe(200);
  });
});

describe("request-body budget", () => {
  test("a body being received holds the budget: others get 503 + Retry-After until it is answered, even with an error", async () => {
    const { app, post } = await createTestApp({ MAX_BODY_BYTES: "65536", MAX_BODY_BYTES_IN_FLIGHT: "65536" });
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    // A chunked upload (no Content-Length) that stalls after its first bytes: it reserves MAX_BODY_BYTES.
    const slow = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("[{"));
        gate.then(() => {
          controller.enqueue(new TextEncoder().encode("malformed"));
          controller.close();
        });
      },
    });
    const pending = post(slow);

    const refused = await post(JSON.stringify(scan()), { "content-length": "100" });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("2");
    expect(refused.headers.get("content-type")).toStartWith("application/json");
    expect((await json(refused)).error).toBe(
      "the server is already receiving 65536 bytes of request bodies (limit 65536); retry later",
    );
    // Authentication comes first: a request without a valid key is not counted, and gets its 401.
    expect((await post(JSON.stringify(scan()), { authorization: "Bearer wrong" })).status).toBe(401);
    // Routes that read no body are not limited.
    expect((await app.request("/health")).status).toBe(200);

    release();
    const first = await pending;
    expect(first.status).toBe(400);
    expect((await json(first)).error).toMatch(/malformed JSON/);
    // Released although that request failed: the next one is admitted.
    expect((await post(JSON.stringify(scan()))).status).toBe(202);
    expect((await post(JSON.stringify(scan()), { "content-length": "65536" })).status).toBe(202);
  });
});

describe("producer errors", () => {
  test("retriable (QUEUE_FULL): 503 + Retry-After, logged once as a warning", async () => {
    const { post, logs } = await appWithLog({ KAFKA_OPT_QUEUE_BUFFERING_MAX_MESSAGES: "10", KAFKA_LINGER_MS: "500" });
    const res = await post(JSON.stringify(Array.from({ length: 50 }, () => scan())));
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("2");
    expect((await json(res)).error).toBe("events not stored (QUEUE_FULL); retry the whole request");
    expect(logs.map((l) => [l.level, l.msg])).toEqual([
      [40, "Kafka did not acknowledge a request's events; answered 503"],
    ]);
  });

  test("non-retriable (UNKNOWN_TOPIC): 500 with the request id, logged exactly once", async () => {
    // The broker does not create topics on demand (auto.create.topics.enable=false).
    const { post, logs } = await appWithLog(
      { KAFKA_OPT_TOPIC_METADATA_PROPAGATION_MAX_MS: "10", KAFKA_DELIVERY_TIMEOUT_MS: "5000" },
      uniqueName("no-such-topic"),
    );
    const res = await post(JSON.stringify(scan()));
    expect(res.status).toBe(500);
    expect(res.headers.get("retry-after")).toBeNull();
    const body = await json(res);
    expect(body.request_id).toBe(res.headers.get("x-request-id") as string);
    expect(body.error).toStartWith("events not stored: Kafka refused them (UNKNOWN_TOPIC: ");
    expect(body.error).toEndWith("); retrying will not help until the server is fixed");
    expect(logs.map((l) => [l.level, l.msg, l.request_id])).toEqual([[50, "request failed", body.request_id]]);
  }, 30_000);

  test("librdkafka's fatal state (a real one): the request is a 500, /health and /ready fail without Kafka's message, later requests are 500 without a log line", async () => {
    // enable.gapless.guarantee turns a permanently failed batch into a fatal idempotent-producer
    // error; a topic whose max.message.bytes is below one event makes the batch fail.
    const topic = uniqueName("small-messages");
    const admin = createAdmin();
    await admin.createTopics([{ name: topic, partitions: 1, config: { "max.message.bytes": "1000" } }], {
      ignoreExisting: false,
    });
    onCleanup(() => admin.deleteTopics([topic]));
    const { app, post, logs, producer } = await appWithLog(
      { KAFKA_OPT_ENABLE_GAPLESS_GUARANTEE: "true", KAFKA_COMPRESSION: "none" },
      topic,
    );
    expect((await app.request("/health")).status).toBe(200);
    const big = scan({ user_agent: "u".repeat(512), attributes: { a: "x".repeat(1000) } });
    const res = await post(JSON.stringify(big));
    expect(res.status).toBe(500);
    const first = await json(res);
    expect(first.error).toContain("MSG_SIZE_TOO_LARGE");

    // The fatal error event is polled by the producer shortly after the delivery report.
    const deadline = Date.now() + 10_000;
    while (!producer.fatalError && Date.now() < deadline) await Bun.sleep(20);
    expect(producer.fatalError?.code).toBe("FATAL");
    const health = await app.request("/health");
    expect(health.status).toBe(503);
    expect(producer.fatalError?.message).toContain("gap-less");
    // The probes are unauthenticated: they name the state, never librdkafka's own message.
    const healthText = await health.text();
    expect(JSON.parse(healthText)).toEqual({ status: "failed", reason: PRODUCER_FAILED });
    expect(healthText).not.toContain("gap-less");
    const ready = await app.request("/ready");
    expect(ready.status).toBe(503);
    expect(await json(ready)).toEqual({ status: "failed", reason: PRODUCER_FAILED });

    const after = await post(JSON.stringify(scan()));
    expect(after.status).toBe(500);
    const body = await json(after);
    expect(body.request_id).toBe(after.headers.get("x-request-id") as string);
    expect(body.error).toBe(
      `events not stored: the Kafka producer failed permanently (${producer.fatalError?.message}); this server must be restarted`,
    );
    // One line: the first request's own failure. The fatal state was logged once where it was
    // raised (main.ts's producer onError), so the requests it refuses add none.
    expect(logs.map((l) => [l.level, l.msg, l.request_id])).toEqual([[50, "request failed", first.request_id]]);
  }, 30_000);
});
