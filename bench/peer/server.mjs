import { KafkaJS } from "@confluentinc/kafka-javascript";
// Bench peer: the edge contract of server/ (POST /v1/scans: one event, a JSON array or NDJSON;
// validated with the shared schema; 202 only after Kafka acknowledged every accepted event) on
// Node.js 20 with @hono/node-server and @confluentinc/kafka-javascript, the client the product's
// original design named. The schema is shared/event.ts bundled by bench/peer.ts (dist/event.mjs).
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import * as schema from "./dist/event.mjs";

const { Kafka, CompressionTypes } = KafkaJS;
const PORT = Number(process.env.PORT ?? 8081);
const TOPIC = process.env.SCANS_TOPIC ?? "scans";
const MAX_AGE_MS = 7 * 24 * 3_600_000;
const MAX_FUTURE_MS = 5 * 60_000;

const producer = new Kafka({ kafkaJS: { brokers: [process.env.KAFKA_BROKERS ?? "127.0.0.1:19092"] } }).producer({
  kafkaJS: { idempotent: true, acks: -1, compression: CompressionTypes.LZ4 },
  // Same producer tuning as our server: small linger, message timeout 10 s.
  "linger.ms": 2,
  "message.timeout.ms": 10_000,
});
await producer.connect();

const app = new Hono();
app.get("/ready", (c) => c.json({ status: "ready" }));
app.post("/v1/scans", async (c) => {
  const type = (c.req.header("content-type") ?? "").split(";")[0].trim();
  const text = await c.req.text();
  let raw;
  try {
    if (type === "application/x-ndjson")
      raw = text
        .split("\n")
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l));
    else if (type === "application/json") {
      const body = JSON.parse(text);
      raw = Array.isArray(body) ? body : [body];
    } else return c.json({ error: "unsupported Content-Type" }, 415);
  } catch (e) {
    return c.json({ error: `malformed JSON: ${e.message}` }, 400);
  }
  const now = Date.now();
  const receivedAt = new Date(now).toISOString();
  const messages = [];
  const rejected = [];
  raw.forEach((event, index) => {
    const r = schema.validateEvent(event);
    const window = r.success ? schema.scannedAtWindowError(r.output.scanned_at, now, MAX_AGE_MS, MAX_FUTURE_MS) : null;
    if (!r.success || window) {
      rejected.push({
        index,
        errors: r.success ? [{ path: "scanned_at", message: window }] : schema.fieldErrors(r.issues),
      });
      return;
    }
    messages.push({
      key: r.output.qr_id,
      value: JSON.stringify(schema.toScanRecord(r.output, receivedAt, null)),
      headers: { event_id: r.output.event_id, schema_version: String(schema.SCHEMA_VERSION) },
    });
  });
  if (messages.length === 0) return c.json({ accepted: 0, rejected }, 400);
  try {
    await producer.send({ topic: TOPIC, messages });
  } catch (e) {
    return c.json({ error: `events not stored (${e.code ?? e.message})` }, 503, { "Retry-After": "2" });
  }
  return c.json({ accepted: messages.length, rejected }, 202);
});

const server = serve({ fetch: app.fetch, port: PORT, hostname: "127.0.0.1" });
const stop = async () => {
  server.close();
  await producer.disconnect();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
