// Consumer-group lag via the admin client: committed offset vs. high watermark per partition.
//   KAFKA_BROKERS=127.0.0.1:9092 KAFKA_TOPIC=demo KAFKA_GROUP=demo-group bun examples/lag.ts
import { KafkaAdmin } from "bun-rdkafka";

const brokers = process.env.KAFKA_BROKERS ?? "127.0.0.1:9092";
const topic = process.env.KAFKA_TOPIC ?? "demo";
const group = process.env.KAFKA_GROUP ?? "demo-group";

const admin = new KafkaAdmin({ config: { "bootstrap.servers": brokers } });
try {
  const partitions = admin.groupLag(group, topic);
  for (const p of partitions) {
    console.log(`${topic}/${p.partition}: committed ${p.committed}, high watermark ${p.highWatermark}, lag ${p.lag}`);
  }
  console.log(`total lag ${partitions.reduce((sum, p) => sum + p.lag, 0)}`);
} finally {
  admin.close();
}
