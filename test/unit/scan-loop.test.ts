// The sink loop's ordering rules, with a scripted consumer and sink (pure orchestration logic;
// the real Kafka/Postgres behaviour is covered by the integration tests).
import { expect, test } from "bun:test";
import {
  type ConsumedMessage,
  type KafkaConsumer,
  KafkaError,
  type KafkaProducer,
  type TopicPartitionOffset,
} from "bun-rdkafka";
import pino from "pino";
import { Registry } from "prom-client";
import { toScanRecord } from "../../shared/event.ts";
import { createLogger } from "../../shared/logger.ts";
import type { Row } from "../../shared/scan-events.ts";
import { loadWorkerConfig } from "../../worker/config.ts";
import { createWorkerMetrics } from "../../worker/metrics.ts";
import { PartitionProgress } from "../../worker/progress.ts";
import { createRetrier } from "../../worker/retry.ts";
import { BatchFailedError, runScanLoop } from "../../worker/scan-loop.ts";
import type { ScanSink } from "../../worker/sink.ts";

const now = new Date().toISOString();

/** `count` valid messages on partition 0 starting at `from`, with the headers `headers(i)` gives. */
function batch(from: number, count = 3, headers?: (i: number) => Record<string, string>): ConsumedMessage[] {
  const enc = new TextEncoder();
  return Array.from({ length: count }, (_, i) => ({
    topic: "scans",
    partition: 0,
    offset: from + i,
    key: null,
    headers: headers ? Object.fromEntries(Object.entries(headers(i)).map(([k, v]) => [k, enc.encode(v)])) : null,
    timestamp: 0,
    value: new TextEncoder().encode(
      JSON.stringify(toScanRecord({ event_id: crypto.randomUUID(), qr_id: "QR-1", scanned_at: now }, now, null)),
    ),
  }));
}

interface Script {
  batches: ConsumedMessage[][];
  /** Write time per batch (by its first offset), and batches whose write fails. */
  writeMs: Record<number, number>;
  failing?: Set<number>;
  /** After this poll (1-based), report a held revocation until a poll without work in flight. */
  revokeAfterPoll?: number;
  writesInFlight: number;
  /** Offsets (first message's) whose commit fails once with a retriable Kafka error. */
  commitFailsOnce?: Set<number>;
  /** Wrap writes and commits in the worker's retrier (default: no retry). */
  retry?: boolean;
  /** Keep polling (empty) after the batches run out, until this many polls; default: stop at once. */
  stopAfterPolls?: number;
  /** Log lines, parsed (default: none are kept). */
  logLines?: Record<string, unknown>[];
}

async function run(script: Script) {
  const log: string[] = [];
  const pollsWithWorkInFlight: boolean[] = [];
  let writing = 0;
  let maxWriting = 0;
  let polls = 0;
  let revokePending = false;
  const consumer = {
    get revokePending() {
      return revokePending;
    },
    async poll(_max: number, _wait: number, { workInFlight = false } = {}) {
      polls++;
      pollsWithWorkInFlight.push(workInFlight);
      if (revokePending && !workInFlight) {
        revokePending = false;
        log.push("revoke applied");
      }
      if (polls === script.revokeAfterPoll) revokePending = true;
      const next = script.batches.shift();
      if (!next) await Bun.sleep(1); // as a real poll waits up to BATCH_MAX_WAIT_MS for messages
      return next ?? [];
    },
    async commit(offsets: readonly TopicPartitionOffset[]) {
      const at = offsets[0]?.offset ?? -1;
      if (script.commitFailsOnce?.delete(at)) {
        log.push(`commit ${at} refused (coordinator moving)`);
        throw new KafkaError("BROKER_UNAVAILABLE", "offset commit failed: Broker: Not coordinator");
      }
      log.push(`commit ${offsets.map((o) => o.offset).join(",")}`);
    },
  };
  const sink = {
    async write(rows: readonly Row[]) {
      const first = (rows[0] as Row).message.offset;
      writing++;
      maxWriting = Math.max(maxWriting, writing);
      await Bun.sleep(script.writeMs[first] ?? 1);
      writing--;
      if (script.failing?.has(first)) {
        log.push(`failed ${first}`);
        throw Object.assign(new Error(`batch at ${first} failed`), { code: "42P01" });
      }
      log.push(`written ${first}`);
      return { inserted: rows.length, duplicates: 0 };
    },
  };
  const config = loadWorkerConfig({ WRITES_IN_FLIGHT: String(script.writesInFlight), DB_POOL_MAX: "8" });
  const progress = new PartitionProgress(config.SCANS_TOPIC, config.STALL_TIMEOUT_MS);
  const done = runScanLoop({
    config,
    consumer: consumer as unknown as KafkaConsumer,
    producer: {} as KafkaProducer,
    sink: sink as unknown as ScanSink,
    metrics: createWorkerMetrics(new Registry(), progress),
    progress,
    logger: script.logLines
      ? pino({ level: "info" }, { write: (l: string) => script.logLines?.push(JSON.parse(l)) })
      : createLogger("test", "silent"),
    isStopping: () =>
      script.stopAfterPolls === undefined ? script.batches.length === 0 : polls >= script.stopAfterPolls,
    withRetry: script.retry
      ? createRetrier({
          baseMs: 1,
          capMs: 2,
          maxMs: 2_000,
          isRetriable: (e) => e instanceof KafkaError && e.retriable,
          onRetry: (what, attempt, _delay, error, log) => log?.warn({ what, attempt, err: error.message }, "retrying"),
        })
      : (_what, fn) => fn(),
  });
  return { done, log, pollsWithWorkInFlight, maxWriting: () => maxWriting, polls: () => polls };
}

test("a batch written before the one polled ahead of it still commits after it", async () => {
  const r = await run({ batches: [batch(0), batch(3)], writeMs: { 0: 60, 3: 1 }, writesInFlight: 2 });
  await r.done;
  expect(r.log).toEqual(["written 3", "written 0", "commit 3", "commit 6"]);
  expect(r.maxWriting()).toBe(2);
});

test("when a batch fails, the batches polled after it are never committed", async () => {
  const r = await run({
    batches: [batch(0), batch(3), batch(6)],
    writeMs: { 0: 40, 3: 1, 6: 1 },
    failing: new Set([0]),
    writesInFlight: 2,
  });
  await expect(r.done).rejects.toThrow("batch at 0 failed");
  expect(r.log.filter((l) => l.startsWith("commit"))).toEqual([]);
});

test("a failed write stops the loop at its next turn, even when no further batch arrives to push it out", async () => {
  // One batch, then only empty polls: before, the failure was noticed only when WRITES_IN_FLIGHT
  // more batches queued behind it, so an idle partition hid a fatal error forever.
  const r = await run({
    batches: [batch(0)],
    writeMs: { 0: 5 },
    failing: new Set([0]),
    writesInFlight: 2,
    stopAfterPolls: 10_000,
  });
  await expect(r.done).rejects.toThrow("batch at 0 failed");
  expect(r.polls()).toBeLessThan(100);
  expect(r.log).toEqual(["failed 0"]);
});

test("a retriable offset-commit error (the coordinator moving) is retried, not the end of the worker", async () => {
  const r = await run({
    batches: [batch(0), batch(3)],
    writeMs: {},
    commitFailsOnce: new Set([3]),
    writesInFlight: 1,
    retry: true,
  });
  await r.done;
  expect(r.log).toEqual(["written 0", "commit 3 refused (coordinator moving)", "commit 3", "written 3", "commit 6"]);
});

test("a batch's log lines carry its id and offset range; a failed batch's error carries them too", async () => {
  const logLines: Record<string, unknown>[] = [];
  const retried = await run({
    batches: [batch(0), batch(3, 4)],
    writeMs: {},
    commitFailsOnce: new Set([7]),
    writesInFlight: 1,
    retry: true,
    logLines,
  });
  await retried.done;
  expect(logLines.map(({ msg, what, batch_id, offsets }) => ({ msg, what, batch_id, offsets }))).toEqual([
    {
      msg: "retrying",
      what: "commit offsets",
      batch_id: 2,
      offsets: [{ topic: "scans", partition: 0, first: 3, last: 6 }],
    },
  ]);
  const failed = await run({ batches: [batch(0), batch(3)], writeMs: {}, failing: new Set([3]), writesInFlight: 1 });
  const error = await failed.done.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BatchFailedError);
  expect(error).toMatchObject({
    batch_id: 2,
    offsets: [{ topic: "scans", partition: 0, offset: 6 }],
    message: "batch 2: batch at 3 failed",
  });
});

test("lines about a batch and a failed batch's error name its messages' request and trace ids", async () => {
  const TRACE = "0af7651916cd43dd8448eb211c80319c";
  // Two requests' events (the second unsampled: its trace id is known all the same).
  const headers = (i: number) => ({
    request_id: `req-${i < 2 ? "a" : "b"}`,
    traceparent: i < 2 ? `00-${TRACE}-b7ad6b7169203331-01` : `00-${"1".repeat(32)}-b7ad6b7169203331-00`,
  });
  const logLines: Record<string, unknown>[] = [];
  const retried = await run({
    batches: [batch(0, 3, headers)],
    writeMs: {},
    commitFailsOnce: new Set([3]),
    writesInFlight: 1,
    retry: true,
    logLines,
  });
  await retried.done;
  expect(logLines).toHaveLength(1);
  expect(logLines[0]).toMatchObject({
    msg: "retrying",
    batch_id: 1,
    request_ids: ["req-a", "req-b"],
    trace_ids: [TRACE, "1".repeat(32)],
  });
  const failed = await run({ batches: [batch(0, 3, headers)], writeMs: {}, failing: new Set([0]), writesInFlight: 1 });
  const error = await failed.done.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toMatchObject({ batch_id: 1, request_ids: ["req-a", "req-b"], trace_ids: [TRACE, "1".repeat(32)] });
});

test("never more than WRITES_IN_FLIGHT batches are written at once", async () => {
  const batches = Array.from({ length: 6 }, (_, i) => batch(i * 3));
  const one = await run({ batches: [...batches], writeMs: {}, writesInFlight: 1 });
  await one.done;
  expect(one.maxWriting()).toBe(1);
  const three = await run({ batches, writeMs: { 0: 30, 3: 30, 6: 30, 9: 30 }, writesInFlight: 3 });
  await three.done;
  expect(three.maxWriting()).toBe(3);
  expect(three.log.filter((l) => l.startsWith("commit"))).toEqual([
    "commit 3",
    "commit 6",
    "commit 9",
    "commit 12",
    "commit 15",
    "commit 18",
  ]);
});

test("a held revocation is applied only by a poll made after every batch in flight committed", async () => {
  const r = await run({
    batches: [batch(0), batch(3), batch(6), batch(9)],
    writeMs: { 0: 20, 3: 20 },
    revokeAfterPoll: 2,
    writesInFlight: 2,
  });
  await r.done;
  const applied = r.log.indexOf("revoke applied");
  expect(applied).toBeGreaterThan(0);
  // Batches 0 and 3 were polled before the revocation: both committed before it was applied.
  expect(r.log.slice(0, applied)).toEqual(expect.arrayContaining(["commit 3", "commit 6"]));
  expect(r.pollsWithWorkInFlight[2]).toBe(false);
});

test("WRITES_IN_FLIGHT must leave DB_POOL_MAX a connection for dead letters; the message names both", () => {
  expect(() => loadWorkerConfig({ WRITES_IN_FLIGHT: "4", DB_POOL_MAX: "4" })).toThrow(
    /DB_POOL_MAX \(4\) must be greater than WRITES_IN_FLIGHT \(4\)/,
  );
  expect(loadWorkerConfig({ WRITES_IN_FLIGHT: "3", DB_POOL_MAX: "4" }).WRITES_IN_FLIGHT).toBe(3);
  expect(() => loadWorkerConfig({ WRITES_IN_FLIGHT: "0" })).toThrow(/WRITES_IN_FLIGHT/);
});
