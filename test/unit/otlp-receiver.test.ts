// test/helpers/otlp-receiver.ts as the compose test runs it: a process of its own, fed a real SDK
// export (the worker's exporter, OTLP/HTTP JSON), answering GET /spans and DELETE /spans, stopped
// by pid with SIGTERM.
import { expect, test } from "bun:test";
import * as v from "valibot";
import { loadConfig } from "../../shared/config.ts";
import { SpanKind, TracingConfigEntries, startTracing } from "../../shared/tracing.ts";
import { freePort } from "../../tools/stack/processes.ts";
import { onCleanup } from "../helpers/cleanup.ts";
import type { ReceivedSpan } from "../helpers/otlp-receiver.ts";
import { waitFor } from "../helpers/wait.ts";

test("standalone: POST /v1/traces from a real exporter, GET /spans, DELETE /spans, SIGTERM exits 0", async () => {
  const port = freePort();
  const proc = Bun.spawn(["bun", "test/helpers/otlp-receiver.ts", "--port", String(port)], {
    cwd: new URL("../..", import.meta.url).pathname,
    stdout: "pipe",
    stderr: "inherit",
  });
  onCleanup(() => {
    if (proc.exitCode === null) proc.kill("SIGKILL");
  });
  const base = `http://127.0.0.1:${port}`;
  await waitFor(
    "the receiver to answer",
    () => fetch(`${base}/spans`).then((r) => r.status),
    (s) => s === 200,
    10_000,
  );

  const tracing = startTracing(
    "receiver-test",
    loadConfig(v.object(TracingConfigEntries), { OTEL_EXPORTER_OTLP_ENDPOINT: base }),
  );
  const span = tracing.tracer.startSpan("send scans", { kind: SpanKind.PRODUCER, attributes: { n: 3 } });
  span.end();
  await tracing.shutdown(); // exports what is buffered

  const spans = (await (await fetch(`${base}/spans`)).json()) as ReceivedSpan[];
  expect(spans).toEqual([
    {
      service: "receiver-test",
      traceId: span.spanContext().traceId,
      spanId: span.spanContext().spanId,
      name: "send scans",
      kind: 4, // OTLP's PRODUCER
      attributes: { n: 3 },
      links: [],
      status: 0,
    },
  ]);
  expect((await fetch(`${base}/spans`, { method: "DELETE" })).status).toBe(204);
  expect(await (await fetch(`${base}/spans`)).json()).toEqual([]);
  expect((await fetch(`${base}/v1/traces`, { method: "POST", body: "not json" })).status).toBe(400);

  proc.kill("SIGTERM");
  expect(await proc.exited).toBe(0);
}, 30_000);
