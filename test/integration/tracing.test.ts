// Traces end to end: a real edge server and a real worker, both exporting OTLP/HTTP to a receiver
// this test runs (test/helpers/otlp-receiver.ts). For one event sent with a client traceparent,
// the receiver must get the edge's SERVER span (child of the client's span), its PRODUCER span,
// the worker's CONSUMER batch span linked to that producer span (with child spans for the
// database write and the commit), and the worker's "process" span for that send, whose PARENT is
// the producer span: one trace from the client to the row. A scan Postgres refuses is followed
// into its dead letter: a "send <dead-letter topic>" span in the same trace, the request's headers
// on the dead-letter topic and in dead_letters, and the worker's log line naming its request_id
// and trace_id.
//
// Mutations checked (each alone, then reverted):
// | mutation                                                                  | fails                                              |
// |---------------------------------------------------------------------------|----------------------------------------------------|
// | producer span's traceparent not written into the Kafka headers            | 1: "a batch span linked to the producer span"      |
// | traceRequests' parent not extracted                                       | 1: server span's parentSpanId                      |
// | batch-trace.ts: send span started under ROOT_CONTEXT (no parent)          | 1: "the worker's process span, child of …"         |
// | batch-trace.ts: deadLettering makes no span                               | 2: "the dead-letter send span"                     |
// | dead-letters.ts: the original's headers not carried (CARRIED = [])        | 2: dead-letter topic's traceparent/request_id      |
// | dead-letters.ts: no event_id header                                       | 2: dead-letter topic's event_id                    |
// | server/ingest.ts: no request_id header                                    | 2: dead-letter headers, row and log line           |
// | logDeadLetters without request_id / trace_id                              | 2: the log line                                    |
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConsumer, createDatabase, onCleanup, spawnServer, spawnWorker, workerEnv } from "../helpers/fixtures.ts";
import { consumeN, text } from "../helpers/kafka.ts";
import { SPAN_KIND, startOtlpReceiver } from "../helpers/otlp-receiver.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

const receiver = startOtlpReceiver();
afterAll(() => receiver.stop());
const received = receiver.spans;
const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: "100" };

/** A client's W3C trace: its trace id and the span id the request is sent under. */
function clientTrace() {
  const traceId = crypto.randomUUID().replaceAll("-", "");
  const spanId = crypto.randomUUID().replaceAll("-", "").slice(0, 16);
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

const findSpan = (what: string, match: (s: (typeof received)[number]) => boolean, timeoutMs = 30_000) =>
  waitFor(
    what,
    async () => received.find(match),
    (s) => s !== undefined,
    timeoutMs,
  ) as Promise<(typeof received)[number]>;

test("one event: the edge's server and producer spans, the worker's batch span linked to them with write and commit children, and a process span whose parent is the producer span", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  const server = await spawnServer({ SCANS_TOPIC: env.scansTopic, ...otel });
  spawnWorker(env, otel);
  onCleanup(() => receiver.clear());

  const client = clientTrace();
  const res = await fetch(`${server.url}/v1/scans`, {
    method: "POST",
    headers: { "content-type": "application/json", traceparent: client.traceparent },
    body: JSON.stringify([scan()]),
  });
  expect(res.status).toBe(202);

  const serverSpan = await findSpan(
    "the edge's SERVER span in the client's trace",
    (s) => s.kind === SPAN_KIND.SERVER && s.traceId === client.traceId,
  );
  expect(serverSpan).toMatchObject({
    service: "qrscan-server",
    name: "POST /v1/scans",
    parentSpanId: client.spanId,
    attributes: { "http.request.method": "POST", "http.route": "/v1/scans", "http.response.status_code": 202 },
  });
  const producerSpan = await findSpan(
    "the edge's PRODUCER span, child of its server span",
    (s) => s.kind === SPAN_KIND.PRODUCER && s.parentSpanId === serverSpan.spanId,
  );
  expect(producerSpan).toMatchObject({
    service: "qrscan-server",
    traceId: client.traceId,
    name: `send ${env.scansTopic}`,
    attributes: {
      "messaging.system": "kafka",
      "messaging.operation.type": "send",
      "messaging.destination.name": env.scansTopic,
      "messaging.batch.message_count": 1,
    },
  });

  const batchSpan = await findSpan("a batch span linked to the producer span", (s) =>
    s.links.some((l) => l.traceId === client.traceId && l.spanId === producerSpan.spanId),
  );
  expect(batchSpan).toMatchObject({
    service: "qrscan-worker",
    kind: SPAN_KIND.CONSUMER,
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
  expect(batchSpan.parentSpanId).toBeUndefined();
  expect(batchSpan.traceId).not.toBe(client.traceId);
  const children = await waitFor(
    "the batch span's write and commit child spans",
    async () =>
      received
        .filter((s) => s.parentSpanId === batchSpan.spanId && s.traceId === batchSpan.traceId)
        .map((s) => [s.name, s.kind])
        .sort(),
    (c) => c.length === 2,
    20_000,
  );
  expect(children).toEqual([
    ["commit offsets", SPAN_KIND.CLIENT],
    ["write batch", SPAN_KIND.CLIENT],
  ]);

  // The trace continues: the worker's span for this send is the producer span's child.
  const processSpan = await findSpan(
    "the worker's process span, child of the producer span",
    (s) => s.service === "qrscan-worker" && s.parentSpanId === producerSpan.spanId,
  );
  expect(processSpan).toMatchObject({
    traceId: client.traceId,
    kind: SPAN_KIND.CONSUMER,
    name: `process ${env.scansTopic}`,
    attributes: {
      "messaging.operation.type": "process",
      "messaging.destination.name": env.scansTopic,
      "messaging.consumer.group.name": env.group,
      "messaging.batch.message_count": 1,
      "qrscan.batch.id": batchSpan.attributes["qrscan.batch.id"] as number,
    },
    links: [{ traceId: batchSpan.traceId, spanId: batchSpan.spanId }],
  });
  // OTLP/HTTP with the JSON encoding, as a collector's /v1/traces accepts it.
  expect([...receiver.contentTypes]).toEqual(["application/json"]);
}, 90_000);

test("a scan Postgres refuses: its dead letter stays in the request's trace, carries its traceparent, request_id and event_id, and the worker's log line names them", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  // A constraint an operator added: the edge accepts the event, Postgres refuses it (23514).
  const markerQrId = `POISON-${crypto.randomUUID().slice(0, 8)}`;
  await db.sql.unsafe(`alter table scan_events add constraint reject_marker check (qr_id <> '${markerQrId}')`);
  const server = await spawnServer({ SCANS_TOPIC: env.scansTopic, ...otel });
  const logFile = join(mkdtempSync(join(tmpdir(), "tracing-test-")), "worker.log");
  spawnWorker(env, otel, { output: { file: logFile } });
  onCleanup(() => receiver.clear());

  const client = clientTrace();
  const marker = scan({ qr_id: markerQrId });
  const res = await fetch(`${server.url}/v1/scans`, {
    method: "POST",
    headers: { "content-type": "application/json", traceparent: client.traceparent },
    body: JSON.stringify([scan(), marker]),
  });
  expect(res.status).toBe(202);
  const requestId = ((await res.json()) as { request_id: string }).request_id;

  const producerSpan = await findSpan(
    "the edge's PRODUCER span in the client's trace",
    (s) => s.kind === SPAN_KIND.PRODUCER && s.traceId === client.traceId,
  );
  const processSpan = await findSpan(
    "the worker's process span, child of the producer span",
    (s) => s.service === "qrscan-worker" && s.parentSpanId === producerSpan.spanId,
  );
  expect(processSpan.attributes["messaging.batch.message_count"]).toBe(2);
  const deadLetterSpan = await findSpan("the dead-letter send span", (s) => s.parentSpanId === processSpan.spanId);
  expect(deadLetterSpan).toMatchObject({
    service: "qrscan-worker",
    traceId: client.traceId,
    kind: SPAN_KIND.PRODUCER,
    name: `send ${env.deadLetterTopic}`,
    attributes: {
      "messaging.operation.type": "send",
      "messaging.destination.name": env.deadLetterTopic,
      "messaging.batch.message_count": 1,
    },
  });

  // The dead-letter topic: the original's headers, as the edge wrote them.
  const consumer = createConsumer({ "auto.offset.reset": "earliest" });
  consumer.subscribe([env.deadLetterTopic]);
  const [letter] = await consumeN(consumer, 1);
  expect(text(letter?.headers?.traceparent)).toBe(`00-${client.traceId}-${producerSpan.spanId}-01`);
  expect(text(letter?.headers?.request_id)).toBe(requestId);
  expect(text(letter?.headers?.event_id)).toBe(marker.event_id);

  // dead_letters keeps them (migration 0010).
  const rows = await waitFor(
    "the dead letter stored",
    () => db.sql<{ event_id: string; request_id: string; traceparent: string }[]>`
      select event_id, request_id, traceparent from dead_letters`,
    (r) => r.length > 0,
    30_000,
  );
  expect([...rows]).toEqual([
    {
      event_id: marker.event_id,
      request_id: requestId,
      traceparent: `00-${client.traceId}-${producerSpan.spanId}-01`,
    },
  ]);

  // The worker's line about it names the request and its trace.
  const line = await waitFor(
    "the worker's dead-letter log line",
    async () =>
      readFileSync(logFile, "utf8")
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === "dead-lettered a message that can never be stored"),
    (l) => l !== undefined,
    10_000,
  );
  expect(line).toMatchObject({
    level: "warn",
    service: "worker",
    request_id: requestId,
    trace_id: client.traceId,
    event_id: marker.event_id,
    source: `${env.scansTopic}/0@1`,
  });
  expect(String(line?.error)).toContain('violates check constraint "reject_marker"');
}, 90_000);
