// The edge server as a real process: SIGTERM under load loses no 202-acknowledged event, and a
// broker outage turns into 503s within a bounded time and heals when the broker returns.
import { expect, test } from "bun:test";
import { startKafka, stopKafka } from "../../scripts/stack/kafka.ts";
import { consumeN, createConsumer, createTopic, stack, text } from "../helpers/kafka.ts";
import { scan, spawnServer } from "../helpers/server.ts";

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

test("SIGTERM under load: exits 0 and every 202-acknowledged event is in Kafka", async () => {
  const topic = await createTopic(3);
  const { proc, url } = await spawnServer({ SCANS_TOPIC: topic, DRAIN_TIMEOUT_MS: "10000" });
  const acked: string[] = [];
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const r = await postBatch(url, 10).catch(() => null);
      if (!r) break; // connection refused: the server stopped accepting
      if (r.status === 202) acked.push(...r.ids);
    }
  };
  const loops = Array.from({ length: 16 }, worker);
  await Bun.sleep(1_000);
  proc.kill("SIGTERM");
  const exitCode = await proc.exited;
  stop = true;
  await Promise.all(loops);
  expect(exitCode).toBe(0);
  expect(acked.length).toBeGreaterThan(100);

  const consumer = createConsumer();
  consumer.subscribe([topic]);
  const messages = await consumeN(consumer, acked.length, { timeoutMs: 60_000 });
  const stored = new Set(messages.map((m) => text(m.headers?.event_id)));
  const lost = acked.filter((id) => !stored.has(id));
  expect(lost).toEqual([]);
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
