// Producer micro-benchmark: our bun:ffi binding vs Kafka's own kafka-producer-perf-test
// (org.apache.kafka.tools.ProducerPerformance from the same jars), same broker, same topic,
// same settings (acks=all, idempotence, linger.ms=5, lz4). Prints records/s, MB/s and the ratio.
//   bun bench/kafka-producer.ts [--records 500000] [--sizes 100,1024] [--rounds 3]
import { KafkaAdmin, KafkaProducer, type ProducerMessage } from "bun-rdkafka";
import { localStack } from "../shared/local-stack.ts";
import { startKafka } from "../tools/stack/kafka.ts";
import { producerPerfTest } from "./kafka-perf-tools.ts";
import { arg, median, numArg, printTable, randomPayload, saveResults } from "./lib.ts";

const stack = localStack();
const records = numArg("records", 300_000);
const sizes = arg("sizes", "100,1024").split(",").map(Number);
const rounds = numArg("rounds", 3);
// batch.size is set for both: Java defaults to 16 KB, librdkafka to 1 MB, which alone skews 1 KiB records.
const SETTINGS = {
  acks: "all",
  "enable.idempotence": "true",
  "linger.ms": "5",
  "compression.type": "lz4",
  "batch.size": "1000000",
};

async function bindingRun(topic: string, size: number, n: number): Promise<number> {
  const producer = new KafkaProducer({ config: { "bootstrap.servers": stack.brokers, ...SETTINGS } });
  await producer.waitUntilConnected(10_000);
  const value = randomPayload(size);
  const batch: ProducerMessage[] = Array.from({ length: 1_000 }, () => ({ topic, value }));
  const inflight: Promise<void>[] = [];
  const started = performance.now();
  for (let sent = 0; sent < n; sent += batch.length) {
    inflight.push(producer.send(batch));
    // Bounded: at most 100k messages outstanding (librdkafka's default queue holds 100k).
    if (inflight.length >= 90) await inflight.shift();
  }
  await Promise.all(inflight);
  const seconds = (performance.now() - started) / 1000;
  await producer.close();
  return n / seconds;
}

function perfTestRun(topic: string, size: number, n: number): number {
  return producerPerfTest(stack, { topic, records: n, size, props: SETTINGS }).recordsPerSec;
}

await startKafka(stack);
const admin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
const results = [];
for (const size of sizes) {
  const topic = `bench-producer-${size}-${Date.now()}`;
  await admin.createTopics([{ name: topic, partitions: 12 }]);
  const ours: number[] = [];
  const theirs: number[] = [];
  // Alternate the two so machine noise hits both alike; medians of `rounds` runs.
  const landed = () => admin.groupLag("bench-nobody", topic).reduce((sum, p) => sum + p.highWatermark, 0);
  for (let r = 0; r < rounds; r++) {
    const before = landed();
    ours.push(await bindingRun(topic, size, records));
    // Counted on the broker, not in the client: every record of the run must be in the log.
    const stored = landed() - before;
    if (stored !== records) throw new Error(`binding run stored ${stored} of ${records} records`);
    theirs.push(perfTestRun(topic, size, records));
  }
  await admin.deleteTopics([topic]);
  const o = median(ours);
  const t = median(theirs);
  results.push({
    value_bytes: size,
    binding_rec_s: Math.round(o),
    binding_MB_s: ((o * size) / 1e6).toFixed(1),
    perf_test_rec_s: Math.round(t),
    perf_test_MB_s: ((t * size) / 1e6).toFixed(1),
    ratio: (o / t).toFixed(2),
  });
}
admin.close();
console.log(`\nProducer throughput, ${records} records per run, median of ${rounds} (target ratio >= 0.70):`);
printTable(results);
console.log(`results: ${saveResults("kafka-producer", { records, rounds, settings: SETTINGS, results })}`);
