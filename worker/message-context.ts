// What ties a Kafka message of the scans topic to the request that sent it: the headers the edge
// writes (server/ingest.ts: event_id, request_id, and the W3C traceparent), read for log lines and
// dead letters only, never per event on the write path. A message produced around the edge may
// carry anything, so each value is checked before it goes into a log line or a column.
import type { ConsumedMessage } from "bun-rdkafka";
import { traceIdOf } from "../shared/tracing.ts";

/** The Kafka headers the edge writes on every message (docs/operations.md "The Kafka record"). */
export const EDGE_HEADER = {
  eventId: "event_id",
  requestId: "request_id",
  traceparent: "traceparent",
  tracestate: "tracestate",
} as const;

const utf8 = new TextDecoder();
/** An id as a log field or a text column may hold it: printable ASCII, no spaces, at most 128 characters. */
const ID = /^[\x21-\x7e]{1,128}$/;
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

function header(m: ConsumedMessage, name: string, pattern: RegExp): string | undefined {
  const bytes = m.headers?.[name];
  if (!bytes || bytes.length > 128) return undefined;
  const text = utf8.decode(bytes);
  return pattern.test(text) ? text : undefined;
}

export const requestIdOf = (m: ConsumedMessage) => header(m, EDGE_HEADER.requestId, ID);
export const traceparentOf = (m: ConsumedMessage) => header(m, EDGE_HEADER.traceparent, TRACEPARENT);
export const traceIdOfMessage = (m: ConsumedMessage) => traceIdOf(traceparentOf(m));

/**
 * The message's event_id: its header, else the payload's (a record produced around the edge may
 * have one without the header). For dead letters only: it parses the payload.
 */
export function eventIdOf(m: ConsumedMessage): string | undefined {
  const fromHeader = header(m, EDGE_HEADER.eventId, ID);
  if (fromHeader !== undefined || !m.value) return fromHeader;
  try {
    const id = (JSON.parse(utf8.decode(m.value)) as { event_id?: unknown })?.event_id;
    return typeof id === "string" && ID.test(id) ? id : undefined;
  } catch {
    return undefined; // not JSON: it has no event_id to carry (the dead letter's error says why)
  }
}

/** How many distinct request and trace ids a log line about many messages lists. */
export const IDS_PER_LINE = 20;

/**
 * The distinct request_ids and trace_ids of `messages` (the first IDS_PER_LINE of each, in
 * message order), for a log line about a batch; empty lists are left out.
 */
export function requestIdsOf(messages: Iterable<ConsumedMessage>): { request_ids?: string[]; trace_ids?: string[] } {
  const requests = new Set<string>();
  const traces = new Set<string>();
  for (const m of messages) {
    if (requests.size < IDS_PER_LINE) {
      const id = requestIdOf(m);
      if (id) requests.add(id);
    }
    if (traces.size < IDS_PER_LINE) {
      const id = traceIdOfMessage(m);
      if (id) traces.add(id);
    }
    if (requests.size >= IDS_PER_LINE && traces.size >= IDS_PER_LINE) break;
  }
  return {
    ...(requests.size ? { request_ids: [...requests] } : {}),
    ...(traces.size ? { trace_ids: [...traces] } : {}),
  };
}
