// Consume with manual commits: process a batch, then commit the next offsets, then poll again.
// Whatever is not committed is delivered again after a restart or rebalance (at-least-once).
//   KAFKA_BROKERS=127.0.0.1:9092 KAFKA_TOPIC=demo KAFKA_GROUP=demo-group EXPECT=101 bun examples/consume.ts
import { KafkaConsumer, nextOffsets } from "bun-rdkafka";

const brokers = process.env.KAFKA_BROKERS ?? "127.0.0.1:9092";
const topic = process.env.KAFKA_TOPIC ?? "demo";
const group = process.env.KAFKA_GROUP ?? "demo-group";
const expect = Number(process.env.EXPECT ?? 101);

const consumer = new KafkaConsumer({ config: { "bootstrap.servers": brokers, "group.id": group } });
try {
  consumer.subscribe([topic]);
  let seen = 0;
  const deadline = Date.now() + 30_000;
  while (seen < expect && Date.now() < deadline) {
    const batch = await consumer.poll(500, 200); // up to 500 messages, waiting at most 200 ms
    if (batch.length === 0) continue;
    seen += batch.length; // ... write the batch somewhere durable here ...
    await consumer.commit(nextOffsets(batch)); // then commit: last processed offset + 1 per partition
  }
  console.log(`consumed and committed ${seen} messages`);
  if (seen < expect) throw new Error(`expected ${expect} messages within 30 s, got ${seen}`);
} finally {
  await consumer.close();
}
