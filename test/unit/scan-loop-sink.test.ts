// What the sink loop (worker/scan-loop.ts, worker/commit.ts) does with what it polls, with a
// scripted consumer, sink and producer: rows Postgres rejects for their data are isolated by
// bisection and dead-lettered (published before the commit), rows of archived days are dead-lettered
// with the way back, a missing partition is asked for again once, a rebalanced commit is skipped
// (and only that one), each metric, progress and the batch's spans. The ordering of batches in
// flight is test/unit/scan-loop.test.ts'; Postgres itself is the integration tests'.
import { describe, expect, test } from "bun:test";
import { ROOT_CONTEXT, SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
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
import type { Row } from "../../shared/scan-events.ts";
import type { Tracing } from "../../shared/tracing.ts";
import { loadWorkerConfig } from "../../worker/config.ts";
import { createWorkerMetrics } from "../../worker/metrics.ts";
import { PartitionProgress } from "../../worker/progress.ts";
import { createRetrier } from "../../worker/retry.ts";
import { BatchFailedError, runScanLoop } from "../../worker/scan-loop.ts";
import { ArchivedDaysError, type ScanSink, type WriteResult } from "../../worker/sink.ts";

const enc = new TextEncoder();
const DAY = "2026-01-15";

/** A valid scans message at `offset`, scanned on `day`; `value` replaces the payload. */
function message(offset: number, o: { day?: string; value?: string; timestamp?: number } = {}): ConsumedMessage {
  const scannedAt = `${o.day ?? DAY}T12:00:00.000000Z`;
  const record = toScanRecord(
    { event_id: crypto.randomUUID(), qr_id: `QR-${offset}`, scanned_at: scannedAt },
    scannedAt,
    null,
  );
  return {
    topic: "scans",
    partition: 0,
    offset,
    key: enc.encode(`QR-${offset}`),
    value: enc.encode(o.value ?? JSON.stringify(record)),
    headers: { request_id: enc.encode(`req-${offset}`) },
    timestamp: o.timestamp ?? Date.now(),
  };
}
const messages = (from: number, count: number, o?: Parameters<typeof message>[1]) =>
  Array.from({ length: count }, (_, i) => message(from + i, o));

/** A data error as postgres.js raises it (SQLSTATE class 22). */
const dataError = (text = 'invalid input syntax for type json: "bad"') =>
  Object.assign(new Error(text), { code: "22P02" });
const missingPartition = () =>
  Object.assign(new Error('no partition of relation "scan_events" found for row'), { code: "23514" });

interface Options {
  polls: ConsumedMessage[][];
  /** The sink's answer to a write (default: every row inserted). */
  write?: (rows: readonly Row[], call: number, progress: PartitionProgress) => Promise<WriteResult> | WriteResult;
  commit?: (offsets: readonly TopicPartitionOffset[], call: number) => void;
  send?: (call: number) => void;
  config?: Record<string, string>;
  tracing?: Tracing;
  /** Keep polling (empty) until this many polls. */
  stopAfterPolls?: number;
}

async function run(o: Options) {
  const events: string[] = [];
  const writes: number[][] = [];
  const sent: { topic: string; key: Uint8Array | null; headers: Record<string, unknown> }[] = [];
  const commits: number[][] = [];
  let commitCalls = 0;
  const pollOptions: boolean[] = [];
  let forgot = 0;
  let polls = 0;
  const lines: Record<string, unknown>[] = [];
  const consumer = {
    revokePending: false,
    async poll(_max: number, _wait: number, options: { workInFlight?: boolean }) {
      polls++;
      pollOptions.push(options.workInFlight as boolean);
      const next = o.polls.shift();
      if (!next) await Bun.sleep(1);
      return next ?? [];
    },
    async commit(offsets: readonly TopicPartitionOffset[]) {
      o.commit?.(offsets, commitCalls++);
      commits.push(offsets.map((x) => x.offset));
      events.push(`commit ${offsets.map((x) => x.offset).join(",")}`);
    },
  };
  const sink = {
    async write(rows: readonly Row[]) {
      const call = writes.length;
      writes.push(rows.map((r) => r.message.offset));
      return (await o.write?.(rows, call, progress)) ?? { inserted: rows.length, duplicates: 0 };
    },
    forgetPartitions() {
      forgot++;
    },
  };
  let sends = 0;
  const producer = {
    async send(records: { topic: string; key: Uint8Array | null; headers: Record<string, unknown> }[]) {
      o.send?.(sends++);
      sent.push(...records);
      events.push(`dead-lettered ${records.length}`);
    },
  };
  const config = loadWorkerConfig({ DB_POOL_MAX: "8", ...o.config });
  const progress = new PartitionProgress(config.SCANS_TOPIC, 60_000);
  progress.assigned([{ topic: config.SCANS_TOPIC, partition: 0 }]);
  const registry = new Registry();
  const metrics = createWorkerMetrics(registry, progress);
  const logger = pino({ level: "info" }, { write: (l: string) => lines.push(JSON.parse(l)) });
  const done = runScanLoop({
    config,
    consumer: consumer as unknown as KafkaConsumer,
    producer: producer as unknown as KafkaProducer,
    sink: sink as unknown as ScanSink,
    metrics,
    progress,
    logger,
    isStopping: () => (o.stopAfterPolls === undefined ? o.polls.length === 0 : polls >= o.stopAfterPolls),
    withRetry: createRetrier({
      baseMs: 1,
      capMs: 2,
      maxMs: 2_000,
      isRetriable: (e) => (e instanceof KafkaError ? e.retriable : (e as { code?: string } | null)?.code === "40001"),
      onRetry: (what, attempt, _delay, error, log) => log?.warn({ what, attempt, err: error.message }, "retrying"),
    }),
    ...(o.tracing ? { tracing: o.tracing } : {}),
  });
  /** A metric sample's value from the registry's exposition text (0 when absent). */
  const sample = async (name: string) => {
    const text = await registry.metrics();
    const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
  };
  return {
    done,
    events,
    writes,
    sent,
    commits,
    pollOptions,
    progress,
    lines,
    sample,
    forgot: () => forgot,
    config,
  };
}

const offsetsOf = (sent: { headers: Record<string, unknown> }[]) =>
  sent.map((s) => Number(s.headers.dlq_source_offset));
const reasonsOf = (sent: { headers: Record<string, unknown> }[]) => sent.map((s) => s.headers.dlq_error);

describe("rows Postgres rejects for their data", () => {
  test("are isolated by bisection and dead-lettered with the database's reason; the rest is written once, then committed", async () => {
    const bad = new Set([1, 5]);
    const r = await run({
      polls: [messages(0, 8)],
      write: (rows) => {
        if (rows.some((row) => bad.has(row.message.offset))) throw dataError();
        // Offset 4 was stored before (a replay): a duplicate, counted once whichever half it is written in.
        const dup = rows.filter((row) => row.message.offset === 4).length;
        return { inserted: rows.length - dup, duplicates: dup };
      },
    });
    await r.done;
    expect(offsetsOf(r.sent)).toEqual([1, 5]);
    expect(reasonsOf(r.sent)).toEqual([
      'rejected by Postgres: invalid input syntax for type json: "bad"',
      'rejected by Postgres: invalid input syntax for type json: "bad"',
    ]);
    expect(r.sent.map((s) => s.topic)).toEqual([r.config.DEAD_LETTER_TOPIC, r.config.DEAD_LETTER_TOPIC]);
    // Every good row was in exactly one successful write; each bad one was tried alone.
    const succeeded = r.writes.filter((w) => !w.some((x) => bad.has(x))).flat();
    expect(succeeded.sort()).toEqual([0, 2, 3, 4, 6, 7]);
    expect(r.writes).toContainEqual([1]);
    expect(r.writes).toContainEqual([5]);
    // Halves: never a write of more rows than half the failed one.
    expect(r.writes.slice(0, 3).map((w) => w.length)).toEqual([8, 4, 2]);
    expect(r.events).toEqual(["dead-lettered 2", "commit 8"]);
    expect(r.forgot()).toBe(0);
    expect(await r.sample("worker_rows_inserted_total")).toBe(5);
    expect(await r.sample("worker_rows_duplicate_total")).toBe(1);
    expect(await r.sample("worker_dead_letters_total")).toBe(2);
    expect(await r.sample("worker_batches_total")).toBe(1);
    const logged = r.lines.filter((l) => l.msg === "dead-lettered a message that can never be stored");
    expect(logged.map((l) => [l.batch_id, l.source, l.request_id])).toEqual([
      [1, "scans/0@1", "req-1"],
      [1, "scans/0@5", "req-5"],
    ]);
  });

  test("a batch that is all bad is all dead-lettered, and still committed", async () => {
    const r = await run({
      polls: [messages(10, 3)],
      write: () => {
        throw dataError("value too long for type character varying(128)");
      },
    });
    await r.done;
    expect(offsetsOf(r.sent)).toEqual([10, 11, 12]);
    expect(new Set(reasonsOf(r.sent))).toEqual(
      new Set(["rejected by Postgres: value too long for type character varying(128)"]),
    );
    expect(r.commits).toEqual([[13]]);
    expect(await r.sample("worker_rows_inserted_total")).toBe(0);
  });

  test("a message the schema refuses never reaches the sink: it is dead-lettered with the reason", async () => {
    const r = await run({ polls: [[message(0), message(1, { value: "{oops" }), message(2)]] });
    await r.done;
    expect(r.writes).toEqual([[0, 2]]);
    expect(offsetsOf(r.sent)).toEqual([1]);
    expect(String(reasonsOf(r.sent)[0])).toStartWith("undecodable payload: ");
    expect(r.commits).toEqual([[3]]);
  });

  test("an error that is not the data's stops the loop: nothing dead-lettered, nothing committed", async () => {
    const r = await run({
      polls: [messages(0, 4)],
      write: () => {
        throw Object.assign(new Error('relation "scan_events" does not exist'), { code: "42P01" });
      },
    });
    const error = await r.done.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BatchFailedError);
    expect(error).toMatchObject({
      name: "BatchFailedError",
      message: 'batch 1: relation "scan_events" does not exist',
    });
    expect((error as Error).cause).toMatchObject({ code: "42P01" });
    expect(r.writes).toEqual([[0, 1, 2, 3]]);
    expect([r.sent, r.commits]).toEqual([[], []]);
  });

  test("even a thrown non-Error fails the batch with its text", async () => {
    const r = await run({
      polls: [messages(0, 1)],
      write: () => {
        throw null;
      },
    });
    const error = await r.done.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BatchFailedError);
    expect([(error as Error).message, (error as Error).cause]).toEqual(["batch 1: null", null]);
  });

  test("a transient write error is retried with the batch's context, then the batch is written", async () => {
    const r = await run({
      polls: [messages(0, 2)],
      write: (_rows, call) => {
        if (call === 0) throw Object.assign(new Error("could not serialize access"), { code: "40001" });
        return { inserted: 2, duplicates: 0 };
      },
    });
    await r.done;
    expect(r.lines.filter((l) => l.msg === "retrying").map(({ what, batch_id }) => ({ what, batch_id }))).toEqual([
      { what: "write batch", batch_id: 1 },
    ]);
    expect(r.commits).toEqual([[2]]);
  });
});

describe("days and partitions", () => {
  test("rows of archived days are dead-lettered with the way back; the batch's other rows are written", async () => {
    const archived = new Set(["2026-01-02"]);
    const r = await run({
      polls: [[message(0), message(1, { day: "2026-01-02" }), message(2), message(3, { day: "2026-01-02" })]],
      write: (rows) => {
        const days = new Set(rows.map((row) => row.day).filter((d) => archived.has(d)));
        if (days.size) throw new ArchivedDaysError(days);
        return { inserted: rows.length, duplicates: 0 };
      },
    });
    await r.done;
    expect(r.writes).toEqual([
      [0, 1, 2, 3],
      [0, 2],
    ]);
    expect(offsetsOf(r.sent)).toEqual([1, 3]);
    expect(reasonsOf(r.sent)).toEqual([ArchivedDaysError.reason("2026-01-02"), ArchivedDaysError.reason("2026-01-02")]);
    expect(reasonsOf(r.sent)[0]).toContain("bun run archive-restore 2026-01-02");
    expect(await r.sample("worker_rows_inserted_total")).toBe(2);
    expect(r.commits).toEqual([[4]]);
  });

  test("a batch of archived days only: nothing left to write, all dead-lettered, committed", async () => {
    const r = await run({
      polls: [messages(0, 2, { day: "2025-06-01" })],
      write: () => {
        throw new ArchivedDaysError(new Set(["2025-06-01"]));
      },
    });
    await r.done;
    expect(r.writes).toEqual([[0, 1]]);
    expect(offsetsOf(r.sent)).toEqual([0, 1]);
    expect(await r.sample("worker_rows_inserted_total")).toBe(0);
    expect(await r.sample("worker_batches_total")).toBe(1);
  });

  test("a partition found missing makes the sink ask again once, before any row is taken for poison", async () => {
    const r = await run({
      polls: [messages(0, 4)],
      write: (_rows, call) => {
        if (call === 0) throw missingPartition();
        return { inserted: 4, duplicates: 0 };
      },
    });
    await r.done;
    expect(r.forgot()).toBe(1);
    expect(r.writes).toEqual([
      [0, 1, 2, 3],
      [0, 1, 2, 3],
    ]);
    expect(r.sent).toEqual([]);
    expect(await r.sample("worker_rows_inserted_total")).toBe(4);
  });

  test("still missing after asking again: the rows are isolated and dead-lettered, asked again only once", async () => {
    const r = await run({
      polls: [messages(0, 2)],
      write: () => {
        throw missingPartition();
      },
    });
    await r.done;
    expect(r.forgot()).toBe(1);
    expect(offsetsOf(r.sent)).toEqual([0, 1]);
    expect(reasonsOf(r.sent)[0]).toBe('rejected by Postgres: no partition of relation "scan_events" found for row');
  });
});

describe("committing", () => {
  test("a commit refused by a rebalance is skipped and logged; the loop goes on", async () => {
    const r = await run({
      polls: [messages(0, 2), messages(2, 2)],
      commit: (_offsets, call) => {
        if (call === 0) throw new KafkaError("REBALANCE", "Broker: Specified group generation id is not valid");
      },
    });
    await r.done;
    expect(r.commits).toEqual([[4]]);
    expect(await r.sample("worker_commits_skipped_total")).toBe(1);
    expect(await r.sample("worker_batches_total")).toBe(2);
    expect(r.lines.filter((l) => l.level === 40).map(({ msg, err, batch_id }) => ({ msg, err, batch_id }))).toEqual([
      {
        msg: "offsets not committed (group rebalanced); the batch will be replayed as a no-op",
        err: "Broker: Specified group generation id is not valid",
        batch_id: 1,
      },
    ]);
  });

  test("any other commit error fails the batch", async () => {
    const r = await run({
      polls: [messages(0, 2)],
      commit: () => {
        throw new KafkaError("KAFKA", "Broker: Unknown member");
      },
    });
    await expect(r.done).rejects.toThrow("batch 1: Broker: Unknown member");
    expect(await r.sample("worker_commits_skipped_total")).toBe(0);
  });

  test("a commit sets worker_last_commit_timestamp_seconds to now, in seconds; progress sees the partition committed", async () => {
    const before = Date.now() / 1000;
    let whileWriting: unknown;
    const r = await run({
      polls: [messages(0, 3)],
      write: (rows, _call, progress) => {
        whileWriting = progress.view();
        return { inserted: rows.length, duplicates: 0 };
      },
    });
    await r.done;
    expect(whileWriting).toEqual([expect.objectContaining({ partition: 0, pending: true })]);
    const last = await r.sample("worker_last_commit_timestamp_seconds");
    expect(last).toBeGreaterThanOrEqual(Math.floor(before));
    expect(last).toBeLessThanOrEqual(Date.now() / 1000 + 1);
    expect(r.progress.view()).toEqual([expect.objectContaining({ partition: 0, pending: false })]);
  });

  test("dead letters that fail to publish transiently are retried with the batch's context, before the commit", async () => {
    const r = await run({
      polls: [messages(0, 2)],
      write: (rows) => {
        if (rows.some((row) => row.message.offset === 1)) throw dataError();
        return { inserted: rows.length, duplicates: 0 };
      },
      send: (call) => {
        if (call === 0) throw new KafkaError("BROKER_UNAVAILABLE", "all brokers down");
      },
    });
    await r.done;
    expect(r.lines.filter((l) => l.msg === "retrying").map(({ what, batch_id }) => ({ what, batch_id }))).toEqual([
      { what: "publish dead letters", batch_id: 1 },
    ]);
    expect(r.events).toEqual(["dead-lettered 1", "commit 2"]);
  });

  test("FAULT_DELAY_BEFORE_COMMIT_MS holds the commit back after the write", async () => {
    let writtenAt = 0;
    let committedAt = 0;
    const r = await run({
      polls: [messages(0, 1)],
      config: { FAULT_DELAY_BEFORE_COMMIT_MS: "60" },
      write: (rows) => {
        writtenAt = performance.now();
        return { inserted: rows.length, duplicates: 0 };
      },
      commit: () => {
        committedAt = performance.now();
      },
    });
    await r.done;
    expect(committedAt - writtenAt).toBeGreaterThanOrEqual(55);
  });
});

describe("polling", () => {
  test("an empty poll writes and commits nothing; a poll with a write in flight says so", async () => {
    let release = () => {};
    const r = await run({
      polls: [[], messages(0, 2), [], []],
      stopAfterPolls: 5,
      write: (rows) =>
        new Promise((resolve) => {
          release = () => resolve({ inserted: rows.length, duplicates: 0 });
          setTimeout(release, 30);
        }),
    });
    await r.done;
    expect(r.writes).toEqual([[0, 1]]);
    expect(r.commits).toEqual([[2]]);
    expect(r.pollOptions.slice(0, 3)).toEqual([false, false, true]);
  });

  test("decoding a large batch yields to the event loop every 500 messages, so the write before it goes on", async () => {
    const order: string[] = [];
    const hop = () => new Promise<void>((resolve) => setImmediate(resolve));
    const r = await run({
      polls: [messages(0, 1), messages(1, 1501)],
      config: { WRITES_IN_FLIGHT: "2" },
      write: async (rows) => {
        order.push(`start ${rows.length}`);
        if (rows.length === 1) {
          // This write needs two turns of the event loop: the decoding of the next batch must give them.
          await hop();
          await hop();
          order.push("written 1");
        }
        return { inserted: rows.length, duplicates: 0 };
      },
    });
    await r.done;
    expect(order).toEqual(["start 1", "written 1", "start 1501"]);
  });
});

describe("metrics of a batch", () => {
  test("write duration in seconds of the write alone; freshness per event from its Kafka time, in seconds", async () => {
    const real = performance.now;
    let clock = 5_000_000;
    performance.now = () => clock;
    try {
      const accepted = Date.now() - 60_000;
      const r = await run({
        polls: [messages(0, 4, { timestamp: accepted })],
        write: (rows) => {
          clock += 250;
          return { inserted: rows.length, duplicates: 0 };
        },
      });
      await r.done;
      expect(await r.sample("worker_write_duration_seconds_sum")).toBe(0.25);
      expect(await r.sample("worker_write_duration_seconds_count")).toBe(1);
      expect(await r.sample("scan_event_freshness_seconds_count")).toBe(4);
      const mean = (await r.sample("scan_event_freshness_seconds_sum")) / 4;
      expect(mean).toBeGreaterThanOrEqual(60);
      expect(mean).toBeLessThan(65);
    } finally {
      performance.now = real;
    }
  });
});

describe("spans, with tracing on", () => {
  test("the batch span carries its message count; write and commit are its children, with their attributes", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    const tracing: Tracing = {
      enabled: true,
      tracer: provider.getTracer("test"),
      extract: () => ROOT_CONTEXT,
      traceparent: () => undefined,
      shutdown: () => provider.shutdown(),
    };
    const ok = await run({
      polls: [[message(0), message(1), message(2, { value: "{oops" })]],
      write: (rows) => ({ inserted: rows.length - 1, duplicates: 1 }),
      tracing,
    });
    await ok.done;
    const failing = await run({
      polls: [messages(5, 1)],
      commit: () => {
        throw new KafkaError("KAFKA", "commit refused for good");
      },
      tracing,
    });
    await expect(failing.done).rejects.toThrow("commit refused for good");
    await provider.forceFlush();
    const spans = exporter.getFinishedSpans();
    const batches = spans.filter((s) => s.name === "process scans");
    expect(batches.map((s) => [s.attributes["messaging.batch.message_count"], s.status.code])).toEqual([
      [3, SpanStatusCode.UNSET],
      [1, SpanStatusCode.ERROR],
    ]);
    const [first, second] = batches.map((s) => s.spanContext().spanId);
    const children = spans
      .filter((s) => s.name !== "process scans")
      .map((s) => ({
        name: s.name,
        parent: s.parentSpanContext?.spanId,
        attributes: s.attributes,
        status: s.status.code,
      }));
    expect(children).toEqual([
      {
        name: "write batch",
        parent: first,
        attributes: { "db.system.name": "postgresql" },
        status: SpanStatusCode.UNSET,
      },
      {
        name: "commit offsets",
        parent: first,
        attributes: { "messaging.operation.type": "settle" },
        status: SpanStatusCode.UNSET,
      },
      {
        name: "write batch",
        parent: second,
        attributes: { "db.system.name": "postgresql" },
        status: SpanStatusCode.UNSET,
      },
      {
        name: "commit offsets",
        parent: second,
        attributes: { "messaging.operation.type": "settle" },
        status: SpanStatusCode.ERROR,
      },
    ]);
    expect(
      spans.find((s) => s.name === "commit offsets" && s.status.code === SpanStatusCode.ERROR)?.events[0]?.name,
    ).toBe("exception");
    const okBatch = batches[0];
    expect([okBatch?.attributes["qrscan.rows.inserted"], okBatch?.attributes["qrscan.rows.duplicate"]]).toEqual([1, 1]);
  });
});
