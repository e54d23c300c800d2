// Kafka clients under Bun, one run, one broker, the same settings: the bun-rdkafka binding,
// @platformatic/kafka and kafkajs (pure JS), and Kafka's own perf tools (Java) as the reference.
//   bun bench/kafka-clients.ts [--records 300000] [--sizes 100,1024|none] [--rate 5000] [--seconds 10]
//                              [--consume 200000] [--consume-size 100] [--commit-every 1000]
//                              [--clients bun-rdkafka,@platformatic/kafka,kafkajs,java]
// `--sizes none` skips the producers (the consumers only, e.g. while working on the consumer).
// Settings for every client: acks=all, idempotent, lz4, batch.size 1 MB where the client has one,
// the same payload bytes (random capital letters, as kafka-producer-perf-test makes them), no keys.
// - producer records/s: `records` records sent as fast as the client takes them, in sends of 1000
//   (at most 90 sends outstanding), counted on the broker afterwards;
// - producer p50/p99 delivery latency at a fixed offered rate (`rate` records/s for `seconds`):
//   records are due on a 1 ms schedule and timed from when they were due (no coordinated
//   omission) to their acknowledgement. librdkafka and Java batch by themselves (linger.ms=5);
//   the pure-JS clients send one request per send() call and have no linger, so the bench gathers
//   their records for 5 ms per send(), the same wait;
// - consumer messages/s: `consume` records read by a new group from the start, committing the
//   next offsets every `commit-every` messages (awaited); timed from the moment the group assigned
//   the partitions to the last message (join excluded, prefetching included: the clients prefetch
//   different amounts, and the whole compressed topic fits in one fetch); counted from the
//   offsets, not the callbacks. kafka-consumer-perf-test cannot commit every N: it auto-commits,
//   and its fetch.nMsg.sec also excludes the join.
// The broker is warmed up first (a discarded fixed-rate run): the first client measured would
// otherwise pay for the broker's JIT and first-segment costs.
import { Consumer, MessagesStreamModes, ProduceAcks, Producer } from "@platformatic/kafka";
import { lz4Compress, lz4Decompress } from "@platformatic/wasm-utils";
import { KafkaAdmin, KafkaConsumer, KafkaProducer, type ProducerMessage } from "bun-rdkafka";
import { CompressionCodecs, CompressionTypes, Kafka, logLevel } from "kafkajs";
import { localStack } from "../shared/local-stack.ts";
import { startKafka } from "../tools/stack/kafka.ts";
import { consumerPerfTest, producerPerfTest } from "./kafka-perf-tools.ts";
import { arg, numArg, printTable, randomPayload, saveResults } from "./lib.ts";

const stack = localStack();
const records = numArg("records", 300_000);
const sizesArg = arg("sizes", "100,1024");
const sizes = sizesArg === "none" ? [] : sizesArg.split(",").map(Number);
const rate = numArg("rate", 5_000);
const seconds = numArg("seconds", 10);
const consumeCount = numArg("consume", 200_000);
const consumeSize = numArg("consume-size", 100);
const commitEvery = numArg("commit-every", 1_000);
const clients = new Set(arg("clients", "bun-rdkafka,@platformatic/kafka,kafkajs,java").split(","));
const PARTITIONS = 12;
const SEND_BATCH = 1_000;
const MAX_OUTSTANDING_SENDS = 90;
const JS_LINGER_MS = 5;

const RDKAFKA_SETTINGS = {
  acks: "all",
  "enable.idempotence": "true",
  "compression.type": "lz4",
  "linger.ms": "5",
  "batch.size": "1000000",
};

// kafkajs has no LZ4 codec of its own: it gets the same WASM LZ4 (frame format) @platformatic/kafka uses.
CompressionCodecs[CompressionTypes.LZ4] = () => ({
  compress: async (encoder: { buffer: Buffer }) => lz4Compress(encoder.buffer),
  decompress: async (buffer: Buffer) => lz4Decompress(buffer),
});

/** A client under test: send() resolves once every record is acknowledged (acks=all). */
interface ProducerUnderTest {
  send(topic: string, values: Buffer[]): Promise<void>;
  close(): Promise<void>;
  /** The pure-JS clients have no linger: the latency run gathers their records this long per send(). */
  lingerMs: number;
}

async function bindingProducer(): Promise<ProducerUnderTest> {
  const p = new KafkaProducer({ config: { "bootstrap.servers": stack.brokers, ...RDKAFKA_SETTINGS } });
  await p.waitUntilConnected(10_000);
  return {
    lingerMs: 0,
    send: (topic, values) => p.send(values.map((value): ProducerMessage => ({ topic, value }))),
    close: () => p.close(),
  };
}

async function platformaticProducer(): Promise<ProducerUnderTest> {
  const p = new Producer({
    clientId: "bench-platformatic",
    bootstrapBrokers: [stack.brokers],
    idempotent: true,
    acks: ProduceAcks.ALL,
    compression: "lz4",
  });
  return {
    lingerMs: JS_LINGER_MS,
    send: async (topic, values) => {
      await p.send({ messages: values.map((value) => ({ topic, value })) });
    },
    close: () => p.close(),
  };
}

async function kafkajsProducer(): Promise<ProducerUnderTest> {
  const kafka = new Kafka({ clientId: "bench-kafkajs", brokers: [stack.brokers], logLevel: logLevel.ERROR });
  const p = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await p.connect();
  return {
    lingerMs: JS_LINGER_MS,
    send: async (topic, values) => {
      await p.send({
        topic,
        acks: -1,
        compression: CompressionTypes.LZ4,
        messages: values.map((value) => ({ value })),
      });
    },
    close: () => p.disconnect(),
  };
}

const admin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
const stored = (topic: string) => admin.groupLag("bench-nobody", topic).reduce((sum, p) => sum + p.highWatermark, 0);

async function freshTopic(prefix: string): Promise<string> {
  const name = `${prefix}-${Date.now()}`;
  await admin.createTopics([{ name, partitions: PARTITIONS }], { ignoreExisting: false });
  return name;
}

/** Records/s sending `n` records of `payload` as fast as the client takes them; checked on the broker. */
async function throughput(client: ProducerUnderTest, topic: string, payload: Buffer, n: number): Promise<number> {
  const batch: Buffer[] = Array.from({ length: SEND_BATCH }, () => payload);
  const outstanding: Promise<void>[] = [];
  const before = stored(topic);
  const started = performance.now();
  for (let sent = 0; sent < n; sent += SEND_BATCH) {
    outstanding.push(client.send(topic, batch));
    if (outstanding.length >= MAX_OUTSTANDING_SENDS) await outstanding.shift();
  }
  await Promise.all(outstanding);
  const perSec = n / ((performance.now() - started) / 1000);
  const landed = stored(topic) - before;
  if (landed !== n) throw new Error(`${topic}: ${landed} of ${n} records stored`);
  return perSec;
}

const percentile = (sorted: Float64Array, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;

/** p50/p99 ms from when each record was due (a 1 ms schedule at `perSec`) to its acknowledgement. */
async function latency(client: ProducerUnderTest, topic: string, payload: Buffer, perSec: number, secs: number) {
  const total = perSec * secs;
  const latencies = new Float64Array(total);
  const pending: Promise<void>[] = [];
  let issued = 0;
  let gathered: Buffer[] = [];
  let gatheredDue: number[] = [];
  let gatherStarted = 0;
  const flush = () => {
    if (gathered.length === 0) return;
    const due = gatheredDue;
    const first = issued - due.length;
    pending.push(
      client.send(topic, gathered).then(() => {
        const now = performance.now();
        for (let i = 0; i < due.length; i++) latencies[first + i] = now - (due[i] as number);
      }),
    );
    gathered = [];
    gatheredDue = [];
  };
  const started = performance.now();
  while (issued < total) {
    const now = performance.now();
    // Every record due by now is handed over now, stamped with when it was due.
    const dueCount = Math.min(total, Math.floor(((now - started) * perSec) / 1000));
    if (gathered.length === 0) gatherStarted = now;
    for (; issued < dueCount; issued++) {
      gathered.push(payload);
      gatheredDue.push(started + (issued * 1000) / perSec);
    }
    if (now - gatherStarted >= client.lingerMs || issued === total) flush();
    await Bun.sleep(1);
  }
  flush();
  await Promise.all(pending);
  latencies.sort();
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/** Messages read so far, from the next offset per partition (every partition starts at 0). */
const sumOffsets = (next: Map<number, number | string>) => {
  let sum = 0;
  for (const offset of next.values()) sum += Number(offset);
  return sum;
};

/** Messages/s reading `n` messages from the start of `topic`, committing every `commitEvery`. */
async function bindingConsume(topic: string, n: number): Promise<number> {
  let started = 0;
  const c = new KafkaConsumer({
    config: { "bootstrap.servers": stack.brokers, "group.id": `bench-binding-${Date.now()}` },
    onAssign: () => {
      started ||= performance.now();
    },
  });
  c.subscribe([topic]);
  const next = new Map<number, number>();
  let count = 0;
  let sinceCommit = 0;
  const deadline = Date.now() + 120_000;
  while (count < n && Date.now() < deadline) {
    const batch = await c.poll(commitEvery, 100);
    if (batch.length === 0) continue;
    for (const m of batch) next.set(m.partition, m.offset + 1);
    count = sumOffsets(next);
    sinceCommit += batch.length;
    if (sinceCommit >= commitEvery || count >= n) {
      await c.commit([...next].map(([partition, offset]) => ({ topic, partition, offset })));
      sinceCommit = 0;
    }
  }
  const elapsed = performance.now() - started;
  await c.close();
  if (count < n) throw new Error(`binding consumer read ${count} of ${n}`);
  return n / (elapsed / 1000);
}

async function platformaticConsume(topic: string, n: number): Promise<number> {
  const c = new Consumer({
    clientId: "bench-platformatic",
    groupId: `bench-platformatic-${Date.now()}`,
    bootstrapBrokers: [stack.brokers],
  });
  let started = 0;
  c.on("consumer:group:join", () => {
    started ||= performance.now();
  });
  const stream = await c.consume({
    topics: [topic],
    mode: MessagesStreamModes.EARLIEST,
    autocommit: false,
    maxWaitTime: 100,
  });
  const last = new Map<number, { commit(): void | Promise<void> }>();
  const next = new Map<number, number>();
  let count = 0;
  let sinceCommit = 0;
  const timer = setTimeout(() => stream.close(), 120_000);
  for await (const m of stream) {
    last.set(m.partition, m);
    next.set(m.partition, Number(m.offset) + 1);
    count = sumOffsets(next);
    if (++sinceCommit >= commitEvery || count >= n) {
      await Promise.all([...last.values()].map((x) => x.commit()));
      last.clear();
      sinceCommit = 0;
    }
    if (count >= n) break;
  }
  const elapsed = performance.now() - started;
  clearTimeout(timer);
  await stream.close();
  await c.close();
  if (count < n) throw new Error(`@platformatic/kafka consumer read ${count} of ${n}`);
  return n / (elapsed / 1000);
}

async function kafkajsConsume(topic: string, n: number): Promise<number> {
  const kafka = new Kafka({ clientId: "bench-kafkajs", brokers: [stack.brokers], logLevel: logLevel.ERROR });
  const c = kafka.consumer({ groupId: `bench-kafkajs-${Date.now()}`, maxWaitTimeInMs: 100 });
  let started = 0;
  c.on(c.events.GROUP_JOIN, () => {
    started ||= performance.now();
  });
  await c.connect();
  await c.subscribe({ topic, fromBeginning: true });
  const next = new Map<number, string>();
  let count = 0;
  let sinceCommit = 0;
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  await c.run({
    autoCommit: false,
    eachBatchAutoResolve: true,
    eachBatch: async ({ batch }) => {
      // A fetched batch can hold thousands of messages: commit inside it, every `commitEvery`.
      for (const m of batch.messages) {
        if (count >= n) break;
        next.set(batch.partition, String(Number(m.offset) + 1));
        count = sumOffsets(next);
        if (++sinceCommit >= commitEvery || count >= n) {
          await c.commitOffsets([...next].map(([partition, offset]) => ({ topic, partition, offset })));
          sinceCommit = 0;
        }
      }
      if (count >= n) finish();
    },
  });
  const timeout = setTimeout(finish, 120_000);
  await done;
  const elapsed = performance.now() - started;
  clearTimeout(timeout);
  await c.disconnect();
  if (count < n) throw new Error(`kafkajs consumer read ${count} of ${n}`);
  return n / (elapsed / 1000);
}

const PRODUCERS: [string, () => Promise<ProducerUnderTest>][] = [
  ["bun-rdkafka", bindingProducer],
  ["@platformatic/kafka", platformaticProducer],
  ["kafkajs", kafkajsProducer],
];

await startKafka(stack);
{
  // Broker warm-up, discarded.
  const topic = await freshTopic("bench-clients-warmup");
  const client = await bindingProducer();
  await throughput(client, topic, randomPayload(100), 50_000);
  await latency(client, topic, randomPayload(100), rate, 3);
  await client.close();
  await admin.deleteTopics([topic]);
}
const rows: Record<string, string | number>[] = [];
const fmt = (x: number) => Math.round(x);
for (const size of sizes) {
  const payload = randomPayload(size);
  for (const [name, make] of PRODUCERS) {
    if (!clients.has(name)) continue;
    const topic = await freshTopic(`bench-clients-${size}`);
    const client = await make();
    try {
      const perSec = await throughput(client, topic, payload, records);
      const { p50, p99 } = await latency(client, topic, payload, rate, seconds);
      rows.push({
        client: name,
        value_bytes: size,
        rec_s: fmt(perSec),
        p50_ms: p50.toFixed(1),
        p99_ms: p99.toFixed(1),
      });
      console.log(JSON.stringify(rows.at(-1)));
    } finally {
      await client.close();
      await admin.deleteTopics([topic]);
    }
  }
  if (!clients.has("java")) continue;
  const topic = await freshTopic(`bench-clients-java-${size}`);
  const max = producerPerfTest(stack, { topic, records, payload, props: RDKAFKA_SETTINGS });
  const fixed = producerPerfTest(stack, {
    topic,
    records: rate * seconds,
    payload,
    throughput: rate,
    props: RDKAFKA_SETTINGS,
  });
  rows.push({
    client: "kafka-producer-perf-test (Java)",
    value_bytes: size,
    rec_s: fmt(max.recordsPerSec),
    p50_ms: fixed.p50Ms.toFixed(1),
    p99_ms: fixed.p99Ms.toFixed(1),
  });
  console.log(JSON.stringify(rows.at(-1)));
  await admin.deleteTopics([topic]);
}

// Consumers: one topic filled once by the binding, each client in its own group.
const consumeTopic = await freshTopic("bench-clients-consume");
{
  const fill = await bindingProducer();
  const payload = randomPayload(consumeSize);
  for (let sent = 0; sent < consumeCount; sent += SEND_BATCH) {
    await fill.send(
      consumeTopic,
      Array.from({ length: Math.min(SEND_BATCH, consumeCount - sent) }, () => payload),
    );
  }
  await fill.close();
}
const consumerRows: Record<string, string | number>[] = [];
for (const [name, run] of [
  ["bun-rdkafka", bindingConsume],
  ["@platformatic/kafka", platformaticConsume],
  ["kafkajs", kafkajsConsume],
] as const) {
  if (!clients.has(name)) continue;
  consumerRows.push({
    client: name,
    value_bytes: consumeSize,
    commit_every: commitEvery,
    msg_s: fmt(await run(consumeTopic, consumeCount)),
  });
  console.log(JSON.stringify(consumerRows.at(-1)));
}
if (clients.has("java"))
  consumerRows.push({
    client: "kafka-consumer-perf-test (Java)",
    value_bytes: consumeSize,
    commit_every: "auto (5 s)",
    msg_s: fmt(
      consumerPerfTest(stack, {
        topic: consumeTopic,
        messages: consumeCount,
        group: `bench-java-${Date.now()}`,
        props: { "auto.offset.reset": "earliest", "enable.auto.commit": "true" },
      }),
    ),
  });
await admin.deleteTopics([consumeTopic]);
admin.close();

console.log(`\nProducers: ${records} records as fast as taken; latency at ${rate} records/s for ${seconds} s`);
printTable(rows);
console.log(`\nConsumers: ${consumeCount} records from the start, commits awaited every ${commitEvery}`);
printTable(consumerRows);
const settings = { RDKAFKA_SETTINGS, SEND_BATCH, MAX_OUTSTANDING_SENDS, JS_LINGER_MS, PARTITIONS };
console.log(
  `results: ${saveResults("kafka-clients", { records, rate, seconds, consumeCount, commitEvery, settings, rows, consumerRows })}`,
);
