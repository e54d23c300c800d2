// Memory soak of the binding: produce and consume continuously (with headers, commits, stats
// events) and sample RSS. Flat RSS after warm-up means no handle, event or buffer leaks.
//   bun bench/kafka-soak.ts [--seconds 60]
import { KafkaAdmin, KafkaConsumer, KafkaProducer, nextOffsets } from "bun-rdkafka";
import { localStack } from "../shared/local-stack.ts";
import { startKafka } from "../tools/stack/kafka.ts";
import { numArg, printTable, saveResults } from "./lib.ts";

const stack = localStack();
const seconds = numArg("seconds", 60);
await startKafka(stack);
const config = { "bootstrap.servers": stack.brokers, "statistics.interval.ms": 1_000 };
const admin = new KafkaAdmin({ config });
const topic = `bench-soak-${Date.now()}`;
await admin.createTopics([{ name: topic, partitions: 6 }]);

const producer = new KafkaProducer({ config, onStats: () => {} });
const consumer = new KafkaConsumer({ config: { ...config, "group.id": `soak-${Date.now()}` }, onStats: () => {} });
consumer.subscribe([topic]);

const samples: { t_s: number; rss_MiB: string; produced: number; consumed: number }[] = [];
let produced = 0;
let consumed = 0;
const started = Date.now();
let nextSample = started;
const value = "x".repeat(200);
while (Date.now() - started < seconds * 1000) {
  const batch = Array.from({ length: 500 }, (_, i) => ({
    topic,
    key: `k${(produced + i) % 1000}`,
    value,
    headers: { event_id: crypto.randomUUID(), v: "1" },
  }));
  await producer.send(batch);
  produced += batch.length;
  const got = await consumer.poll(1_000, 5);
  consumed += got.length;
  if (got.length) await consumer.commit(nextOffsets(got));
  if (Date.now() >= nextSample) {
    Bun.gc(true);
    samples.push({
      t_s: Math.round((Date.now() - started) / 1000),
      rss_MiB: (process.memoryUsage.rss() / 2 ** 20).toFixed(1),
      produced,
      consumed,
    });
    nextSample += Math.max(1_000, (seconds * 1000) / 12);
  }
}
await consumer.close();
await producer.close();
await admin.deleteTopics([topic]);
admin.close();

printTable(samples);
// Compare the second half's growth to its start: warm-up (JIT, librdkafka buffers) is excluded.
const half = samples.slice(Math.floor(samples.length / 2));
const first = Number(half[0]?.rss_MiB);
const last = Number(half.at(-1)?.rss_MiB);
console.log(`\nRSS second half: ${first} MiB -> ${last} MiB (ratio ${(last / first).toFixed(3)}; flat is ~1.00)`);
console.log(`results: ${saveResults("kafka-soak", { seconds, samples, ratio: last / first })}`);
