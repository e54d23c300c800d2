// The wire contract of POST /v1/scans (docs/api.md), v2 with sent_at and schema_version. Written by
// hand for now; the OpenAPI document's generated types replace this file, with the same names.

/** One error of one event: the field's path (e.g. "qr_id", "location.lat") and why. */
export interface FieldError {
  path: string;
  message: string;
}

/** One scan as the edge takes it. sent_at is set by the SDK at each attempt, never stored in the queue. */
export interface WireEvent {
  event_id: string;
  qr_id: string;
  /** RFC 3339, the device clock when the code was scanned (fixed at scan()). */
  scanned_at: string;
  /** RFC 3339, the device clock when this request was sent (new on every attempt). */
  sent_at?: string;
  schema_version?: 2;
  scanner_id?: string;
  location?: { lat: number; lon: number; accuracy_m?: number };
  user_agent?: string;
  attributes?: Record<string, string | number | boolean>;
}

/** 202 (some accepted) or 400 (none valid): the rejected events by their index in the body. */
export interface IngestAnswer {
  accepted: number;
  rejected: { index: number; errors: FieldError[] }[];
  request_id: string;
}

/** Every other answer the edge writes. */
export interface ErrorAnswer {
  error: string;
  request_id: string;
}
