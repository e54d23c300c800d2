// A stand-in for an OpenTelemetry collector: accepts OTLP/HTTP JSON on POST /v1/traces and keeps
// each span (ids in hex, attributes flattened, with its resource's service.name) for a test to
// read. In a test: `startOtlpReceiver()`; as a process (a container of the compose test):
//   bun test/helpers/otlp-receiver.ts --port 4318 [--hostname 0.0.0.0]
// which also answers GET /spans with the spans received so far (JSON array of ReceivedSpan) and
// DELETE /spans by forgetting them. It keeps at most MAX_SPANS spans (the oldest are dropped).
import { parseArgs } from "node:util";

/** One span as the OTLP/HTTP JSON encoding carries it (ids in hex), with its resource's service. */
export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** OTLP's SpanKind: see SPAN_KIND. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  links: { traceId: string; spanId: string }[];
  /** OTLP's status code: 0 unset, 1 ok, 2 error. */
  status: number;
}

/** OTLP's span kinds (the protobuf enum the JSON encoding uses). */
export const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

/** Spans kept; past it the oldest are dropped (a receiver left running must not grow without bound). */
export const MAX_SPANS = 100_000;

export interface OtlpReceiver {
  /** Where to point OTEL_EXPORTER_OTLP_ENDPOINT (the receiver serves <url>/v1/traces). */
  readonly url: string;
  readonly port: number;
  /** Every span received so far, oldest first (a live array). */
  readonly spans: ReceivedSpan[];
  /** The Content-Type of every export received (OTLP/HTTP JSON: application/json). */
  readonly contentTypes: Set<string>;
  /** Forgets what was received. */
  clear(): void;
  stop(): Promise<void>;
}

type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
const anyValue = (v: AnyValue) =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.boolValue ?? v.doubleValue ?? ""));
const attributesOf = (kvs: { key: string; value: AnyValue }[] = []) =>
  Object.fromEntries(kvs.map((kv) => [kv.key, anyValue(kv.value)]));

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: AnyValue }[];
  links?: { traceId: string; spanId: string }[];
  status?: { code?: number };
}
export interface OtlpExport {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value: AnyValue }[] };
    scopeSpans?: { spans?: OtlpSpan[] }[];
  }[];
}

/** The spans of one OTLP/HTTP JSON export request's body. */
export function spansOf(body: OtlpExport): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const service = String(attributesOf(rs.resource?.attributes)["service.name"]);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service,
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId || undefined,
          name: s.name,
          kind: s.kind,
          attributes: attributesOf(s.attributes),
          links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
          status: s.status?.code ?? 0,
        });
      }
    }
  }
  return out;
}

/** Starts a receiver on `hostname`:`port` (default 127.0.0.1 and a free port). */
export function startOtlpReceiver({ hostname = "127.0.0.1", port = 0 } = {}): OtlpReceiver {
  const spans: ReceivedSpan[] = [];
  const contentTypes = new Set<string>();
  const server = Bun.serve({
    hostname,
    port,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/v1/traces" && req.method === "POST") {
        contentTypes.add(req.headers.get("content-type") ?? "");
        let body: OtlpExport;
        try {
          body = (await req.json()) as OtlpExport;
        } catch (error) {
          return new Response(`not OTLP JSON: ${(error as Error).message}\n`, { status: 400 });
        }
        for (const span of spansOf(body)) spans.push(span);
        if (spans.length > MAX_SPANS) spans.splice(0, spans.length - MAX_SPANS);
        return Response.json({});
      }
      if (path === "/spans" && req.method === "GET") return Response.json(spans);
      if (path === "/spans" && req.method === "DELETE") {
        spans.length = 0;
        return new Response(null, { status: 204 });
      }
      return new Response("not found\n", { status: 404 });
    },
  });
  return {
    url: `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${server.port}`,
    port: server.port as number,
    spans,
    contentTypes,
    clear: () => {
      spans.length = 0;
      contentTypes.clear();
    },
    stop: () => server.stop(true),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { port: { type: "string" }, hostname: { type: "string", default: "127.0.0.1" } },
  });
  const port = Number(values.port);
  if (!values.port || !Number.isInteger(port) || port < 0 || port > 65535) {
    console.error("usage: bun test/helpers/otlp-receiver.ts --port P [--hostname H]");
    process.exit(2);
  }
  const receiver = startOtlpReceiver({ hostname: values.hostname, port });
  console.log(`otlp-receiver: POST ${receiver.url}/v1/traces, GET ${receiver.url}/spans`);
  const stop = () => void receiver.stop().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
