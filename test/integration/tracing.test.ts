// Traces end to end: a real edge server and a real worker, both exporting OTLP/HTTP to a receiver
// this test runs. For one event sent with a client traceparent, the receiver must get the edge's
// SERVER span (child of the client's span), its PRODUCER span, and the worker's CONSUMER batch
// span linked to that producer span, with child spans for the database write and the commit.
//
// Mutations checked (each alone, then reverted): the producer span's traceparent not written into
// the Kafka headers → the batch span has no link (waits out "a batch span linked to the producer
// span"); traceRequests' parent not extracted → the server span's parent is not the client's span.
import { afterAll, expect, test } from "bun:test";
import { createDatabase, onCleanup, spawnServer, spawnWorker, workerEnv } from "../helpers/fixtures.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

/** One span as the OTLP/HTTP JSON encoding carries it (ids in hex), with its resource's service. */
interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  links: { traceId: string; spanId: string }[];
}

type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
const anyValue = (v: AnyValue) =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.boolValue ?? v.doubleValue ?? ""));
const attributesOf = (kvs: { key: string; value: AnyValue }[] = []) =>
  Object.fromEntries(kvs.map((kv) => [kv.key, anyValue(kv.value)]));

const SPAN_KIND = { SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 };

const received: ReceivedSpan[] = [];
const contentTypes = new Set<string>();
const receiver = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    if (new URL(req.url).pathname !== "/v1/traces") return new Response("not found", { status: 404 });
    contentTypes.add(req.headers.get("content-type") ?? "");
    // biome-ignore lint/suspicious/noExplicitAny: the OTLP JSON document, read field by field below
    const body = (await req.json()) as any;
    for (const rs of body.resourceSpans ?? []) {
      const service = String(attributesOf(rs.resource?.attributes)["service.name"]);
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          received.push({
            service,
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId || undefined,
            name: s.name,
            kind: s.kind,
            attributes: attributesOf(s.attributes),
            links: (s.links ?? []).map((l: { traceId: string; spanId: string }) => ({
              traceId: l.traceId,
              spanId: l.spanId,
            })),
          });
        }
      }
    }
    return Response.json({});
  },
});
afterAll(() => receiver.stop(true));

test("one event: the edge's server and producer spans, and the worker's batch span linked to them with write and commit children", async () => {
  const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}`, OTEL_BSP_SCHEDULE_DELAY: "100" };
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  const server = await spawnServer({ SCANS_TOPIC: env.scansTopic, ...otel });
  spawnWorker(env, otel);
  onCleanup(() => {
    received.length = 0;
  });

  const clientTrace = crypto.randomUUID().replaceAll("-", "");
  const clientSpan = clientTrace.slice(0, 16);
  const event = scan();
  const res = await fetch(`${server.url}/v1/scans`, {
    method: "POST",
    headers: { "content-type": "application/json", traceparent: `00-${clientTrace}-${clientSpan}-01` },
    body: JSON.stringify([event]),
  });
  expect(res.status).toBe(202);

  const serverSpan = await waitFor(
    "the edge's SERVER span in the client's trace",
    async () => received.find((s) => s.kind === SPAN_KIND.SERVER && s.traceId === clientTrace),
    (s) => s !== undefined,
    20_000,
  );
  expect(serverSpan).toMatchObject({
    service: "qrscan-server",
    name: "POST /v1/scans",
    parentSpanId: clientSpan,
    attributes: { "http.request.method": "POST", "http.route": "/v1/scans", "http.response.status_code": 202 },
  });
  const producerSpan = await waitFor(
    "the edge's PRODUCER span, child of its server span",
    async () => received.find((s) => s.kind === SPAN_KIND.PRODUCER && s.parentSpanId === serverSpan?.spanId),
    (s) => s !== undefined,
    20_000,
  );
  expect(producerSpan).toMatchObject({
    service: "qrscan-server",
    traceId: clientTrace,
    name: `send ${env.scansTopic}`,
    attributes: {
      "messaging.system": "kafka",
      "messaging.operation.type": "send",
      "messaging.destination.name": env.scansTopic,
      "messaging.batch.message_count": 1,
    },
  });

  const batchSpan = await waitFor(
    "a batch span linked to the producer span",
    async () =>
      received.find(
        (s) =>
          s.kind === SPAN_KIND.CONSUMER &&
          s.links.some((l) => l.traceId === clientTrace && l.spanId === producerSpan?.spanId),
      ),
    (s) => s !== undefined,
    30_000,
  );
  expect(batchSpan).toMatchObject({
    service: "qrscan-worker",
    name: `process ${env.scansTopic}`,
    attributes: {
      "messaging.system": "kafka",
      "messaging.operation.type": "process",
      "messaging.destination.name": env.scansTopic,
      "messaging.consumer.group.name": env.group,
      "messaging.batch.message_count": 1,
      "qrscan.rows.inserted": 1,
    },
  });
  // Its own trace (a batch carries many requests' events), so no parent.
  expect(batchSpan?.parentSpanId).toBeUndefined();
  const children = await waitFor(
    "the batch span's write and commit child spans",
    async () =>
      received
        .filter((s) => s.parentSpanId === batchSpan?.spanId && s.traceId === batchSpan?.traceId)
        .map((s) => [s.name, s.kind])
        .sort(),
    (c) => c.length === 2,
    20_000,
  );
  expect(children).toEqual([
    ["commit offsets", SPAN_KIND.CLIENT],
    ["write batch", SPAN_KIND.CLIENT],
  ]);
  // OTLP/HTTP with the JSON encoding, as a collector's /v1/traces accepts it.
  expect([...contentTypes]).toEqual(["application/json"]);
}, 90_000);
