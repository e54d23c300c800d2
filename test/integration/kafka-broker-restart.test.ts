// The idempotent producer across a broker restart: every message sent before, during and after
// the outage is delivered exactly once (no loss, no duplicates from internal retries).
import { expect, test } from "bun:test";
import { startKafka, stopKafka } from "../../scripts/stack/kafka.ts";
import { consumeN, createConsumer, createProducer, createTopic, stack, text } from "../helpers/kafka.ts";

test("idempotent producer loses and duplicates nothing across a broker restart", async () => {
  const topic = await createTopic(3);
  const producer = createProducer({ "message.timeout.ms": 120_000, "linger.ms": 2 });
  const sends: Promise<void>[] = [];
  let seq = 0;
  const sendBatch = () => {
    const batch = Array.from({ length: 200 }, () => {
      const n = seq++;
      return { topic, key: `k${n % 17}`, value: `m${n}` };
    });
    sends.push(producer.send(batch));
  };

  for (let i = 0; i < 10; i++) sendBatch();
  const stopping = stopKafka(stack);
  // Keep producing while the broker goes down and while it is away.
  for (let i = 0; i < 10; i++) {
    sendBatch();
    await Bun.sleep(50);
  }
  await stopping;
  for (let i = 0; i < 5; i++) sendBatch();
  await startKafka(stack);
  for (let i = 0; i < 5; i++) sendBatch();

  await Promise.all(sends);
  expect(seq).toBe(30 * 200);

  const consumer = createConsumer();
  consumer.subscribe([topic]);
  const messages = await consumeN(consumer, seq, { timeoutMs: 60_000 });
  const counts = new Map<string, number>();
  for (const m of messages) counts.set(text(m.value) as string, (counts.get(text(m.value) as string) ?? 0) + 1);
  // Nothing more arrives after the expected count: no duplicates hiding at the tail.
  expect((await consumer.poll(100, 1_000)).length).toBe(0);
  expect(counts.size).toBe(seq);
  expect([...counts.values()].every((n) => n === 1)).toBe(true);
}, 180_000);
