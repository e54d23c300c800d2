// What ties a message to its request (worker/message-context.ts) and what a dead letter carries of
// it (worker/dead-letters.ts), on hand-made messages: the headers copied as they were, the ids
// checked before they reach a column or a log line, and the caps on lines about many messages.
// Against real Kafka and Postgres: test/integration/dead-letter-context.test.ts.
//
// Mutations checked (each alone, then reverted):
// | mutation                                                   | fails                                   |
// |------------------------------------------------------------|-----------------------------------------|
// | deadLetterRow stores the headers unchecked (no ID pattern)  | "ids Postgres could refuse"             |
// | eventIdOf ignores the payload                               | "event_id from the payload"             |
// | requestIdsOf without its cap                                | "at most 20 distinct"                   |
// | logDeadLetters logs every dead letter                       | "one line per dead letter, up to 20"    |
import { describe, expect, test } from "bun:test";
import type { ConsumedMessage } from "bun-rdkafka";
import pino from "pino";
import { deadLetterHeaders, deadLetterRow, logDeadLetters } from "../../worker/dead-letters.ts";
import { IDS_PER_LINE, eventIdOf, requestIdsOf } from "../../worker/message-context.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const EVENT = "6f1c1a2e-7b0e-4a43-9d4b-3b2f3a1c9e10";

function message(
  headers: Record<string, string | Uint8Array> | null,
  value: string | null = "{not json",
): ConsumedMessage {
  return {
    topic: "scans",
    partition: 3,
    offset: 42,
    key: null,
    value: value === null ? null : enc(value),
    timestamp: 0,
    headers: headers
      ? Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, typeof v === "string" ? enc(v) : v]))
      : null,
  };
}

describe("dead letters", () => {
  test("the dead-letter topic's headers carry the original's traceparent, request_id and event_id as they were", () => {
    const original = message({ traceparent: TRACEPARENT, request_id: "req-1", event_id: EVENT, schema_version: "1" });
    const headers = deadLetterHeaders({ message: original, error: "rejected by Postgres" }, "2026-01-01T00:00:00Z");
    expect(headers.traceparent).toBe(original.headers?.traceparent as Uint8Array);
    expect(headers.request_id).toBe(original.headers?.request_id as Uint8Array);
    expect(headers.event_id).toBe(original.headers?.event_id as Uint8Array);
    expect(headers.schema_version).toBeUndefined();
    expect(headers).toMatchObject({
      dlq_error: "rejected by Postgres",
      dlq_source_partition: "3",
      dlq_source_offset: "42",
    });
  });

  test("event_id from the payload when the header is missing; none when neither has one", () => {
    const fromPayload = message(null, JSON.stringify({ event_id: EVENT, qr_id: "x" }));
    expect(deadLetterHeaders({ message: fromPayload, error: "schema violation" }, "t").event_id).toBe(EVENT);
    expect(eventIdOf(fromPayload)).toBe(EVENT);
    expect(eventIdOf(message(null, "{not json"))).toBeUndefined();
    expect(eventIdOf(message(null, JSON.stringify({ event_id: 7 })))).toBeUndefined();
    expect(eventIdOf(message(null, null))).toBeUndefined();
    expect(deadLetterHeaders({ message: message(null), error: "undecodable" }, "t").event_id).toBeUndefined();
  });

  test("dead_letters' columns: the ids of a dead letter, or null", () => {
    const letter = message({ traceparent: TRACEPARENT, request_id: "req-1", event_id: EVENT });
    expect(deadLetterRow(letter)).toMatchObject({ event_id: EVENT, request_id: "req-1", traceparent: TRACEPARENT });
    expect(deadLetterRow(message(null, null))).toMatchObject({ event_id: null, request_id: null, traceparent: null });
  });

  test("ids Postgres could refuse, or that are not ids, are not stored", () => {
    const letter = message({
      traceparent: "00-not-a-traceparent",
      request_id: new Uint8Array([0x72, 0x00, 0x71]), // a NUL: text columns refuse it (22021)
      event_id: "x".repeat(129),
    });
    expect(deadLetterRow(letter)).toMatchObject({ event_id: null, request_id: null, traceparent: null });
    expect(deadLetterRow(message({ request_id: "has space" }, null)).request_id).toBeNull();
  });
});

describe("log lines about many messages", () => {
  test("requestIdsOf: at most 20 distinct request and trace ids, in message order", () => {
    // 50 requests, two traces: the request ids are capped, the trace ids all listed.
    const messages = Array.from({ length: 50 }, (_, i) =>
      message({ request_id: `req-${i}`, traceparent: `00-${String(i % 2).padStart(32, "a")}-b7ad6b7169203331-00` }),
    );
    const ids = requestIdsOf(messages);
    expect(ids.request_ids).toEqual(Array.from({ length: IDS_PER_LINE }, (_, i) => `req-${i}`));
    expect(ids.trace_ids).toEqual([`${"a".repeat(31)}0`, `${"a".repeat(31)}1`]);
    const manyTraces = Array.from({ length: 30 }, (_, i) =>
      message({ traceparent: `00-${String(i).padStart(32, "a")}-b7ad6b7169203331-01` }),
    );
    expect(requestIdsOf(manyTraces).trace_ids).toHaveLength(IDS_PER_LINE);
    expect(requestIdsOf(manyTraces).request_ids).toBeUndefined();
    expect(requestIdsOf([message(null)])).toEqual({});
  });

  test("one line per dead letter, up to 20 per batch, then one line for the rest", () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const poison = Array.from({ length: 23 }, (_, i) => ({
      message: message({ traceparent: TRACEPARENT, request_id: `req-${i}`, event_id: EVENT }),
      error: "rejected by Postgres",
    }));
    logDeadLetters(logger, 9, poison);
    expect(lines).toHaveLength(21);
    expect(lines[0]).toMatchObject({
      msg: "dead-lettered a message that can never be stored",
      batch_id: 9,
      request_id: "req-0",
      trace_id: "0af7651916cd43dd8448eb211c80319c",
      event_id: EVENT,
      source: "scans/3@42",
      error: "rejected by Postgres",
    });
    expect(lines[20]).toMatchObject({ count: 3, request_ids: ["req-20", "req-21", "req-22"] });
  });
});
