// The librdkafka binding against the real local broker (the repository's stack and fixtures).
import { describe, expect, test } from "bun:test";
import { createAdmin, createConsumer, createProducer, createTopic } from "../../../test/helpers/fixtures.ts";
import { consumeN, text } from "../../../test/helpers/kafka.ts";
import { brokerConfig, ensureStack } from "../../../test/helpers/stack.ts";
// Internal: the library lookup is not public API, but its error is.
import { loadLibrdkafka } from "../src/ffi.ts";
import {
  KafkaAdmin,
  KafkaConsumer,
  KafkaError,
  KafkaProducer,
  LibraryNotFoundError,
  nextOffsets,
} from "../src/index.ts";

await ensureStack();

describe("producer → consumer round trip", () => {
  test("100k messages with headers come back complete and in order per partition", async () => {
    const topic = await createTopic(6);
    const producer = createProducer();
    const N = 100_000;
    const batches: Promise<void>[] = [];
    for (let i = 0; i < N; i += 1_000) {
      const batch = [];
      for (let j = i; j < i + 1_000; j++) {
        batch.push({ topic, key: `qr-${j % 251}`, value: `value-${j}`, headers: { seq: String(j), kind: "test" } });
      }
      batches.push(producer.send(batch));
      if (batches.length >= 50) await batches.shift();
    }
    await Promise.all(batches);

    const consumer = createConsumer();
    consumer.subscribe([topic]);
    const messages = await consumeN(consumer, N, { timeoutMs: 60_000 });
    expect(messages.length).toBe(N);

    const seen = new Set<number>();
    const lastSeqByKey = new Map<string, number>();
    const lastOffsetByPartition = new Map<number, number>();
    for (const m of messages) {
      const seq = Number(text(m.headers?.seq));
      expect(text(m.value)).toBe(`value-${seq}`);
      expect(text(m.headers?.kind)).toBe("test");
      expect(text(m.key)).toBe(`qr-${seq % 251}`);
      seen.add(seq);
      // Same key → same partition → produced order preserved.
      const key = text(m.key) as string;
      expect(seq).toBeGreaterThan(lastSeqByKey.get(key) ?? -1);
      lastSeqByKey.set(key, seq);
      expect(m.offset).toBe((lastOffsetByPartition.get(m.partition) ?? -1) + 1);
      lastOffsetByPartition.set(m.partition, m.offset);
    }
    expect(seen.size).toBe(N);
  });

  test("produce() reports partition and offset; explicit partition and timestamp are honoured", async () => {
    const topic = await createTopic(3);
    const producer = createProducer();
    const first = await producer.produce({
      topic,
      partition: 2,
      key: null,
      value: new Uint8Array([0, 1, 2, 255]),
      timestamp: 1_700_000_000_000,
    });
    const second = await producer.produce({ topic, partition: 2, key: "k", value: null });
    expect(first).toEqual({ topic, partition: 2, offset: 0 });
    expect(second).toEqual({ topic, partition: 2, offset: 1 });

    const consumer = createConsumer();
    consumer.subscribe([topic]);
    const [a, b] = await consumeN(consumer, 2);
    expect(a?.value).toEqual(new Uint8Array([0, 1, 2, 255]));
    expect(a?.key).toBeNull();
    expect(a?.timestamp).toBe(1_700_000_000_000);
    expect(b?.value).toBeNull();
    expect(text(b?.key)).toBe("k");
  });
});

describe("consumer commits", () => {
  test("after a manual commit and a restart, the group resumes exactly after the last commit", async () => {
    const topic = await createTopic(1);
    const producer = createProducer();
    await producer.send(Array.from({ length: 100 }, (_, i) => ({ topic, value: `m${i}` })));
    const group = `g-resume-${Date.now()}`;

    const first = new KafkaConsumer({
      config: { ...brokerConfig, "group.id": group },
    });
    first.subscribe([topic]);
    const got = await consumeN(first, 100);
    expect(got.length).toBe(100);
    // Commit only the first 40: the next reader must start at offset 40.
    await first.commit([{ topic, partition: 0, offset: 40 }]);
    await first.close();

    const second = createConsumer({ "group.id": group });
    second.subscribe([topic]);
    const again = await consumeN(second, 60);
    expect(again.length).toBe(60);
    expect(again[0]?.offset).toBe(40);
    expect(text(again[0]?.value)).toBe("m40");
    expect(again.at(-1)?.offset).toBe(99);

    const admin = createAdmin();
    await second.commit(nextOffsets(again));
    const [lag] = admin.groupLag(group, topic);
    expect(lag).toEqual({ partition: 0, committed: 100, highWatermark: 100, lag: 0 });
  });

  test("two consumers in one group split the partitions and a rebalance loses nothing", async () => {
    const topic = await createTopic(6);
    const producer = createProducer();
    const group = `g-rebalance-${Date.now()}`;
    const total = 6_000;
    const received = new Map<string, number>();
    const record = (ms: { value: Uint8Array | null }[]) => {
      for (const m of ms) received.set(text(m.value) as string, (received.get(text(m.value) as string) ?? 0) + 1);
    };
    const assignedA: number[] = [];
    const a = createConsumer(
      { "group.id": group },
      { onAssign: (ps) => assignedA.push(...ps.map((p) => p.partition)) },
    );
    a.subscribe([topic]);
    await producer.send(Array.from({ length: total / 2 }, (_, i) => ({ topic, key: `k${i}`, value: `v${i}` })));
    // A alone takes everything it can for a while, committing as it goes.
    const deadline = Date.now() + 5_000;
    while (received.size < total / 4 && Date.now() < deadline) {
      const batch = await a.poll(200, 100);
      record(batch);
      if (batch.length) await a.commit(nextOffsets(batch));
    }
    expect(assignedA.length).toBe(6);

    const b = createConsumer({ "group.id": group });
    b.subscribe([topic]);
    // Keep both polling (and committing) until the group has rebalanced onto B.
    const joinDeadline = Date.now() + 20_000;
    while (b.assignment().length === 0 && Date.now() < joinDeadline) {
      for (const c of [a, b]) {
        const batch = await c.poll(200, 50);
        record(batch);
        if (batch.length) await c.commit(nextOffsets(batch));
      }
    }
    expect(b.assignment().length).toBeGreaterThan(0);
    await producer.send(
      Array.from({ length: total / 2 }, (_, i) => ({ topic, key: `k${i}`, value: `v${total / 2 + i}` })),
    );
    const until = Date.now() + 40_000;
    while (received.size < total && Date.now() < until) {
      for (const c of [a, b]) {
        const batch = await c.poll(500, 50);
        record(batch);
        if (batch.length) await c.commit(nextOffsets(batch));
      }
    }
    expect(received.size).toBe(total);
    expect(a.assignment().length + b.assignment().length).toBe(6);
    expect(a.assignment().length).toBeGreaterThan(0);
    expect(b.assignment().length).toBeGreaterThan(0);
    // At-least-once: duplicates are only possible for uncommitted work at rebalance time, and
    // this loop commits every batch before polling again, so there are none.
    expect([...received.values()].every((n) => n === 1)).toBe(true);
  });

  test("with work in flight, a revocation is held, not applied, until a poll with nothing in flight", async () => {
    const topic = await createTopic(6);
    const group = `g-held-${Date.now()}`;
    const a = createConsumer({ "group.id": group });
    a.subscribe([topic]);
    const deadline = Date.now() + 15_000;
    while (a.assignment().length < 6 && Date.now() < deadline) await a.poll(100, 50);
    expect(a.assignment().length).toBe(6);

    const b = createConsumer({ "group.id": group });
    b.subscribe([topic]);
    const joinDeadline = Date.now() + 20_000;
    while (!a.revokePending && Date.now() < joinDeadline) {
      await a.poll(100, 50, { workInFlight: true });
      await b.poll(100, 50);
    }
    expect(a.revokePending).toBe(true);
    // Still held: A keeps every partition, and polling with work in flight returns at once.
    expect(a.assignment().length).toBe(6);
    const started = performance.now();
    expect(await a.poll(100, 2_000, { workInFlight: true })).toEqual([]);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(a.assignment().length).toBe(6);

    await a.poll(100, 50);
    expect(a.revokePending).toBe(false);
    expect(a.assignment().length).toBeLessThan(6);
    const moved = Date.now() + 20_000;
    while (b.assignment().length === 0 && Date.now() < moved) {
      await a.poll(100, 50);
      await b.poll(100, 50);
    }
    expect(a.assignment().length + b.assignment().length).toBe(6);
    expect(b.assignment().length).toBeGreaterThan(0);
  });
});

describe("typed errors, bounded in time", () => {
  test("a bad setting names the property and librdkafka's reason", () => {
    const make = () => new KafkaProducer({ config: { "bootstrap.servers": "127.0.0.1:1", "linger.ms": "soon" } });
    expect(make).toThrow(KafkaError);
    expect(make).toThrow(/linger\.ms=soon/);
    expect(() => new KafkaProducer({ config: { "no.such.setting": 1 } })).toThrow(/No such configuration property/);
  });

  test("a consumer without group.id is a CONFIG error", () => {
    try {
      new KafkaConsumer({ config: { "bootstrap.servers": "127.0.0.1:1" } });
      throw new Error("expected a throw");
    } catch (error) {
      expect((error as KafkaError).code).toBe("CONFIG");
    }
  });

  test("an unreachable broker gives BROKER_UNAVAILABLE / TIMEOUT quickly, not a hang", async () => {
    const producer = createProducer({ "bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 1_500 });
    const started = Date.now();
    await expect(producer.waitUntilConnected(1_000)).rejects.toMatchObject({ code: "TIMEOUT" });
    const delivery = producer.send([{ topic: "scans", value: "x" }]);
    await expect(delivery).rejects.toMatchObject({ code: "BROKER_UNAVAILABLE", retriable: true });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  test("producing to a topic that does not exist fails with UNKNOWN_TOPIC", async () => {
    // librdkafka waits topic.metadata.propagation.max.ms (30 s by default) for a topic to appear.
    const producer = createProducer({ "message.timeout.ms": 10_000, "topic.metadata.propagation.max.ms": 1_000 });
    await expect(producer.send([{ topic: `missing-${Date.now()}`, value: "x" }])).rejects.toMatchObject({
      code: "UNKNOWN_TOPIC",
    });
  });

  test("subscribing to a topic that does not exist fails poll() with UNKNOWN_TOPIC", async () => {
    const consumer = createConsumer();
    consumer.subscribe([`missing-${Date.now()}`]);
    const deadline = Date.now() + 15_000;
    let error: unknown;
    while (!error && Date.now() < deadline)
      error = await consumer.poll(10, 100).then(
        () => undefined,
        (e) => e,
      );
    expect(error).toBeInstanceOf(KafkaError);
    expect((error as KafkaError).code).toBe("UNKNOWN_TOPIC");
  });

  test("a full local queue is a QueueFullError (backpressure), and what was enqueued still lands", async () => {
    const topic = await createTopic(1);
    const producer = createProducer({ "queue.buffering.max.messages": 100, "linger.ms": 50 });
    const result = producer.send(Array.from({ length: 500 }, (_, i) => ({ topic, value: `v${i}` })));
    await expect(result).rejects.toMatchObject({ code: "QUEUE_FULL", retriable: true, name: "QueueFullError" });
    expect(producer.inflight).toBe(0);
    const admin = createAdmin();
    const [lag] = admin.groupLag(`nobody-${Date.now()}`, topic);
    expect(lag?.highWatermark).toBe(100);
  });

  test("a topic librdkafka refuses fails the batch with CONFIG and leaves the in-flight count exact", async () => {
    const topic = await createTopic(1);
    const producer = createProducer();
    const refused = producer.send([
      { topic, value: "first" },
      { topic: "t".repeat(100_000), value: "never enqueued" },
    ]);
    await expect(refused).rejects.toMatchObject({ code: "CONFIG" });
    await expect(refused).rejects.toThrow(/\(100000 characters\)/);
    expect(producer.inflight).toBe(0);
    // The message enqueued before the refusal was still delivered, and the producer still works.
    await producer.send([{ topic, value: "second" }]);
    expect(producer.inflight).toBe(0);
    const [lag] = createAdmin().groupLag(`nobody-${Date.now()}`, topic);
    expect(lag?.highWatermark).toBe(2);
  });

  test("a missing librdkafka is a LibraryNotFoundError naming the package", () => {
    expect(() => loadLibrdkafka("/nonexistent/librdkafka.so.1")).toThrow(LibraryNotFoundError);
    expect(() => loadLibrdkafka("/nonexistent/librdkafka.so.1")).toThrow(/apt-get install librdkafka1/);
  });

  test("closed clients refuse work with CLOSED", async () => {
    const producer = new KafkaProducer({ config: { "bootstrap.servers": "127.0.0.1:1" } });
    await producer.close(100);
    await expect(producer.send([{ topic: "t", value: "x" }])).rejects.toMatchObject({ code: "CLOSED" });
    const admin = new KafkaAdmin({ config: { "bootstrap.servers": "127.0.0.1:1" } });
    admin.close();
    expect(() => admin.describeTopics()).toThrow(/closed/);
  });
});
