// scan_events rows: the table's column list, and the decoding of a Kafka message from the `scans`
// topic into a COPY text line for the sink's staging table, or into a poison verdict (undecodable
// or failing the shared schema) for the dead-letter topic. The worker's sink and the `dlq` job's
// replay check decide with this same code. The shared schema has already normalised what Postgres would
// otherwise reinterpret (the timestamp's precision and zone, the uuid's case), so the partition day
// chosen here is the day Postgres files the row under.
import type { ConsumedMessage } from "bun-rdkafka";
import * as v from "valibot";
import { type ScanRecord, ScanRecordSchema, dayOf, fieldErrors } from "./event.ts";

/**
 * scan_events' columns, in table order (sql/migrations/): the one list of them. Archiving
 * (jobs/retention/archive.ts) stores them all and refuses a table whose columns differ.
 */
export const SCAN_EVENTS_COLUMNS = [
  "event_id",
  "scanned_at",
  "qr_id",
  "scanner_id",
  "lat",
  "lon",
  "accuracy_m",
  "user_agent",
  "attributes",
  "client_ip",
  "received_at",
  "ingested_at",
  "schema_version",
  "kafka_partition",
  "kafka_offset",
  // 0011: the device's clock at send time and the scan's instant on the edge's clock.
  "sent_at",
  "derived_at",
] as const;

/** Staging/insert column order: all but ingested_at, which Postgres sets. The COPY lines below follow it. */
export const COLUMNS = SCAN_EVENTS_COLUMNS.filter((c) => c !== "ingested_at");

export interface Row {
  /** One line of COPY text format, newline-terminated. */
  line: string;
  /** UTC day of scanned_at (YYYY-MM-DD): the partition the row goes to. */
  day: string;
  /** The row's qr_id and canonical derived_at (the record's own strings): the sink's minute counts. */
  qrId: string;
  derivedAt: string;
  message: ConsumedMessage;
}

export interface Poison {
  message: ConsumedMessage;
  error: string;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** COPY text format escaping: backslash, tab, newline, carriage return. */
export function copyText(s: string): string {
  return /[\\\t\n\r]/.test(s) ? s.replace(/[\\\t\n\r]/g, (c) => ESCAPES[c] as string) : s;
}
const ESCAPES: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };

const opt = (x: string | number | undefined | null) =>
  x === undefined || x === null ? "\\N" : typeof x === "number" ? String(x) : copyText(x);

export function copyLine(r: ScanRecord, partition: number, offset: number): string {
  return `${r.event_id}\t${r.scanned_at}\t${copyText(r.qr_id)}\t${opt(r.scanner_id)}\t${opt(r.location?.lat)}\t${opt(
    r.location?.lon,
  )}\t${opt(r.location?.accuracy_m)}\t${opt(r.user_agent)}\t${
    r.attributes ? copyText(JSON.stringify(r.attributes)) : "\\N"
  }\t${opt(r.client_ip)}\t${r.received_at}\t${r.schema_version}\t${partition}\t${offset}\t${opt(r.sent_at)}\t${
    r.derived_at ?? r.scanned_at
  }\n`;
}

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
  const record = result.output;
  return {
    line: copyLine(record, message.partition, message.offset),
    day: dayOf(record.scanned_at),
    qrId: record.qr_id,
    derivedAt: record.derived_at ?? record.scanned_at,
    message,
  };
}

export const isPoison = (x: Row | Poison): x is Poison => "error" in x;
