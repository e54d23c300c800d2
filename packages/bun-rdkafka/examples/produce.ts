// Produce with delivery reports: `produce()` resolves once the message is on every in-sync
// replica (acks=all, idempotent), with the partition and offset it landed at.
//   KAFKA_BROKERS=127.0.0.1:9092 KAFKA_TOPIC=demo bun examples/produce.ts
import { KafkaProducer, QueueFullError } from "bun-rdkafka";

const brokers = process.env.KAFKA_BROKERS ?? "127.0.0.1:9092";
const topic = process.env.KAFKA_TOPIC ?? "demo";

const producer = new KafkaProducer({ config: { "bootstrap.servers": brokers } });
try {
  await producer.waitUntilConnected(10_000);
  const report = await producer.produce({ topic, key: "qr-1", value: "hello", headers: { source: "example" } });
  console.log(`delivered to ${report.topic}/${report.partition} at offset ${report.offset}`);

  // A batch: resolves when all 100 are acknowledged; a full local queue is a retriable error.
  const batch = Array.from({ length: 100 }, (_, i) => ({ topic, key: `qr-${i % 7}`, value: `scan ${i}` }));
  try {
    await producer.send(batch);
  } catch (error) {
    if (!(error instanceof QueueFullError)) throw error;
    await Bun.sleep(100); // back off, then send again (a real caller retries only what failed)
    await producer.send(batch);
  }
  console.log(`delivered ${batch.length} more`);
} finally {
  await producer.close();
}
