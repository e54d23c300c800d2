// The consumer's batch path against the real broker: a poll gathers a slice of fetch events and
// copies every key, value and header value of it into one buffer. These tests pin what callers
// rely on: each message's bytes, headers, timestamp and offset are its own and stay so after later
// polls; batches polled with work in flight cross a rebalance without loss or repeats;
// pausing a partition with prefetched messages loses and repeats nothing.
import { describe, expect, test } from "bun:test";
import { createConsumer, createProducer, createTopic, uniqueName } from "../../../test/helpers/fixtures.ts";
import { text } from "../../../test/helpers/kafka.ts";
import { ensureStack } from "../../../test/helpers/stack.ts";
import { type ConsumedMessage, type KafkaConsumer, type KafkaError, nextOffsets } from "../src/index.ts";

await ensureStack();

/** Polls until `count` messages arrived; returns the batches as poll() gave them. */
async function pollBatches(consumer: KafkaConsumer, count: number, maxMessages: number, timeoutMs = 30_000) {
  const batches: ConsumedMessage[][] = [];
  let got = 0;
  const deadline = Date.now() + timeoutMs;
  while (got < count && Date.now() < deadline) {
    const batch = await consumer.poll(Math.min(maxMessages, count - got), 100);
    if (batch.length) batches.push(batch);
    got += batch.length;
  }
  return batches;
}

/** A plain copy of what a caller sees, to compare with the message objects later. */
const snapshot = (m: ConsumedMessage) => ({
  partition: m.partition,
  offset: m.offset,
  key: m.key ? [...m.key] : null,
  value: m.value ? [...m.value] : null,
  headers: m.headers ? Object.fromEntries(Object.entries(m.headers).map(([k, v]) => [k, [...v]])) : null,
  timestamp: m.timestamp,
});

describe("KafkaConsumer batches", () => {
  test("every message of a batch keeps its own key, value, headers and timestamp, unchanged by later polls", async () => {
    const topic = await createTopic(1);
    const producer = createProducer();
    const N = 2_000;
    const T0 = 1_700_000_000_000;
    // Mixed shapes in one partition, so that one poll's slice holds all of them: with and without
    // key, value and headers, empty values, and values of different lengths.
    const sent = Array.from({ length: N }, (_, i) => ({
      topic,
      key: i % 5 === 0 ? null : `key-${i}`,
      value: i % 7 === 0 ? null : i % 11 === 0 ? "" : `value-${i}-${"x".repeat(i % 50)}`,
      headers: i % 3 === 0 ? undefined : { traceparent: `00-${String(i).padStart(32, "0")}-01`, seq: String(i) },
      timestamp: T0 + i,
    }));
    await producer.send(sent);

    const consumer = createConsumer({ "group.id": uniqueName("batch-bytes") });
    consumer.subscribe([topic]);
    const batches = await pollBatches(consumer, N, 700);
    const messages = batches.flat();
    expect(messages.length).toBe(N);
    // Several messages per poll, or this test would not be about batches.
    expect(Math.max(...batches.map((b) => b.length))).toBeGreaterThan(100);
    const before = messages.map(snapshot);

    for (const [i, m] of messages.entries()) {
      const s = sent[i] as (typeof sent)[number];
      expect(m.offset).toBe(i);
      expect(text(m.key)).toBe(s.key);
      expect(text(m.value)).toBe(s.value);
      expect(m.timestamp).toBe(T0 + i);
      if (s.headers) {
        expect(Object.keys(m.headers ?? {}).sort()).toEqual(["seq", "traceparent"]);
        expect(text(m.headers?.traceparent)).toBe(s.headers.traceparent);
        expect(text(m.headers?.seq)).toBe(String(i));
      } else {
        expect(m.headers).toBeNull();
      }
    }

    // More polls, more copies: the earlier messages' bytes must not be reused or freed under them.
    await producer.send(sent.map((s) => ({ ...s, value: "overwritten?", key: "k", headers: { seq: "no" } })));
    expect((await pollBatches(consumer, N, 700)).flat().length).toBe(N);
    Bun.gc(true);
    expect(messages.map(snapshot)).toEqual(before);
  });

  test("batches polled while the previous one is written cross a rebalance with nothing lost or repeated", async () => {
    const topic = await createTopic(6);
    const producer = createProducer();
    const total = 30_000;
    for (let i = 0; i < total; i += 5_000) {
      await producer.send(Array.from({ length: 5_000 }, (_, j) => ({ topic, value: `m${i + j}` })));
    }
    const group = uniqueName("batch-rebalance");
    const seen = new Map<string, number>();
    const record = (batch: ConsumedMessage[]) => {
      for (const m of batch) seen.set(text(m.value) as string, (seen.get(text(m.value) as string) ?? 0) + 1);
    };
    // A commit that races the rebalance fails with REBALANCE (the generation moved on): that
    // batch may then be read again, by either member. Any other repeat is a bug.
    const mayRepeat = new Set<string>();
    const commit = async (c: KafkaConsumer, batch: ConsumedMessage[]) => {
      try {
        await c.commit(nextOffsets(batch));
      } catch (error) {
        if ((error as KafkaError).code !== "REBALANCE") throw error;
        for (const m of batch) mayRepeat.add(text(m.value) as string);
      }
    };
    const a = createConsumer({ "group.id": group });
    const b = createConsumer({ "group.id": group });
    a.subscribe([topic]);
    // A pipelines like the worker: it polls the next batch while the previous one is still being
    // written (workInFlight), and commits a batch only once it is written.
    let inFlight: ConsumedMessage[] = [];
    let heldWithBatch = false;
    let bJoined = false;
    const deadline = Date.now() + 60_000;
    while (seen.size < total && Date.now() < deadline) {
      // Slow writes, so that the backlog outlasts B's join.
      await Bun.sleep(5);
      const writing = inFlight;
      const batch = await a.poll(200, 50, { workInFlight: writing.length > 0 });
      record(batch);
      if (a.revokePending) {
        // Held: what A is still writing comes from partitions A still owns, so its commit is A's.
        const owned = new Set(a.assignment().map((tp) => tp.partition));
        for (const m of [...writing, ...batch]) expect(owned.has(m.partition)).toBe(true);
        heldWithBatch ||= writing.length > 0;
      }
      if (writing.length) await commit(a, writing);
      inFlight = batch;
      if (a.revokePending && inFlight.length) {
        await commit(a, inFlight);
        inFlight = [];
      }
      if (!bJoined && seen.size > 2_000) {
        b.subscribe([topic]);
        bJoined = true;
      }
      if (bJoined) {
        const fromB = await b.poll(500, 0);
        record(fromB);
        if (fromB.length) await commit(b, fromB);
      }
    }
    if (inFlight.length) await commit(a, inFlight);
    expect(seen.size).toBe(total);
    expect(heldWithBatch).toBe(true);
    expect(b.assignment().length).toBeGreaterThan(0);
    expect(a.assignment().length + b.assignment().length).toBe(6);
    // Every batch was committed before its partitions could move: nothing else was read twice.
    expect([...seen].filter(([value, n]) => n !== 1 && !mayRepeat.has(value))).toEqual([]);
  });

  test("pausing a partition drops what was prefetched for it; resuming goes on from the next offset, nothing lost or repeated", async () => {
    const topic = await createTopic(2);
    const producer = createProducer();
    const perPartition = 5_000;
    for (const partition of [0, 1]) {
      await producer.send(
        Array.from({ length: perPartition }, (_, i) => ({ topic, partition, value: `p${partition}-${i}` })),
      );
    }
    const consumer = createConsumer({ "group.id": uniqueName("batch-pause") });
    consumer.subscribe([topic]);
    const offsets = new Map<number, number[]>([
      [0, []],
      [1, []],
    ]);
    const take = (batch: ConsumedMessage[]) => {
      for (const m of batch) {
        expect(text(m.value)).toBe(`p${m.partition}-${m.offset}`);
        offsets.get(m.partition)?.push(m.offset);
      }
    };
    // A first small batch: librdkafka has prefetched much more of both partitions by now.
    const deadline = Date.now() + 20_000;
    while ((offsets.get(0)?.length ?? 0) === 0 && Date.now() < deadline) take(await consumer.poll(50, 100));
    await Bun.sleep(500);

    consumer.pause([{ topic, partition: 0 }]);
    const pausedAt = offsets.get(0)?.length ?? 0;
    const until = Date.now() + 1_500;
    while (Date.now() < until) take(await consumer.poll(1_000, 100));
    expect(offsets.get(0)?.length).toBe(pausedAt);
    expect(offsets.get(1)?.length).toBe(perPartition);

    consumer.resume([{ topic, partition: 0 }]);
    const resumeDeadline = Date.now() + 20_000;
    while ((offsets.get(0)?.length ?? 0) < perPartition && Date.now() < resumeDeadline) {
      take(await consumer.poll(1_000, 100));
    }
    const expected = Array.from({ length: perPartition }, (_, i) => i);
    expect(offsets.get(0)).toEqual(expected);
    expect(offsets.get(1)).toEqual(expected);
  });
});
