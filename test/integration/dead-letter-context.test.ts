// A message keeps what ties it to its request, with tracing off, through a real worker, Kafka and
// Postgres: a poison message's dead letter carries the original's traceparent, request_id and
// event_id headers (event_id from the payload when the record had no header), dead_letters stores
// them, and the worker's log lines about a dead letter and about a failed batch name the request_id
// and trace_id. (With tracing on, through the edge: test/integration/tracing.test.ts.)
//
// Mutations checked (each alone, then reverted):
// | mutation                                                       | fails                                    |
// |----------------------------------------------------------------|------------------------------------------|
// | dead-letters.ts: the original's headers not carried (CARRIED=[])| 1: the dead-letter topic's headers       |
// | dead-letters.ts: no event_id header                             | 1: the dead-letter topic's headers       |
// | dead-letters.ts: the insert leaves out the new columns          | 1: dead_letters' columns                 |
// | main.ts: the fatal line without request_ids / trace_ids         | 2: the failed batch's line               |
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ScanEvent } from "../../shared/event.ts";
import { createConsumer, createDatabase, createProducer, spawnWorker, workerEnv } from "../helpers/fixtures.ts";
import { consumeN, text } from "../helpers/kafka.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { record } from "../helpers/worker.ts";

await ensureStack();

const hex = (n: number) =>
  Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, "0")).join("");

/** The worker's JSON log lines so far. */
const logLines = (file: string) =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

function workerWithLog(env: Awaited<ReturnType<typeof workerEnv>>) {
  const file = join(mkdtempSync(join(tmpdir(), "dead-letter-context-")), "worker.log");
  return { ...spawnWorker(env, {}, { output: { file } }), file };
}

test("a poison message's dead letter carries its traceparent, request_id and event_id, in the topic and in dead_letters, and its log line names them", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  const producer = createProducer();
  // Headers as the edge writes them; an unsampled trace is still the request's trace.
  const traceId = hex(16);
  const traceparent = `00-${traceId}-${hex(8)}-00`;
  const requestId = crypto.randomUUID();
  const eventId = crypto.randomUUID();
  const withoutHeader = crypto.randomUUID();
  await producer.send([
    {
      topic: env.scansTopic,
      value: "{not json",
      headers: { traceparent, request_id: requestId, event_id: eventId, schema_version: "1" },
    },
    // Produced around the edge, no headers: the payload's event_id is carried.
    { topic: env.scansTopic, value: JSON.stringify({ event_id: withoutHeader, qr_id: "" }) },
    { topic: env.scansTopic, value: record().value },
  ]);
  const worker = workerWithLog(env);

  const consumer = createConsumer({ "auto.offset.reset": "earliest" });
  consumer.subscribe([env.deadLetterTopic]);
  const letters = (await consumeN(consumer, 2)).sort((a, b) =>
    String(text(a.headers?.dlq_source_offset)).localeCompare(String(text(b.headers?.dlq_source_offset))),
  );
  expect(
    letters.map((m) => ({
      offset: text(m.headers?.dlq_source_offset),
      traceparent: text(m.headers?.traceparent),
      request_id: text(m.headers?.request_id),
      event_id: text(m.headers?.event_id),
    })),
  ).toEqual([
    { offset: "0", traceparent, request_id: requestId, event_id: eventId },
    { offset: "1", traceparent: null, request_id: null, event_id: withoutHeader },
  ]);

  const rows = await waitFor(
    "both dead letters stored",
    () => db.sql<{ source_offset: string; event_id: string; request_id: string | null; traceparent: string | null }[]>`
      select source_offset, event_id, request_id, traceparent from dead_letters order by source_offset`,
    (r) => r.length === 2,
    30_000,
  );
  expect([...rows]).toEqual([
    { source_offset: "0", event_id: eventId, request_id: requestId, traceparent },
    { source_offset: "1", event_id: withoutHeader, request_id: null, traceparent: null },
  ]);

  const line = await waitFor(
    "the dead letter's log line",
    async () => logLines(worker.file).find((l) => l.source === `${env.scansTopic}/0@0`),
    (l) => l !== undefined,
    10_000,
  );
  expect(line).toMatchObject({
    level: "warn",
    msg: "dead-lettered a message that can never be stored",
    request_id: requestId,
    trace_id: traceId,
    event_id: eventId,
  });
}, 60_000);

test("a batch the database fails for good: the worker's one fatal line names the request_ids and trace_ids of its messages", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  const producer = createProducer();
  // Neither a data error (no dead letter) nor transient (no retry): the batch fails, the worker exits.
  const markerQrId = `FATAL-${hex(4)}`;
  await db.sql.unsafe(`
    create function refuse_marker() returns trigger language plpgsql as $$
    begin
      if new.qr_id = '${markerQrId}' then raise exception 'marker refused' using errcode = 'P0001'; end if;
      return new;
    end $$`);
  await db.sql.unsafe(
    "create trigger refuse_marker before insert on scan_events for each row execute function refuse_marker()",
  );
  const traceId = hex(16);
  const requestId = crypto.randomUUID();
  const event = scan({ qr_id: markerQrId });
  await producer.send([
    {
      topic: env.scansTopic,
      value: record(event as ScanEvent).value,
      headers: { traceparent: `00-${traceId}-${hex(8)}-01`, request_id: requestId, event_id: event.event_id },
    },
  ]);
  const worker = workerWithLog(env);
  expect(
    await waitFor(
      "the worker to exit on the fatal error",
      async () => worker.proc.exitCode,
      (code) => code !== null,
      30_000,
    ),
  ).toBe(1);
  const fatal = logLines(worker.file).find((l) => l.level === "fatal");
  expect(fatal).toMatchObject({
    msg: "worker failed; exiting for the supervisor to restart it",
    request_ids: [requestId],
    trace_ids: [traceId],
  });
}, 60_000);
