// The edge server as a real process: SIGTERM under load loses no 202-acknowledged event, and a
// broker outage turns into 503s within a bounded time and heals when the broker returns.
//
// Mutations these tests were checked against: each applied alone to a throwaway copy of the tree
// (git archive HEAD plus these tests), the test run there on a private stack and failing as shown;
// the shared tree was never edited.
//
// | mutation                                                   | failed test: message                                           |
// |------------------------------------------------------------|----------------------------------------------------------------|
// | main.ts shutdown exits at once (process.exit(0) instead of | SIGTERM under load: requests sent before the signal got 16     |
// | server.stop(false) and the flush)                          | ECONNRESET instead of an HTTP answer (expected [])             |
import { expect, test } from "bun:test";
import { newSecret } from "../../shared/api-keys.ts";
import { startKafka, stopKafka } from "../../tools/stack/kafka.ts";
import { createConsumer, createTopic, spawnServer } from "../helpers/fixtures.ts";
import { consumeN, text } from "../helpers/kafka.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack, stack } from "../helpers/stack.ts";

await ensureStack();

async function postBatch(url: string, size: number) {
  const events = Array.from({ length: size }, () => scan());
  const res = await fetch(`${url}/v1/scans`, {
    method: "POST",
    body: JSON.stringify(events),
    headers: { "content-type": "application/json" },
  });
  await res.arrayBuffer();
  return { status: res.status, ids: events.map((e) => e.event_id), retryAfter: res.headers.get("retry-after") };
}

/** One request of the SIGTERM test: when it was sent, and its HTTP status or the error it got. */
interface Sent {
  sentAt: number;
  ids: string[];
  status?: number;
  error?: string;
  settledAt?: number;
}

test("SIGTERM under load: every request sent before it gets an HTTP answer, exits 0, every 202-acknowledged event is in Kafka", async () => {
  const topic = await createTopic(3);
  // A 300 ms linger keeps each request waiting for its acknowledgement that long, so requests are
  // in flight (body read, events handed to the producer) when SIGTERM arrives.
  const { proc, url } = await spawnServer({ SCANS_TOPIC: topic, DRAIN_TIMEOUT_MS: "10000", KAFKA_LINGER_MS: "300" });
  const sent: Sent[] = [];
  let sigtermAt = Number.POSITIVE_INFINITY;
  // A fresh connection per request (no keep-alive): a request can then only be refused (the
  // listener is closed) or answered; a reset means the server dropped a connection it had accepted.
  const send = async () => {
    const events = Array.from({ length: 10 }, () => scan());
    const r: Sent = { sentAt: performance.now(), ids: events.map((e) => e.event_id) };
    sent.push(r);
    try {
      const res = await fetch(`${url}/v1/scans`, {
        method: "POST",
        body: JSON.stringify(events),
        headers: { "content-type": "application/json", connection: "close" },
        keepalive: false,
      });
      await res.arrayBuffer();
      r.status = res.status;
    } catch (error) {
      r.error = `${(error as { code?: string }).code ?? ""} ${(error as Error).message}`;
    }
    r.settledAt = performance.now();
    return r;
  };
  const loop = async () => {
    for (;;) {
      const r = await send();
      // Refused: the listener is closed. Keep sending for a moment after SIGTERM otherwise.
      if (r.error !== undefined || performance.now() > sigtermAt + 3_000) return;
    }
  };
  const loops = Array.from({ length: 16 }, loop);
  await Bun.sleep(1_500);
  sigtermAt = performance.now();
  proc.kill("SIGTERM");
  const inFlightAtSigterm = sent.filter((r) => r.settledAt === undefined).length;
  const exitCode = await proc.exited;
  await Promise.all(loops);
  expect(exitCode).toBe(0);

  const before = sent.filter((r) => r.sentAt < sigtermAt);
  const after = sent.filter((r) => r.sentAt >= sigtermAt);
  // The fault landed: requests were in flight when the signal arrived.
  expect(inFlightAtSigterm).toBeGreaterThan(0);
  // Every request sent before SIGTERM got an HTTP answer: a 202 (its events acknowledged).
  expect(before.filter((r) => r.status === undefined).map((r) => r.error)).toEqual([]);
  expect(new Set(before.map((r) => r.status))).toEqual(new Set([202]));
  // After it, a request is either answered or refused by a closed listener, never reset.
  expect(
    after.filter((r) => r.error !== undefined && !/ConnectionRefused|ECONNREFUSED/.test(r.error)).map((r) => r.error),
  ).toEqual([]);
  const acked = sent.filter((r) => r.status === 202).flatMap((r) => r.ids);
  expect(acked.length).toBeGreaterThan(100);

  const consumer = createConsumer();
  consumer.subscribe([topic]);
  const messages = await consumeN(consumer, acked.length, { timeoutMs: 60_000 });
  const stored = new Set(messages.map((m) => text(m.headers?.event_id)));
  const lost = acked.filter((id) => !stored.has(id));
  expect(lost).toEqual([]);
  const outcomes = new Map<string, number>();
  for (const r of after)
    outcomes.set(String(r.status ?? r.error), (outcomes.get(String(r.status ?? r.error)) ?? 0) + 1);
  console.log(
    `SIGTERM: ${before.length} requests sent before it (${inFlightAtSigterm} in flight at the signal), all answered 202;`,
    `${after.length} sent after it: ${JSON.stringify([...outcomes])}`,
  );
}, 120_000);

test("broker down: requests get 503 + Retry-After within seconds; 202 again once it is back", async () => {
  const topic = await createTopic(3);
  const { url } = await spawnServer({ SCANS_TOPIC: topic, KAFKA_DELIVERY_TIMEOUT_MS: "5000" });
  expect((await postBatch(url, 5)).status).toBe(202);
  try {
    await stopKafka(stack);
    const started = Date.now();
    const during = await postBatch(url, 5);
    expect(during.status).toBe(503);
    expect(during.retryAfter).toBe("2");
    // Bounded: the delivery timeout (5 s) plus slack, never a hang.
    expect(Date.now() - started).toBeLessThan(8_000);
  } finally {
    await startKafka(stack);
  }
  const deadline = Date.now() + 30_000;
  let status = 0;
  while (status !== 202 && Date.now() < deadline) {
    status = (await postBatch(url, 5)).status;
    if (status !== 202) await Bun.sleep(500);
  }
  expect(status).toBe(202);
}, 120_000);

test("client_ip is the peer address; X-Forwarded-For is believed only from a trusted proxy", async () => {
  const topic = await createTopic(1);
  const direct = await spawnServer({ SCANS_TOPIC: topic });
  const trusting = await spawnServer({ SCANS_TOPIC: topic, TRUSTED_PROXIES: "127.0.0.1,10.0.0.2" });
  const send = async (url: string, xff?: string) => {
    const e = scan();
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (xff) headers["x-forwarded-for"] = xff;
    const res = await fetch(`${url}/v1/scans`, { method: "POST", body: JSON.stringify(e), headers });
    expect(res.status).toBe(202);
    return e.event_id;
  };
  const expected = new Map<string, string>([
    [await send(direct.url), "127.0.0.1"],
    [await send(direct.url, "203.0.113.9"), "127.0.0.1"], // untrusted peer: header ignored
    [await send(trusting.url, "203.0.113.9"), "203.0.113.9"],
    [await send(trusting.url, "198.51.100.7, 203.0.113.9, 10.0.0.2"), "203.0.113.9"], // rightmost untrusted hop
  ]);
  const consumer = createConsumer();
  consumer.subscribe([topic]);
  const messages = await consumeN(consumer, expected.size);
  expect(messages.length).toBe(expected.size);
  for (const m of messages) {
    const record = JSON.parse(text(m.value) as string) as { event_id: string; client_ip: string };
    expect(record.client_ip).toBe(expected.get(record.event_id) as string);
  }
}, 60_000);

test("a wrong setting stops the server at start-up with a message naming the variable", async () => {
  const proc = Bun.spawn(["bun", "server/main.ts"], {
    cwd: new URL("../..", import.meta.url).pathname,
    env: { ...process.env, PORT: "eighty", AUTH_DISABLED: "true" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
  const code = await proc.exited;
  clearTimeout(timer);
  expect(code).toBe(1);
  expect(await new Response(proc.stdout).text()).toContain('PORT=\\"eighty\\": must be an integer');
});

test("without any key source (and without AUTH_DISABLED) the server refuses to start; API_KEYS_FILE works", async () => {
  const root = new URL("../..", import.meta.url).pathname;
  const refused = Bun.spawn(["bun", "server/main.ts"], {
    cwd: root,
    env: {
      ...process.env,
      AUTH_DISABLED: "false",
      API_KEY_SHA256: "",
      API_KEYS_DB: "false",
      PORT: "0",
      METRICS_PORT: "0",
    },
    stdout: "pipe",
  });
  expect(await refused.exited).toBe(1);
  expect(await new Response(refused.stdout).text()).toContain("no API keys configured");

  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const dir = mkdtempSync("/tmp/qrscan-keys-");
  const file = `${dir}/keys`;
  const fileKey = newSecret();
  const hash = new Bun.CryptoHasher("sha256").update(fileKey).digest("hex");
  writeFileSync(file, `# ops-managed\n${hash}\n`);
  const topic = await createTopic(1);
  const { url } = await spawnServer({ SCANS_TOPIC: topic, AUTH_DISABLED: "false", API_KEYS_FILE: file });
  const post = (key: string) =>
    fetch(`${url}/v1/scans`, {
      method: "POST",
      body: JSON.stringify(scan()),
      headers: { "content-type": "application/json", "x-api-key": key },
    }).then((r) => r.status);
  expect(await post(fileKey)).toBe(202);
  expect(await post("other")).toBe(401);
}, 60_000);

test("metrics are served on their own port: requests, events, delivery latency, queue depth", async () => {
  const topic = await createTopic(1);
  const { url, metricsUrl } = await spawnServer({ SCANS_TOPIC: topic });
  await postBatch(url, 3);
  await fetch(`${url}/v1/scans`, {
    method: "POST",
    body: JSON.stringify([{ qr_id: "x" }]),
    headers: { "content-type": "application/json" },
  });
  const text = await fetch(metricsUrl).then((r) => r.text());
  expect(text).toContain('http_requests_total{route="/v1/scans",status="202",service="server"} 1');
  expect(text).toContain('http_requests_total{route="/v1/scans",status="400",service="server"} 1');
  expect(text).toContain('scan_events_total{outcome="accepted",reason="",service="server"} 3');
  expect(text).toContain('scan_events_total{outcome="rejected",reason="event_id",service="server"} 1');
  expect(text).toContain("kafka_delivery_duration_seconds_count");
  expect(text).toContain("kafka_producer_queue_depth");
  // Not on the public port.
  expect((await fetch(`${url}/metrics`)).status).toBe(404);
}, 60_000);
