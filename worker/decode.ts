// Turns a Kafka message from the `scans` topic into a row for the sink (one JSON object whose
// keys are scan_events' columns), or into a poison verdict (undecodable or failing the shared
// schema) for the dead-letter topic. The shared schema has already normalised what Postgres would
// otherwise reinterpret (the timestamp's precision and zone, the uuid's case), so the partition day
// chosen here is the day Postgres files the row under.
import * as v from "valibot";
import { ScanRecordSchema, dayOf, fieldErrors } from "../shared/event.ts";
import type { ConsumedMessage } from "../shared/kafka/index.ts";

/** scan_events' columns the sink writes, with their SQL types: the keys of Row.json. */
export const COLUMNS = {
  event_id: "uuid",
  scanned_at: "timestamptz",
  qr_id: "text",
  scanner_id: "text",
  lat: "double precision",
  lon: "double precision",
  accuracy_m: "double precision",
  user_agent: "text",
  attributes: "jsonb",
  client_ip: "inet",
  received_at: "timestamptz",
  schema_version: "smallint",
  kafka_partition: "integer",
  kafka_offset: "bigint",
} as const;

export interface Row {
  /** The row as a JSON object keyed by column name (absent keys are NULL). */
  json: string;
  /** UTC day of scanned_at (YYYY-MM-DD): the partition the row goes to. */
  day: string;
  message: ConsumedMessage;
}

export interface Poison {
  message: ConsumedMessage;
  error: string;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

export function decode(message: ConsumedMessage): Row | Poison {
  if (!message.value) return { message, error: "empty message value" };
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(message.value));
  } catch (error) {
    return { message, error: `undecodable payload: ${(error as Error).message}` };
  }
  const result = v.safeParse(ScanRecordSchema, json);
  if (!result.success) {
    const errors = fieldErrors(result.issues)
      .map((e) => `${e.path}: ${e.message}`)
      .join("; ");
    return { message, error: `schema violation: ${errors}` };
  }
  const r = result.output;
  // JSON.stringify leaves out undefined values: those columns are NULL.
  const row = JSON.stringify({
    event_id: r.event_id,
    scanned_at: r.scanned_at,
    qr_id: r.qr_id,
    scanner_id: r.scanner_id,
    lat: r.location?.lat,
    lon: r.location?.lon,
    accuracy_m: r.location?.accuracy_m,
    user_agent: r.user_agent,
    attributes: r.attributes,
    client_ip: r.client_ip,
    received_at: r.received_at,
    schema_version: r.schema_version,
    kafka_partition: message.partition,
    kafka_offset: message.offset,
  });
  return { json: row, day: dayOf(r.scanned_at), message };
}

export const isPoison = (x: Row | Poison): x is Poison => "error" in x;
