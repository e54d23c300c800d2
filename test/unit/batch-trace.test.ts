// worker/batch-trace.ts with an in-memory exporter: which spans one batch makes, their parents and
// links, and that unsampled messages get none (the end-to-end relation through real processes is
// test/integration/tracing.test.ts).
//
// Mutations checked (each alone, then reverted):
// | mutation                                                        | fails                               |
// |-----------------------------------------------------------------|-------------------------------------|
// | no reuse of a send already seen (a span per message)            | "one process span per sampled send" |
// | send spans started under ROOT_CONTEXT (no parent)               | "one process span per sampled send" |
// | deadLettering parents its spans on the batch span               | "dead lettering"                    |
// Unsampled messages are refused twice (the byte check, then sampledSpanContext): each check is
// tested on its own in test/unit/tracing.test.ts.
import { describe, expect, test } from "bun:test";
import { ROOT_CONTEXT, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import type { ConsumedMessage } from "bun-rdkafka";
import type { Tracing } from "../../shared/tracing.ts";
import { BatchTrace } from "../../worker/batch-trace.ts";

const A = { trace: "0af7651916cd43dd8448eb211c80319c", span: "b7ad6b7169203331" };
const B = { trace: "4bf92f3577b34da6a3ce929d0e0e4736", span: "00f067aa0ba902b7" };

function message(offset: number, traceparent?: string): { message: ConsumedMessage } {
  return {
    message: {
      topic: "scans",
      partition: 0,
      offset,
      key: null,
      value: null,
      timestamp: 0,
      headers: traceparent ? { traceparent: new TextEncoder().encode(traceparent) } : null,
    },
  };
}
const sampled = (s: typeof A) => `00-${s.trace}-${s.span}-01`;

function tracingInMemory() {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const tracing: Tracing = {
    enabled: true,
    tracer: provider.getTracer("test"),
    extract: () => ROOT_CONTEXT,
    traceparent: () => undefined,
    shutdown: () => provider.shutdown(),
  };
  // SimpleSpanProcessor hands each ended span to the exporter asynchronously: flush before reading.
  const spans = async () => {
    await provider.forceFlush();
    return exporter.getFinishedSpans();
  };
  return { tracing, spans };
}

const options = (parts: { message: ConsumedMessage }[][]) => ({ topic: "scans", group: "g", batchId: 7, parts });

describe("BatchTrace", () => {
  test("one process span per sampled send, child of its producer span; the batch span links to each send once", async () => {
    const { tracing, spans } = tracingInMemory();
    const rows = [
      message(0, sampled(A)),
      message(1, sampled(A)),
      message(2, `00-${B.trace}-${B.span}-00`), // not sampled
      message(3, sampled(B)),
      message(4),
      message(5, sampled(A)), // A again, after B
    ];
    const poison = [message(6, sampled(B)), message(7, "garbage")];
    const batch = new BatchTrace(tracing, options([rows, poison]));
    batch.end();

    const all = await spans();
    const batchSpan = all.find((s) => s.parentSpanContext === undefined);
    expect(batchSpan?.kind).toBe(SpanKind.CONSUMER);
    expect(batchSpan?.attributes["messaging.batch.message_count"]).toBe(8);
    expect(batchSpan?.links.map((l) => l.context.spanId)).toEqual([A.span, B.span]);
    const sends = all
      .filter((s) => s !== batchSpan)
      .map((s) => ({
        name: s.name,
        kind: s.kind,
        trace: s.spanContext().traceId,
        parent: s.parentSpanContext?.spanId,
        count: s.attributes["messaging.batch.message_count"],
        links: s.links.map((l) => l.context.spanId),
      }));
    const toBatch = [String(batchSpan?.spanContext().spanId)];
    expect(sends).toEqual([
      { name: "process scans", kind: SpanKind.CONSUMER, trace: A.trace, parent: A.span, count: 3, links: toBatch },
      { name: "process scans", kind: SpanKind.CONSUMER, trace: B.trace, parent: B.span, count: 2, links: toBatch },
    ]);
  });

  test("no sampled message: the batch span alone, without links", async () => {
    const { tracing, spans } = tracingInMemory();
    new BatchTrace(tracing, options([[message(0, `00-${A.trace}-${A.span}-00`), message(1)]])).end();
    expect((await spans()).map((s) => [s.name, s.links.length])).toEqual([["process scans", 0]]);
  });

  test("dead lettering: a send span per sampled send among the poison, child of that send's process span", async () => {
    const { tracing, spans } = tracingInMemory();
    const rows = [message(0, sampled(A)), message(1, sampled(B))];
    const poison = [message(2, sampled(A)), message(3)];
    const batch = new BatchTrace(tracing, options([rows, poison]));
    const result = await batch.deadLettering(
      "analytics.errors",
      poison.map((p) => p.message),
      async () => "published",
    );
    expect(result).toBe("published");
    await expect(
      batch.deadLettering("analytics.errors", [poison[0]?.message as ConsumedMessage], async () => {
        throw new Error("broker gone");
      }),
    ).rejects.toThrow("broker gone");
    batch.end(new Error("commit refused"));

    const all = await spans();
    const processA = all.find((s) => s.name === "process scans" && s.parentSpanContext?.spanId === A.span);
    const dead = all.filter((s) => s.name === "send analytics.errors");
    expect(
      dead.map((s) => [s.kind, s.parentSpanContext?.spanId, s.attributes["messaging.batch.message_count"]]),
    ).toEqual([
      [SpanKind.PRODUCER, processA?.spanContext().spanId, 1],
      [SpanKind.PRODUCER, processA?.spanContext().spanId, 1],
    ]);
    expect(dead.map((s) => s.spanContext().traceId)).toEqual([A.trace, A.trace]);
    expect(dead.map((s) => s.status.code)).toEqual([SpanStatusCode.UNSET, SpanStatusCode.ERROR]);
    // A failed batch marks every span of it failed.
    expect(all.filter((s) => s.name === "process scans").map((s) => s.status.code)).toEqual([
      SpanStatusCode.ERROR,
      SpanStatusCode.ERROR,
      SpanStatusCode.ERROR,
    ]);
  });
});
