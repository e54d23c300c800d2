// Unit tests of the client's decisions, with an in-memory queue and a scripted fetch (pure logic;
// the real edge is in test/integration/scan-client.test.ts): what each answer does to the queue.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../../../test/helpers/wait.ts";
import { ScanClient } from "../src/client.ts";
import type { ScanClientError } from "../src/errors.ts";
import { QueueFullError } from "../src/errors.ts";
import { MemoryQueue } from "../src/queue/memory.ts";
import type { WireEvent } from "../src/wire.ts";

interface Call {
  events: WireEvent[];
  headers: Record<string, string>;
}
type Reply = (events: WireEvent[]) => Response;

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
const accept: Reply = (events) => json(202, { accepted: events.length, rejected: [], request_id: "r" });

/** A client whose fetch answers with `replies` in turn (then accepts everything). */
async function scripted(replies: Reply[], options: Partial<Parameters<typeof ScanClient.open>[0]> = {}) {
  const calls: Call[] = [];
  const errors: ScanClientError[] = [];
  const refused: { qr: string; status: number }[] = [];
  const client = await ScanClient.open({
    endpoint: "http://edge.test/",
    queue: new MemoryQueue(),
    batch: { maxWaitMs: 5 },
    retry: { baseMs: 1, maxMs: 5 },
    onError: (e) => errors.push(e),
    onRefused: (r) => refused.push(...r.map((x) => ({ qr: x.event.qr_id, status: x.status }))),
    fetch: async (_url, init) => {
      const text = new TextDecoder().decode(init.body as Uint8Array);
      const events = text
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l) as WireEvent);
      calls.push({ events, headers: init.headers as Record<string, string> });
      return (replies.shift() ?? accept)(events);
    },
    ...options,
  });
  return { client, calls, errors, refused };
}

test("a retry keeps event_id and scanned_at, and stamps a new sent_at", async () => {
  let t = Date.parse("2026-12-07T04:00:00.000Z");
  const { client, calls } = await scripted([() => json(503, { error: "kafka", request_id: "r" })], {
    now: () => {
      t += 1_000;
      return t;
    },
  });
  const stamped = await client.scan({ qr_id: "QR-1" });
  await client.flush({ timeoutMs: 2_000 });
  expect(calls.length).toBe(2);
  const [a, b] = calls.map((c) => c.events[0] as WireEvent);
  expect(a?.event_id).toBe(stamped.event_id);
  expect(b?.event_id).toBe(stamped.event_id);
  expect(b?.scanned_at).toBe(stamped.scanned_at);
  expect(a?.schema_version).toBe(2);
  expect(Date.parse(b?.sent_at ?? "")).toBeGreaterThan(Date.parse(a?.sent_at ?? ""));
  expect(client.metrics()).toMatchObject({ queued: 0, sent: 1, refused: 0 });
  await client.close();
});

test("per-event rejections are final: reported to onRefused once, removed, the rest counted sent", async () => {
  const { client, calls, refused } = await scripted([
    (events) =>
      json(202, {
        accepted: events.length - 1,
        rejected: [{ index: 1, errors: [{ path: "qr_id", message: "bad" }] }],
        request_id: "r",
      }),
  ]);
  for (const qr of ["A", "B", "C"]) await client.scan({ qr_id: qr });
  await client.flush({ timeoutMs: 2_000 });
  expect(refused).toEqual([{ qr: "B", status: 400 }]);
  expect(calls.length).toBe(1);
  expect(client.metrics()).toMatchObject({ queued: 0, sent: 2, refused: 1 });
  await client.close();
});

test("403 on a batch is bisected down to the one refused event; the others are sent", async () => {
  const forbidden: Reply = (events) =>
    events.some((e) => e.qr_id === "other-tenant") ? json(403, { error: "tenant", request_id: "r" }) : accept(events);
  const { client, refused } = await scripted(
    Array.from({ length: 20 }, () => forbidden),
    {
      batch: { maxEvents: 8, maxWaitMs: 5 },
    },
  );
  for (let i = 0; i < 8; i++) await client.scan({ qr_id: i === 5 ? "other-tenant" : `QR-${i}` });
  await client.flush({ timeoutMs: 2_000 });
  expect(refused).toEqual([{ qr: "other-tenant", status: 403 }]);
  expect(client.metrics()).toMatchObject({ queued: 0, sent: 7, refused: 1 });
  await client.close();
});

test("413 and Max-Batch-Events split the batch; nothing is refused for it", async () => {
  const { client, calls } = await scripted(
    [
      () => json(413, { error: "too big", request_id: "r" }),
      () => json(429, { error: "batch", request_id: "r" }, { "max-batch-events": "3" }),
    ],
    { batch: { maxEvents: 10, maxWaitMs: 5 } },
  );
  for (let i = 0; i < 10; i++) await client.scan({ qr_id: `QR-${i}` });
  await client.flush({ timeoutMs: 2_000 });
  expect(calls.map((c) => c.events.length)).toEqual([10, 5, 3, 3, 3, 1]);
  expect(client.metrics()).toMatchObject({ queued: 0, sent: 10, refused: 0 });
  await client.close();
});

test("401 asks the token provider again and keeps the events", async () => {
  let n = 0;
  const { client, calls, errors } = await scripted([() => json(401, { error: "expired", request_id: "r" })], {
    token: () => `tok-${++n}`,
  });
  await client.scan({ qr_id: "QR-1" });
  await client.flush({ timeoutMs: 2_000 });
  expect(calls.map((c) => c.headers.authorization)).toEqual(["Bearer tok-1", "Bearer tok-2"]);
  expect(errors.map((e) => e.code)).toEqual(["unauthorized"]);
  expect(client.metrics()).toMatchObject({ sent: 1, refused: 0 });
  await client.close();
});

test("bodies above gzipAboveBytes are gzipped", async () => {
  const seen: string[] = [];
  const c2 = await ScanClient.open({
    endpoint: "http://edge.test",
    queue: new MemoryQueue(),
    gzipAboveBytes: 10,
    batch: { maxWaitMs: 1 },
    fetch: async (_u, init) => {
      const h = init.headers as Record<string, string>;
      seen.push(h["content-encoding"] ?? "none");
      const text = new TextDecoder().decode(Bun.gunzipSync(init.body as Uint8Array<ArrayBuffer>));
      return accept(
        text
          .trimEnd()
          .split("\n")
          .map((l) => JSON.parse(l)),
      );
    },
  });
  await c2.scan({ qr_id: "QR-1" });
  await c2.flush({ timeoutMs: 2_000 });
  expect(seen).toEqual(["gzip"]);
  await c2.close();
});

test("a full queue: refuse throws QueueFullError; evict-oldest drops the oldest and says so", async () => {
  const never = () => new Promise<Response>(() => {});
  const refuse = await ScanClient.open({ endpoint: "http://x", queue: new MemoryQueue(), maxQueued: 2, fetch: never });
  await refuse.scan({ qr_id: "A" });
  await refuse.scan({ qr_id: "B" });
  expect(refuse.scan({ qr_id: "C" })).rejects.toBeInstanceOf(QueueFullError);
  await refuse.close();
  const evictedQr: string[] = [];
  const evict = await ScanClient.open({
    endpoint: "http://x",
    queue: new MemoryQueue(),
    maxQueued: 2,
    whenFull: "evict-oldest",
    fetch: never,
    onEvicted: (e) => evictedQr.push(...e.map((x) => x.qr_id)),
  });
  for (const qr of ["A", "B", "C"]) await evict.scan({ qr_id: qr });
  expect(evictedQr).toEqual(["A"]);
  expect(evict.metrics()).toMatchObject({ queued: 2, evicted: 1 });
  await evict.close();
});

test("a 2xx that is not the edge's answer (a captive portal) keeps the events; a throwing token provider is retried", async () => {
  let calls = 0;
  const { client, errors } = await scripted([() => new Response("<html>login</html>", { status: 200 })], {
    token: () => {
      if (++calls === 1) throw new Error("identity provider down");
      return "tok";
    },
  });
  await client.scan({ qr_id: "QR-1" });
  await client.flush({ timeoutMs: 2_000 });
  expect(errors.map((e) => e.code)).toEqual(["unauthorized", "bad_endpoint"]);
  expect(client.metrics()).toMatchObject({ queued: 0, sent: 1, refused: 0 });
  await client.close();
});

test("close() leaves no timer keeping a Bun process alive, with events still queued and the edge unreachable", async () => {
  const dir = mkdtempSync(join(tmpdir(), "scan-client-exit-"));
  try {
    const script = `
      import { ScanClient } from ${JSON.stringify(join(import.meta.dir, "../src/node.ts"))};
      const c = await ScanClient.open({ endpoint: "http://127.0.0.1:9", queue: { path: ${JSON.stringify(join(dir, "q"))} },
        retry: { baseMs: 60000, maxMs: 60000 }, batch: { maxWaitMs: 0 }, onError: () => {} });
      await c.scan({ qr_id: "QR-1" });
      await Bun.sleep(300);
      await c.close();
      console.log("closed", (await import("node:fs")).readFileSync(${JSON.stringify(join(dir, "q"))}, "utf8").split("\\n").length);
    `;
    const proc = Bun.spawn(["bun", "-e", script], { stdout: "pipe", stderr: "pipe" });
    const killer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    const [code, out, err] = await Promise.all([
      proc.exited,
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    clearTimeout(killer);
    expect({ code, signal: proc.signalCode, err }).toEqual({ code: 0, signal: null, err: "" });
    expect(out.trim()).toBe("closed 2");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 15_000);

test("evict-oldest under concurrent scans: the queue stays at maxQueued, each eviction counted once", async () => {
  const evicted: string[] = [];
  const client = await ScanClient.open({
    endpoint: "http://x",
    queue: new MemoryQueue(),
    maxQueued: 5,
    whenFull: "evict-oldest",
    fetch: () => new Promise<Response>(() => {}),
    onEvicted: (e) => evicted.push(...e.map((x) => x.qr_id)),
  });
  await Promise.all(Array.from({ length: 20 }, (_, i) => client.scan({ qr_id: `QR-${i}` })));
  expect(client.metrics()).toMatchObject({ queued: 5, evicted: 15 });
  expect(new Set(evicted).size).toBe(15);
  await client.close();
});

test("an edge rolled back to contract version 1: the same events are resent without sent_at/schema_version, nothing refused", async () => {
  const unknown = (field: string) => ({ path: "", message: `unknown field "${field}"` });
  const v1Edge: Reply = (events) =>
    events.some((e) => "sent_at" in e || "schema_version" in e)
      ? json(400, {
          accepted: 0,
          rejected: events.map((_, index) => ({ index, errors: [unknown("sent_at"), unknown("schema_version")] })),
          request_id: "r",
        })
      : accept(events);
  const { client, calls, errors, refused } = await scripted([v1Edge, v1Edge, v1Edge]);
  const stamped = await client.scan({ qr_id: "QR-1" });
  await client.flush({ timeoutMs: 2_000 });
  expect(refused).toEqual([]);
  expect(errors.map((e) => e.code)).toEqual(["version_fallback"]);
  expect(calls.length).toBe(2);
  expect(calls[1]?.events).toEqual([{ event_id: stamped.event_id, qr_id: "QR-1", scanned_at: stamped.scanned_at }]);
  expect(client.metrics()).toMatchObject({ queued: 0, sent: 1, refused: 0 });
  await client.close();
});

test("evict-oldest never evicts events already taken for sending (the token provider still pending)", async () => {
  let release: (token: string) => void = () => {};
  const token = new Promise<string>((r) => {
    release = r;
  });
  const evicted: string[] = [];
  const { client, calls } = await scripted([], {
    maxQueued: 2,
    whenFull: "evict-oldest",
    batch: { maxEvents: 2, maxWaitMs: 5 },
    token: () => token,
    onEvicted: (e) => evicted.push(...e.map((x) => x.qr_id)),
  });
  await client.scan({ qr_id: "A" });
  await client.scan({ qr_id: "B" }); // a full batch: the send loop takes A and B, then awaits the token
  await Bun.sleep(20);
  expect(client.scan({ qr_id: "C" })).rejects.toBeInstanceOf(QueueFullError);
  release("tok");
  await client.flush({ timeoutMs: 2_000 });
  expect(evicted).toEqual([]);
  expect(calls.flatMap((c) => c.events.map((e) => e.qr_id))).toEqual(["A", "B"]);
  expect(client.metrics()).toMatchObject({ queued: 0, sent: 2, evicted: 0 });
  await client.close();
});

test("a part-full batch is sent after the device clock steps back (NTP), not held for the step", async () => {
  let t = Date.parse("2026-12-07T04:00:00.000Z");
  const { client, calls } = await scripted([], {
    batch: { maxWaitMs: 50 },
    now: () => {
      t -= 3_600_000; // each reading an hour earlier than the one before
      return t;
    },
  });
  await client.scan({ qr_id: "QR-1" });
  await waitFor(
    "the part-full batch to be sent",
    async () => calls.length,
    (n) => n === 1,
    2_000,
    20,
  );
  await client.close();
});

test("a queue read that fails in the send loop is reported and retried, not left stalled", async () => {
  let failures = 0;
  class FlakyQueue extends MemoryQueue {
    failNext = false;
    override async peek(max: number) {
      if (this.failNext) {
        this.failNext = false;
        failures++;
        throw new Error("EIO: i/o error, read");
      }
      return super.peek(max);
    }
  }
  const queue = new FlakyQueue();
  const { client, calls, errors } = await scripted([], { queue });
  queue.failNext = true;
  await client.scan({ qr_id: "QR-1" });
  await waitFor(
    "the batch to be sent after the failed read",
    async () => calls.length,
    (n) => n === 1,
    2_000,
    20,
  );
  expect(failures).toBe(1);
  expect(errors.map((e) => e.code)).toEqual(["journal_io"]);
  await client.close();
});

test("a runtime without AbortSignal.any (Safari < 17.4) still sends", async () => {
  const any = AbortSignal.any;
  // biome-ignore lint/suspicious/noExplicitAny: removing the method as an older runtime lacks it
  (AbortSignal as any).any = undefined;
  try {
    const { client, calls, errors } = await scripted([]);
    await client.scan({ qr_id: "QR-1" });
    await client.flush({ timeoutMs: 2_000 });
    expect(calls.length).toBe(1);
    expect(errors).toEqual([]);
    await client.close();
  } finally {
    AbortSignal.any = any;
  }
});

test("onRefused and onEvicted run before the removal: a queue dying in remove() loses no report", async () => {
  class DyingQueue extends MemoryQueue {
    override async remove(_seqs: readonly number[]): Promise<void> {
      throw new Error("killed before the removal was durable");
    }
  }
  const { client, refused } = await scripted(
    [
      (events) =>
        json(400, {
          accepted: 0,
          rejected: [{ index: 0, errors: [{ path: "qr_id", message: "bad" }] }],
          request_id: "r",
        }),
    ],
    {
      queue: new DyingQueue(),
    },
  );
  await client.scan({ qr_id: "QR-1" });
  await waitFor(
    "the refusal to be reported",
    async () => refused.length,
    (n) => n >= 1,
    2_000,
    20,
  );
  await client.close();
  const evicted: string[] = [];
  const full = await ScanClient.open({
    endpoint: "http://x",
    queue: new DyingQueue(),
    maxQueued: 1,
    whenFull: "evict-oldest",
    fetch: () => new Promise<Response>(() => {}),
    batch: { maxWaitMs: 60_000 },
    onEvicted: (e) => evicted.push(...e.map((x) => x.qr_id)),
  });
  await full.scan({ qr_id: "A" });
  await expect(full.scan({ qr_id: "B" })).rejects.toThrow("killed");
  expect(evicted).toEqual(["A"]);
  await full.close();
});

test("a server wait (Retry-After as an HTTP-date, read on a clock far behind) is capped at retry.maxMs", async () => {
  const { client, calls } = await scripted(
    [() => json(503, { error: "busy", request_id: "r" }, { "retry-after": "Fri, 07 Dec 2029 04:00:00 GMT" })],
    { retry: { baseMs: 1, maxMs: 20 } },
  );
  await client.scan({ qr_id: "QR-1" });
  await client.flush({ timeoutMs: 2_000 });
  expect(calls.length).toBe(2);
  await client.close();
});

test("sent_at is stamped after the token provider answered", async () => {
  let t = Date.parse("2026-12-07T04:00:00.000Z");
  const { client, calls } = await scripted([], {
    now: () => t,
    token: () => {
      t += 60_000; // a slow identity provider
      return "tok";
    },
  });
  await client.scan({ qr_id: "QR-1" });
  await client.flush({ timeoutMs: 2_000 });
  expect(calls[0]?.events[0]?.sent_at).toBe("2026-12-07T04:01:00.000Z");
  await client.close();
});

test("a 202 saying the quota is spent (RateLimit r=0;t=1) holds the next request", async () => {
  const { client, calls } = await scripted(
    [(events) => json(202, { accepted: events.length, rejected: [], request_id: "r" }, { ratelimit: '"key";r=0;t=1' })],
    { retry: { baseMs: 1, maxMs: 60_000 } },
  );
  await client.scan({ qr_id: "QR-1" });
  await client.flush({ timeoutMs: 2_000 });
  await client.scan({ qr_id: "QR-2" });
  const early = await client.flush({ timeoutMs: 200 }).catch((e: ScanClientError) => e.code);
  expect({ early, calls: calls.length }).toEqual({ early: "timeout", calls: 1 });
  await client.flush({ timeoutMs: 5_000 });
  expect(calls.length).toBe(2);
  await client.close();
});

test("open() finds the newest queued seq with lastSeq(), not by reading the whole queue", async () => {
  const queue = new MemoryQueue();
  await queue.append(
    Array.from({ length: 50 }, (_, i) => ({
      event: { event_id: `e${i}`, qr_id: "Q", scanned_at: "2026-12-07T04:00:00.000Z" },
      queuedAt: 0,
    })),
  );
  const peeks: number[] = [];
  const peek = queue.peek.bind(queue);
  queue.peek = (max: number) => {
    peeks.push(max);
    return peek(max);
  };
  const { client, calls } = await scripted([], { queue, batch: { maxEvents: 10, maxWaitMs: 5 } });
  await client.flush({ timeoutMs: 2_000 });
  expect(calls.flatMap((c) => c.events).length).toBe(50);
  expect(Math.max(...peeks)).toBeLessThanOrEqual(10);
  await client.close();
});
