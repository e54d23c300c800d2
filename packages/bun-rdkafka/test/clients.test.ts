// The public methods the round-trip tests (binding.test.ts) do not reach: the admin client's topic
// calls, the producer's state accessors and flush, the consumer's pause and resume.
import { describe, expect, test } from "bun:test";
import {
  createAdmin,
  createConsumer,
  createProducer,
  createTopic,
  uniqueName,
} from "../../../test/helpers/fixtures.ts";
import { ensureStack } from "../../../test/helpers/stack.ts";
import { KafkaProducer } from "../src/index.ts";

await ensureStack();

describe("KafkaAdmin", () => {
  test("createTopics waits for leaders, describeTopics shows them, deleteTopics removes the topic", async () => {
    const admin = createAdmin();
    const name = uniqueName("admin");
    await admin.createTopics([{ name, partitions: 4, config: { "retention.ms": "60000" } }], { ignoreExisting: false });
    const [described] = admin.describeTopics([name]);
    expect(described?.err).toBe(0);
    expect(described?.partitions.map((p) => p.id)).toEqual([0, 1, 2, 3]);
    expect(described?.partitions.every((p) => p.leader >= 0)).toBe(true);
    // Creating it again: fine with ignoreExisting (the default), a KAFKA error without.
    await admin.createTopics([{ name, partitions: 4 }]);
    await expect(admin.createTopics([{ name, partitions: 4 }], { ignoreExisting: false })).rejects.toThrow(
      /already exists/,
    );

    await admin.deleteTopics([name]);
    const deadline = Date.now() + 15_000;
    let after = admin.describeTopics([name]);
    while (after[0]?.err === 0 && Date.now() < deadline) {
      await Bun.sleep(100);
      after = admin.describeTopics([name]);
    }
    expect(after[0]?.err).not.toBe(0);
    expect(after[0]?.partitions).toEqual([]);
  });
});

describe("KafkaProducer state", () => {
  test("connected, queueLength and flush follow the deliveries; fatalError stays null when healthy", async () => {
    const topic = await createTopic(1);
    const producer = createProducer({ "linger.ms": 300 });
    expect(producer.fatalError).toBeNull();
    await producer.waitUntilConnected(10_000);
    expect(producer.connected).toBe(true);

    const pending = producer.send(Array.from({ length: 50 }, (_, i) => ({ topic, value: `v${i}` })));
    // linger.ms=300: the 50 messages sit in librdkafka's queue for a while.
    expect(producer.queueLength).toBeGreaterThan(0);
    expect(producer.inflight).toBe(50);
    expect(await producer.flush(10_000)).toBe(true);
    expect(producer.queueLength).toBe(0);
    expect(producer.inflight).toBe(0);
    await pending;
    expect(producer.fatalError).toBeNull();

    await producer.close();
    expect(producer.connected).toBe(false);
    // It did connect: that stays true whatever happened since.
    expect(producer.hasConnected).toBe(true);
    expect(producer.queueLength).toBe(0);
  });

  test("flush gives up at its deadline (false) when the broker is unreachable", async () => {
    const producer = new KafkaProducer({
      config: { "bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 60_000 },
    });
    const pending = producer.send([{ topic: "nowhere", value: "x" }]).catch((e) => e);
    const started = Date.now();
    expect(await producer.flush(300)).toBe(false);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(producer.connected).toBe(false);
    expect(producer.hasConnected).toBe(false);
    await producer.close(100);
    // close() purged it: the send rejects, it is never reported delivered.
    expect(await pending).toMatchObject({ code: "BROKER_UNAVAILABLE" });
  });
});

describe("KafkaConsumer pause/resume", () => {
  test("a paused partition delivers nothing until it is resumed, then everything", async () => {
    const topic = await createTopic(2);
    const consumer = createConsumer({ "group.id": uniqueName("pause") });
    consumer.subscribe([topic]);
    const deadline = Date.now() + 20_000;
    while (consumer.assignment().length < 2 && Date.now() < deadline) await consumer.poll(10, 100);
    expect(consumer.assignment().length).toBe(2);

    consumer.pause([{ topic, partition: 0 }]);
    const producer = createProducer();
    await producer.send([
      ...Array.from({ length: 10 }, (_, i) => ({ topic, partition: 0, value: `p0-${i}` })),
      ...Array.from({ length: 10 }, (_, i) => ({ topic, partition: 1, value: `p1-${i}` })),
    ]);
    const whilePaused: number[] = [];
    const until = Date.now() + 2_000;
    while (Date.now() < until) for (const m of await consumer.poll(100, 100)) whilePaused.push(m.partition);
    expect(whilePaused.filter((p) => p === 1).length).toBe(10);
    expect(whilePaused.filter((p) => p === 0)).toEqual([]);

    consumer.resume([{ topic, partition: 0 }]);
    const afterResume: number[] = [];
    const resumeDeadline = Date.now() + 15_000;
    while (afterResume.length < 10 && Date.now() < resumeDeadline) {
      for (const m of await consumer.poll(100, 100)) afterResume.push(m.partition);
    }
    expect(afterResume).toEqual(Array(10).fill(0));
  });
});
