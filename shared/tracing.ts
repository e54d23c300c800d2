// OpenTelemetry traces, off unless configured with the standard OTEL_* variables (an OTLP/HTTP
// endpoint). Off, nothing is created per request or per batch: the server forwards the client's
// traceparent unchanged and the worker makes no spans. On, the server exports a SERVER span per
// request and a PRODUCER span per Kafka send; the worker, per batch, a CONSUMER span linked to
// each sampled send it carries, with child spans for the database write and the offset commit,
// and per sampled send a CONSUMER span whose parent is that PRODUCER span (worker/batch-trace.ts;
// docs/operations.md "Traces").
//
// Context is passed explicitly (no global context manager or propagator): tracing.extract() reads
// a W3C traceparent, and the span context goes into Kafka headers with tracing.traceparent().
import {
  type Attributes,
  type Context,
  type Link,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import * as v from "valibot";
import { bool, int } from "./config.ts";

const SAMPLERS = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;

const optionalUrl = v.optional(
  v.pipe(
    v.string(),
    v.check(
      (s) => /^https?:\/\/[^\s]+$/.test(s) && URL.canParse(s),
      "must be an http(s) URL, e.g. http://127.0.0.1:4318",
    ),
  ),
);

/** The OTEL_* variables we honour, in each process's schema (names and meanings per the OpenTelemetry spec). */
export const TracingConfigEntries = {
  /** The collector's base URL; traces go to <it>/v1/traces. Unset (and no traces endpoint): tracing is off. */
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalUrl,
  /** The full traces URL, instead of OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces. */
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: optionalUrl,
  OTEL_TRACES_EXPORTER: v.optional(v.picklist(["otlp", "none"], "must be otlp or none"), "otlp"),
  OTEL_SDK_DISABLED: bool(false),
  OTEL_SERVICE_NAME: v.optional(v.string()),
  OTEL_TRACES_SAMPLER: v.optional(
    v.picklist(SAMPLERS, `must be one of ${SAMPLERS.join(", ")}`),
    "parentbased_always_on",
  ),
  /** Milliseconds between two exports of the buffered spans. */
  OTEL_BSP_SCHEDULE_DELAY: int(5_000, 1),
  /** The ratio for the *traceidratio samplers, 0..1. */
  OTEL_TRACES_SAMPLER_ARG: v.pipe(
    v.optional(v.string(), "1"),
    v.transform((s) => Number(s.trim())),
    v.number("must be a number from 0 to 1"),
    v.minValue(0, "must be a number from 0 to 1"),
    v.maxValue(1, "must be a number from 0 to 1"),
  ),
};

const TracingSchema = v.object(TracingConfigEntries);
export type TracingConfig = v.InferOutput<typeof TracingSchema>;

/** W3C trace-context headers, as a request or a Kafka message carries them. */
export interface TraceCarrier {
  traceparent?: string;
  tracestate?: string;
}

export interface Tracing {
  /** False: no spans are made anywhere, and the calls below must not be reached on a hot path. */
  readonly enabled: boolean;
  readonly tracer: Tracer;
  /** The remote parent a traceparent names (ROOT_CONTEXT when absent or malformed). */
  extract(carrier: TraceCarrier): Context;
  /** The traceparent header value for `span`'s context. */
  traceparent(span: Span): string | undefined;
  /** Exports what is buffered and stops (on shutdown). */
  shutdown(): Promise<void>;
}

const propagator = new W3CTraceContextPropagator();
const getter = {
  get: (carrier: TraceCarrier, key: string) => carrier[key as keyof TraceCarrier],
  keys: (carrier: TraceCarrier) => Object.keys(carrier),
};
const setter = {
  set: (carrier: TraceCarrier, key: string, value: string) => {
    carrier[key as keyof TraceCarrier] = value;
  },
};

function samplerFor(c: TracingConfig): Sampler {
  const ratio = () => new TraceIdRatioBasedSampler(c.OTEL_TRACES_SAMPLER_ARG);
  switch (c.OTEL_TRACES_SAMPLER) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return ratio();
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: ratio() });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/** Where traces go, or null when tracing is off. */
export function tracesUrl(c: TracingConfig): string | null {
  if (c.OTEL_SDK_DISABLED || c.OTEL_TRACES_EXPORTER === "none") return null;
  if (c.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return c.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (c.OTEL_EXPORTER_OTLP_ENDPOINT) return `${c.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, "")}/v1/traces`;
  return null;
}

/** Tracing off: what startTracing returns without an endpoint, and what in-process tests use. */
export const TRACING_OFF: Tracing = {
  enabled: false,
  tracer: trace.getTracer("off"),
  extract: () => ROOT_CONTEXT,
  traceparent: () => undefined,
  shutdown: async () => {},
};

/** The process's tracing, from its resolved configuration; `service` names it unless OTEL_SERVICE_NAME does. */
export function startTracing(service: string, c: TracingConfig): Tracing {
  const url = tracesUrl(c);
  if (!url) return TRACING_OFF;
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": c.OTEL_SERVICE_NAME ?? service }),
    sampler: samplerFor(c),
    // A batch span links to each sampled send it carries: up to BATCH_MAX_ROWS of them.
    spanLimits: { linkCountLimit: 10_000 },
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: new OTLPTraceExporter({ url }),
        maxQueueSize: 8_192,
        scheduledDelayMillis: c.OTEL_BSP_SCHEDULE_DELAY,
      }),
    ],
  });
  return {
    enabled: true,
    tracer: provider.getTracer(service),
    extract: (carrier) => propagator.extract(ROOT_CONTEXT, carrier, getter),
    traceparent(span) {
      const carrier: TraceCarrier = {};
      propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, setter);
      return carrier.traceparent;
    },
    shutdown: () => provider.shutdown(),
  };
}

const utf8 = new TextDecoder();
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The trace id a traceparent header names, for log lines; undefined when absent or malformed. */
export function traceIdOf(traceparent: string | undefined | null): string | undefined {
  if (!traceparent) return undefined;
  const m = TRACEPARENT.exec(traceparent);
  return m && m[1] !== "00000000000000000000000000000000" ? m[1] : undefined;
}

/**
 * Whether a message's traceparent header (raw bytes) names a sampled span: checked on the bytes,
 * so an unsampled or absent header costs no decoding and no allocation.
 */
export function isSampledTraceparent(traceparent: Uint8Array | undefined | null): traceparent is Uint8Array {
  // "00-" + 32 + "-" + 16 + "-" + 2 hex digits; the sampled flag is the last digit's low bit.
  if (!traceparent || traceparent.length !== 55) return false;
  const last = traceparent[54] as number;
  const digit = last <= 0x39 ? last - 0x30 : last - 0x57; // "0"-"9", "a"-"f"
  return (digit & 1) === 1;
}

/** The remote span context a sampled traceparent (as text) names; null when malformed or unsampled. */
export function sampledSpanContext(traceparent: string): SpanContext | null {
  const m = TRACEPARENT.exec(traceparent);
  if (!m || (Number.parseInt(m[3] as string, 16) & 1) === 0) return null;
  if (m[1] === "00000000000000000000000000000000" || m[2] === "0000000000000000") return null;
  return { traceId: m[1] as string, spanId: m[2] as string, traceFlags: 1, isRemote: true };
}

/** Decodes header bytes (a traceparent: ASCII) to text. */
export const headerText = (bytes: Uint8Array) => utf8.decode(bytes);

/**
 * A span link to the producer span a message's traceparent header names, when that span was
 * sampled (a link to an unsampled span leads nowhere). The flags are checked on the raw bytes,
 * so unsampled messages cost no string decoding.
 */
export function sampledLink(traceparent: Uint8Array | undefined, attributes?: Attributes): Link | null {
  if (!isSampledTraceparent(traceparent)) return null;
  const context = sampledSpanContext(utf8.decode(traceparent));
  if (!context) return null;
  return attributes ? { context, attributes } : { context };
}

export { SpanKind };
