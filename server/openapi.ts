// The OpenAPI 3.1 document of the edge's API, built from the same valibot schemas the edge
// validates with (shared/event.ts) and answers with (server/answers.ts), so integrators in any
// language can generate a client that agrees with the server. Served at GET /openapi.json
// (server/app.ts), linted by `redocly lint` (test/unit/openapi.test.ts), held to live answers by
// test/integration/openapi-live.test.ts; packages/scan-client/src/wire.ts is generated from it
// (tools/openapi-types.ts).
//
// Built by hand around @valibot/to-json-schema rather than with hono-openapi's describeRoute: that
// puts one more middleware in every route's chain (POST /v1/scans is the hot path), needs a whole
// app (producer, database, keys) to generate the document, and inlines the schemas where the
// generated SDK types want them named in components. The paths are held to the app's real routes
// by test/unit/openapi.test.ts instead.
import { type ConversionConfig, type JsonSchema, toJsonSchema, toJsonSchemaDefs } from "@valibot/to-json-schema";
import type * as v from "valibot";
import { RFC3339Timestamp, SCHEMA_VERSION, ScanEventSchema } from "../shared/event.ts";
import {
  type AnswerHeader,
  AnswerHeaders,
  ErrorAnswerSchema,
  FieldErrorSchema,
  IngestAnswerSchema,
  ProbeAnswerSchema,
  RejectionSchema,
  StatsAnswerSchema,
} from "./answers.ts";
import { StatsQuery } from "./stats.ts";

type Schema = v.GenericSchema;

/** The named schemas of the document (components.schemas), each from its valibot schema. */
export const COMPONENT_SCHEMAS = {
  ScanEvent: ScanEventSchema,
  FieldError: FieldErrorSchema,
  Rejection: RejectionSchema,
  IngestAnswer: IngestAnswerSchema,
  ErrorAnswer: ErrorAnswerSchema,
  StatsAnswer: StatsAnswerSchema,
  ProbeAnswer: ProbeAnswerSchema,
} as const satisfies Record<string, Schema>;
export type ComponentName = keyof typeof COMPONENT_SCHEMAS;

/**
 * What the event's fields mean (docs/api.md "The event" and "Device clocks" say it at length):
 * given on the event object, as its schemas are shared with other fields and routes.
 */
const EVENT_DESCRIPTION = [
  "One scan. event_id (a UUID the client makes; UUIDv7 from the SDK) with scanned_at is its identity: a retry must send both unchanged, and is then stored and counted once.",
  "scanned_at: the device's clock when the code was scanned, fixed when the scan is queued.",
  "sent_at (version 2): the device's clock when this request is sent, set again on every attempt; the edge derives the scan's instant on its own clock, derived_at = scanned_at + (received_at - sent_at), refuses an event whose device clock is off by more than CLOCK_SKEW_MAX_HOURS (a 400 on sent_at), and applies its window (5 minutes ahead, SCANNED_AT_MAX_AGE_HOURS back) to derived_at.",
  "schema_version: the contract the client was written for, 1 when absent.",
  "Strings must be well-formed Unicode without U+0000; unknown fields are refused by name.",
].join(" ");

/** The JSON Schema that stands for a valibot `custom` schema, which the converter cannot read. */
const CUSTOM_SCHEMAS = new Map<unknown, JsonSchema>([
  [
    innermost(ScanEventSchema.entries.attributes),
    {
      type: "object",
      maxProperties: 32,
      propertyNames: { minLength: 1 },
      additionalProperties: { type: ["string", "number", "boolean"] },
      description:
        "A flat object of string, finite number or boolean values: at most 32 keys and 4 KiB as JSON; the keys __proto__, constructor and prototype are refused",
    },
  ],
]);

/**
 * Actions that narrow or normalise what the type above them accepts, and that JSON Schema cannot
 * say: the document states the type, the edge's 400 names the rule (e.g. "must not contain the
 * NUL character"). `finite` says nothing JSON can break (a JSON number is finite). Any other
 * action the converter cannot read fails the conversion.
 */
const SERVER_SIDE_ACTIONS = new Set(["to_lower_case", "raw_check", "check", "transform", "finite"]);
const TIMESTAMP_PARSE = RFC3339Timestamp.pipe.find((a) => a.type === "raw_transform");

/** How every valibot schema of the document becomes JSON Schema (2020-12, OpenAPI 3.1's dialect). */
export const CONVERSION: ConversionConfig = {
  target: "draft-2020-12",
  errorMode: "throw",
  overrideRef: ({ referenceId }) => `#/components/schemas/${referenceId}`,
  overrideSchema: ({ valibotSchema, jsonSchema }) =>
    valibotSchema === ScanEventSchema
      ? { ...jsonSchema, description: EVENT_DESCRIPTION }
      : CUSTOM_SCHEMAS.get(valibotSchema),
  overrideAction: ({ valibotAction, jsonSchema }) => {
    // RFC 3339 with an offset, checked (calendar, ±15:59, 1970-9999) and normalised by the edge.
    if (valibotAction === TIMESTAMP_PARSE) return { ...jsonSchema, format: "date-time" };
    if (SERVER_SIDE_ACTIONS.has(valibotAction.type)) return jsonSchema;
    return undefined;
  },
};

/** One valibot schema as the document's JSON Schema (no $schema key: OpenAPI 3.1 sets the dialect). */
export function jsonSchemaOf(schema: Schema): JsonSchema {
  const { $schema: _dialect, ...rest } = toJsonSchema(schema, CONVERSION);
  return rest;
}

/** Every component schema, referring to each other by $ref (#/components/schemas/Name). */
export function componentSchemas(): Record<ComponentName, JsonSchema> {
  return toJsonSchemaDefs(COMPONENT_SCHEMAS, CONVERSION) as Record<ComponentName, JsonSchema>;
}

const ref = (name: ComponentName) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: ComponentName) => ({ "application/json": { schema: ref(name) } });

function header(name: AnswerHeader, required: boolean, description?: string) {
  const schema = jsonSchemaOf(AnswerHeaders[name]);
  return { [name]: { required, description: description ?? schema.description, schema } };
}
const requestId = header("X-Request-Id", true);

function answer(description: string, body: ComponentName, headers: Record<string, unknown> = {}) {
  return { description, headers: { ...requestId, ...headers }, content: json(body) };
}

const retryAfter = header("Retry-After", true);
/** On the answers a key's limit charged (absent while no per-key limit is configured). */
const rateLimitHeaders = { ...header("RateLimit", false), ...header("RateLimit-Policy", false) };

/** Every other error of the edge (404, 405 + Allow), in the one error shape. */
const otherErrors = {
  default: answer(
    "Any other error, in the one error shape: 404 for an unknown path, 405 (with Allow) for a method the path does not serve. A proxy in front of the edge may answer 408, 502 or 504 itself: resend after a while",
    "ErrorAnswer",
    header("Allow", false, "On a 405: the methods the path serves"),
  ),
};

const unavailable = answer(
  "Not stored now (Kafka unreachable or slow, the server already receiving too many bodies): send the same request again after Retry-After seconds",
  "ErrorAnswer",
  retryAfter,
);
const internal = answer(
  "A failure a retry cannot fix until the server is fixed (the message names it); logged once with the request id",
  "ErrorAnswer",
);
const unauthorized = answer(
  "Missing, unknown, revoked or expired credential: refresh it and resend (events are not refused for it)",
  "ErrorAnswer",
);

/** The 429 of both authenticated routes: a key over its rate or burst, or an address over its failed authentications. */
function tooMany(what: string) {
  return answer(
    `${what} Two kinds: with Retry-After (and RateLimit, RateLimit-Policy): wait that many seconds, then resend; with Max-Batch-Events and no Retry-After: the batch is larger than this key may ever send, split it into batches of at most that many events`,
    "ErrorAnswer",
    {
      ...header("Retry-After", false),
      ...header("RateLimit", false),
      ...header("RateLimit-Policy", true),
      ...header("Max-Batch-Events", false),
    },
  );
}

const eventsBody = {
  required: true,
  description:
    "One event, a JSON array of events, or NDJSON (one event per line, blank lines ignored), at most MAX_EVENTS_PER_REQUEST events (1,000 by default) and MAX_BODY_BYTES (1 MiB by default, also after gzip). A charset parameter, if any, must be UTF-8.",
  content: {
    "application/json": {
      schema: { oneOf: [ref("ScanEvent"), { type: "array", items: ref("ScanEvent"), minItems: 1 }] },
    },
    // Each line is one event of this schema (OpenAPI 3.1 has no way to say "per line").
    "application/x-ndjson": { schema: ref("ScanEvent") },
  },
};

const statsParameters = Object.entries(StatsQuery.entries)
  .filter(([name]) => name !== "qr_id")
  .map(([name, schema]) => ({ name, in: "query", required: false, schema: jsonSchemaOf(schema) }));

export type OpenApiDocument = Record<string, unknown> & {
  openapi: string;
  info: { title: string; version: string } & Record<string, unknown>;
  paths: Record<string, Record<string, Record<string, unknown> & { responses: Record<string, unknown> }>>;
  components: { schemas: Record<ComponentName, JsonSchema> } & Record<string, unknown>;
};

/** The document (the same for every deployment: limits are named by their variables). */
export function openApiDocument(): OpenApiDocument {
  const probe = (summary: string, description: string) => ({
    summary,
    operationId: summary === "Liveness" ? "getHealth" : "getReady",
    tags: ["probes"],
    security: [],
    description,
    responses: {
      "200": answer("OK", "ProbeAnswer"),
      "503": answer("Not live or not ready; the status says why", "ProbeAnswer"),
      ...otherErrors,
    },
  });
  return {
    openapi: "3.1.0",
    info: {
      title: "qrscan-ingest edge",
      // The wire contract's version (shared/event.ts), which the event's schema_version names.
      version: String(SCHEMA_VERSION),
      description:
        "Ingestion of QR-code scan events. A 202 means every accepted event is durable (Kafka acknowledged it on every in-sync replica). docs/api.md is the guide; this document is generated from the edge's own schemas.",
      license: { name: "Proprietary", identifier: "LicenseRef-Proprietary" },
    },
    // Relative: the edge that served the document (bun run dev: http://127.0.0.1:8080).
    servers: [{ url: "/", description: "the edge serving this document" }],
    tags: [
      { name: "scans", description: "Sending scan events" },
      { name: "stats", description: "Reading what was counted" },
      { name: "probes", description: "Liveness and readiness (no credential)" },
      { name: "meta", description: "This document" },
    ],
    security: [{ bearer: [] }, { apiKey: [] }],
    paths: {
      "/v1/scans": {
        post: {
          summary: "Send scan events",
          operationId: "postScans",
          tags: ["scans"],
          parameters: [
            {
              name: "Content-Encoding",
              in: "header",
              required: false,
              description: "gzip, or none",
              schema: { type: "string", enum: ["gzip", "identity"] },
            },
          ],
          requestBody: eventsBody,
          responses: {
            "202": answer(
              "At least one event accepted, and Kafka acknowledged every accepted one: they are durable. The rejected ones (by index) are refused for good",
              "IngestAnswer",
              rateLimitHeaders,
            ),
            "400": {
              description:
                "No event of the body is valid ({accepted: 0, rejected, request_id}, final per event), or the body itself is malformed ({error, request_id}: not JSON, not UTF-8, empty, bad gzip)",
              headers: requestId,
              content: {
                "application/json": { schema: { oneOf: [ref("IngestAnswer"), ref("ErrorAnswer")] } },
              },
            },
            "401": unauthorized,
            "403": answer(
              "The credential lacks scans:write, or an event's qr_id is outside its tenant: the whole request is refused",
              "ErrorAnswer",
            ),
            "413": answer(
              "Over MAX_BODY_BYTES (also after gzip) or MAX_EVENTS_PER_REQUEST events: split the batch",
              "ErrorAnswer",
            ),
            "415": answer(
              "A Content-Type other than JSON or NDJSON, a charset other than UTF-8, or a Content-Encoding other than gzip",
              "ErrorAnswer",
            ),
            "429": tooMany("This key's event rate limit, or too many failed authentications from this address."),
            "500": internal,
            "503": unavailable,
            ...otherErrors,
          },
        },
      },
      "/v1/qr/{qr_id}/stats": {
        get: {
          summary: "Scans of one QR code per interval",
          operationId: "getQrStats",
          tags: ["stats"],
          parameters: [
            { name: "qr_id", in: "path", required: true, schema: jsonSchemaOf(StatsQuery.entries.qr_id) },
            ...statsParameters,
          ],
          responses: {
            "200": answer("Counts per UTC bucket; from inclusive, to exclusive", "StatsAnswer", rateLimitHeaders),
            "400": answer("An invalid query (errors names each field), or too many buckets", "ErrorAnswer"),
            "401": unauthorized,
            "403": answer("The credential lacks stats:read, or the QR code is outside its tenant", "ErrorAnswer"),
            "429": tooMany("This key's rate limit, or too many failed authentications from this address."),
            "500": internal,
            "503": answer("The database is unavailable: retry after Retry-After seconds", "ErrorAnswer", retryAfter),
            ...otherErrors,
          },
        },
      },
      "/health": {
        get: probe("Liveness", "Fails only once the Kafka producer is in its fatal state, which only a restart heals"),
      },
      "/ready": {
        get: probe("Readiness", "Ready to take traffic: Kafka connected, credentials loaded, not draining"),
      },
      "/openapi.json": {
        get: {
          summary: "This document",
          operationId: "getOpenApi",
          tags: ["meta"],
          security: [],
          responses: {
            "200": {
              description: "The OpenAPI 3.1 document",
              headers: requestId,
              content: { "application/json": { schema: { type: "object" } } },
            },
            ...otherErrors,
          },
        },
      },
    },
    components: {
      schemas: componentSchemas(),
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description: "An API key (bun run keys create, or a static key) or a JWT from the configured issuer",
        },
        apiKey: {
          type: "apiKey",
          in: "header",
          name: "X-API-Key",
          description: "An API key, as an alternative header",
        },
      },
    },
  };
}

/** The valibot schema innermost in optional/pipe wrappers (the schema a custom override is keyed on). */
function innermost(schema: unknown): unknown {
  let s = schema as { type?: string; wrapped?: unknown; pipe?: unknown[] };
  for (;;) {
    if (s.type === "optional" && s.wrapped) s = s.wrapped as typeof s;
    else if (s.pipe && s.pipe[0] !== s) s = s.pipe[0] as typeof s;
    else return s;
  }
}
