// A batch's spans, with tracing on, as the OpenTelemetry messaging conventions draw a batch
// receiver: the batch's CONSUMER span ("process <topic>"), a trace of its own linked to the
// PRODUCER span of each sampled send it carries, and for each of those sends a "process <topic>"
// CONSUMER span whose parent is that PRODUCER span. So one request's trace continues from the edge
// into the worker, and on through its dead letters (a "send <dead-letter topic>" PRODUCER span).
//
// The edge sends a request's events in one call under one PRODUCER span, so their messages share a
// traceparent: a batch makes one child span per request it carries, not one per event. A message
// whose trace is not sampled is checked on its header's bytes and costs nothing more; with tracing
// off none of this runs (scan-loop.ts checks tracing.enabled once per batch).
import {
  type Link,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { ConsumedMessage } from "bun-rdkafka";
import { type Tracing, headerText, isSampledTraceparent, sampledSpanContext } from "../shared/tracing.ts";

export interface BatchTraceOptions {
  topic: string;
  group: string;
  batchId: number;
  /** The batch's messages, in parts (its rows, its poison): read in place, nothing copied per message. */
  parts: readonly (readonly { message: ConsumedMessage }[])[];
}

interface Send {
  context: SpanContext;
  messages: number;
  span?: Span;
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};

export class BatchTrace {
  /** The batch's CONSUMER span: parent of its write and commit spans. */
  readonly span: Span;
  /** Per sampled send (keyed by its traceparent), its messages' "process" span in this batch. */
  private readonly sends: Map<string, Send>;

  constructor(
    private readonly tracing: Tracing,
    o: BatchTraceOptions,
  ) {
    this.sends = new Map();
    let last: Uint8Array | null = null;
    let lastSend: Send | null = null;
    let count = 0;
    for (const part of o.parts) {
      count += part.length;
      for (const { message } of part) {
        const traceparent = message.headers?.traceparent;
        if (!isSampledTraceparent(traceparent)) continue;
        // A request's messages sit next to each other in a partition: most repeat the last header.
        if (last && lastSend && sameBytes(traceparent, last)) {
          lastSend.messages++;
          continue;
        }
        const key = headerText(traceparent);
        let send = this.sends.get(key);
        if (!send) {
          const context = sampledSpanContext(key);
          if (!context) continue;
          send = { context, messages: 0 };
          this.sends.set(key, send);
        }
        send.messages++;
        last = traceparent;
        lastSend = send;
      }
    }
    const attributes = {
      "messaging.system": "kafka",
      "messaging.operation.type": "process",
      "messaging.operation.name": "process",
      "messaging.destination.name": o.topic,
      "messaging.consumer.group.name": o.group,
      "qrscan.batch.id": o.batchId,
    };
    const links: Link[] = [];
    for (const send of this.sends.values()) links.push({ context: send.context });
    this.span = tracing.tracer.startSpan(
      `process ${o.topic}`,
      { kind: SpanKind.CONSUMER, links, attributes: { ...attributes, "messaging.batch.message_count": count } },
      ROOT_CONTEXT,
    );
    // Each send's span links back to the batch span, when that one is recorded.
    const batchContext = this.span.spanContext();
    const toBatch: Link[] = this.span.isRecording() ? [{ context: batchContext }] : [];
    for (const send of this.sends.values()) {
      send.span = tracing.tracer.startSpan(
        `process ${o.topic}`,
        {
          kind: SpanKind.CONSUMER,
          links: toBatch,
          attributes: { ...attributes, "messaging.batch.message_count": send.messages },
        },
        trace.setSpanContext(ROOT_CONTEXT, send.context),
      );
    }
  }

  /** The "process" span of the send `m` belongs to, when its trace is sampled. */
  private sendSpanOf(m: ConsumedMessage): Span | undefined {
    const traceparent = m.headers?.traceparent;
    if (!isSampledTraceparent(traceparent)) return undefined;
    return this.sends.get(headerText(traceparent))?.span;
  }

  /**
   * Runs `publish` (the dead letters' send) inside one "send <topic>" PRODUCER span per sampled
   * send among `messages`, each the child of that send's "process" span.
   */
  async deadLettering<T>(topic: string, messages: readonly ConsumedMessage[], publish: () => Promise<T>): Promise<T> {
    const counts = new Map<Span, number>();
    for (const m of messages) {
      const parent = this.sendSpanOf(m);
      if (parent) counts.set(parent, (counts.get(parent) ?? 0) + 1);
    }
    const spans: Span[] = [];
    for (const [parent, n] of counts) {
      spans.push(
        this.tracing.tracer.startSpan(
          `send ${topic}`,
          {
            kind: SpanKind.PRODUCER,
            attributes: {
              "messaging.system": "kafka",
              "messaging.operation.type": "send",
              "messaging.operation.name": "send",
              "messaging.destination.name": topic,
              "messaging.batch.message_count": n,
            },
          },
          trace.setSpan(ROOT_CONTEXT, parent),
        ),
      );
    }
    try {
      return await publish();
    } catch (error) {
      for (const span of spans) failed(span, error);
      throw error;
    } finally {
      for (const span of spans) span.end();
    }
  }

  /** Ends every span of the batch; with `error`, marks them failed. */
  end(error?: unknown): void {
    for (const send of this.sends.values()) {
      if (!send.span) continue;
      if (error !== undefined) failed(send.span, error);
      send.span.end();
    }
    if (error !== undefined) failed(this.span, error);
    this.span.end();
  }
}

function failed(span: Span, error: unknown): void {
  span.recordException(error as Error);
  span.setStatus({ code: SpanStatusCode.ERROR });
}
