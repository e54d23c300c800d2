// The sink loop of one worker: poll a batch, decode it, dead-letter the poison, write the rest to
// Postgres, and only then commit the batch's offsets (highest + 1 per partition). A crash anywhere
// before the commit replays the batch; the unique key makes the replay a no-op.
//
// While a batch is being written, the next is polled and decoded, and up to WRITES_IN_FLIGHT
// batches are written at once (each in its own transaction, on its own connection), so this
// process and the database work at the same time. Offsets are still committed batch by batch, in
// poll order, and at most WRITES_IN_FLIGHT + 1 batches are held in memory.
//
// Each batch has an id (a counter of this process) and a logger carrying it with the batch's offset
// ranges and the request and trace ids of its messages, made only when a line about the batch is
// logged; with tracing on, its spans (worker/batch-trace.ts) continue each sampled request's trace.
import { ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import {
  type ConsumedMessage,
  type KafkaConsumer,
  type KafkaProducer,
  type TopicPartitionOffset,
  nextOffsets,
} from "bun-rdkafka";
import { isDataError } from "../shared/db-errors.ts";
import type { Logger } from "../shared/logger.ts";
import { type Poison, type Row, decode, isPoison } from "../shared/scan-events.ts";
import { TRACING_OFF, type Tracing } from "../shared/tracing.ts";
import { BatchTrace } from "./batch-trace.ts";
import { commitDurable } from "./commit.ts";
import type { WorkerConfig } from "./config.ts";
import { logDeadLetters, publishDeadLetters } from "./dead-letters.ts";
import { requestIdsOf } from "./message-context.ts";
import type { WorkerMetrics } from "./metrics.ts";
import type { PartitionProgress } from "./progress.ts";
import type { WithRetry } from "./retry.ts";
import { ArchivedDaysError, type ScanSink, type WriteResult, isMissingPartition } from "./sink.ts";

export interface ScanLoopOptions {
  config: WorkerConfig;
  consumer: KafkaConsumer;
  producer: KafkaProducer;
  sink: ScanSink;
  metrics: WorkerMetrics;
  /** Told what was polled and committed, so a stalled partition shows outside this loop. */
  progress: PartitionProgress;
  logger: Logger;
  isStopping: () => boolean;
  withRetry: WithRetry;
  /** Default: off. */
  tracing?: Tracing;
}

/** A batch's offsets in log lines: the first and last offset polled per partition. */
export interface OffsetRange {
  topic: string;
  partition: number;
  first: number;
  last: number;
}

interface Batch {
  id: number;
  /** The offsets committing this batch commits: highest polled + 1 per partition. */
  offsets: TopicPartitionOffset[];
  rows: Row[];
  poison: Poison[];
  /** The worker's logger with batch_id, offsets, request_ids and trace_ids; made on first use. */
  readonly log: Logger;
}

export async function runScanLoop(o: ScanLoopOptions): Promise<void> {
  const { config, consumer } = o;
  // Oldest first; each batch commits its offsets only after the one before it has.
  const inFlight: Promise<void>[] = [];
  // The first write that failed: the loop stops at its next turn, not when it next awaits that write.
  let failure = null as { error: unknown } | null;
  let batches = 0;
  while (!o.isStopping()) {
    if (failure) throw failure.error;
    const messages = await consumer.poll(config.BATCH_MAX_ROWS, config.BATCH_MAX_WAIT_MS, {
      workInFlight: inFlight.length > 0,
    });
    const batch = messages.length > 0 ? await decodeBatch(++batches, messages, o.logger) : null;
    if (batch) o.progress.polled(batch.offsets);
    if (inFlight.length >= config.WRITES_IN_FLIGHT) await inFlight.shift();
    if (batch) {
      const written = writeAndCommit(o, batch, inFlight.at(-1) ?? null);
      // Its batch stays uncommitted (replayed as a no-op by the partition's next owner); the
      // error is thrown once, by this loop, and reported by the worker's main.
      written.catch((error) => {
        failure ??= { error };
      });
      inFlight.push(written);
    }
    // A held revocation is applied by the next poll, which must find nothing in flight.
    if (consumer.revokePending) {
      for (const written of inFlight.splice(0)) await written;
    }
  }
  for (const written of inFlight.splice(0)) await written;
}

// Messages decoded per turn of the event loop, so the batch being written is not held up.
const DECODE_SLICE = 500;

async function decodeBatch(id: number, messages: ConsumedMessage[], logger: Logger): Promise<Batch> {
  const rows: Row[] = [];
  const poison: Poison[] = [];
  // The first offset per partition (messages of a partition arrive in order): for the log lines.
  const first: number[] = [];
  for (let i = 0; i < messages.length; i++) {
    if (i > 0 && i % DECODE_SLICE === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    const m = messages[i] as ConsumedMessage;
    first[m.partition] ??= m.offset;
    const d = decode(m);
    if (isPoison(d)) poison.push(d);
    else rows.push(d);
  }
  const offsets = nextOffsets(messages);
  let log: Logger | null = null;
  return {
    id,
    offsets,
    rows,
    poison,
    // Most batches log nothing: the ids are read from the headers only for a line that is logged.
    get log() {
      log ??= logger.child({
        batch_id: id,
        offsets: offsets.map(
          ({ topic, partition, offset }): OffsetRange => ({
            topic,
            partition,
            first: first[partition] as number,
            last: offset - 1,
          }),
        ),
        ...requestIdsOf(messages),
      });
      return log;
    },
  };
}

/**
 * Writes a batch, then commits its offsets once `previous` (the batch polled before it) has
 * committed: an offset commit covers everything before it in the partition, so a batch written
 * early must not commit past one still being written. If `previous` failed, this one throws too.
 */
async function writeAndCommit(o: ScanLoopOptions, batch: Batch, previous: Promise<void> | null): Promise<void> {
  const tracing = o.tracing ?? TRACING_OFF;
  const batchTrace = tracing.enabled
    ? new BatchTrace(tracing, {
        topic: o.config.SCANS_TOPIC,
        group: o.config.CONSUMER_GROUP,
        batchId: batch.id,
        parts: [batch.rows, batch.poison],
      })
    : null;
  try {
    await writeAndCommitBatch(o, batch, previous, tracing, batchTrace);
    batchTrace?.end();
  } catch (error) {
    batchTrace?.end(error);
    throw new BatchFailedError(batch, error);
  }
}

async function writeAndCommitBatch(
  o: ScanLoopOptions,
  batch: Batch,
  previous: Promise<void> | null,
  tracing: Tracing,
  batchTrace: BatchTrace | null,
): Promise<void> {
  const { offsets, rows, poison } = batch;
  const span = batchTrace?.span ?? null;
  const { config, metrics } = o;
  const started = performance.now();
  // Each attempt isolates afresh: a retry after a partial bisection must not dead-letter twice.
  const { result, isolated } = await traced(tracing, span, "write batch", { "db.system.name": "postgresql" }, () =>
    o.withRetry(
      "write batch",
      async () => {
        const isolated: Poison[] = [];
        return { result: await writeIsolating(o, rows, isolated), isolated };
      },
      () => batch.log,
    ),
  );
  poison.push(...isolated);
  const writtenAt = Date.now();
  metrics.writeDuration.observe((performance.now() - started) / 1000);
  // Freshness: accepted (the edge produced the message) → row visible (this commit), per event.
  for (const row of rows) metrics.freshness.observe((writtenAt - row.message.timestamp) / 1000);
  if (poison.length) {
    const publish = () =>
      o.withRetry(
        "publish dead letters",
        () => publishDeadLetters(o.producer, config.DEAD_LETTER_TOPIC, poison),
        () => batch.log,
      );
    await (batchTrace
      ? batchTrace.deadLettering(
          config.DEAD_LETTER_TOPIC,
          poison.map((p) => p.message),
          publish,
        )
      : publish());
    metrics.deadLettered.inc(poison.length);
    logDeadLetters(o.logger, batch.id, poison);
  }
  if (config.FAULT_DELAY_BEFORE_COMMIT_MS) await Bun.sleep(config.FAULT_DELAY_BEFORE_COMMIT_MS);

  await previous;
  // A retriable commit error (the group coordinator moving while a broker restarts) is retried,
  // partitions paused, like a transient database error, rather than ending the worker.
  await traced(tracing, span, "commit offsets", { "messaging.operation.type": "settle" }, () =>
    o.withRetry(
      "commit offsets",
      () => commitDurable(batchCommitter(o, batch), offsets),
      () => batch.log,
    ),
  );
  o.progress.committed(offsets);
  metrics.batches.inc();
  metrics.inserted.inc(result.inserted);
  metrics.duplicates.inc(result.duplicates);
  span?.setAttribute("qrscan.rows.inserted", result.inserted);
  span?.setAttribute("qrscan.rows.duplicate", result.duplicates);
}

/**
 * A batch that could not be written or committed; carries its id, offsets and its messages'
 * request and trace ids for the one log line.
 */
export class BatchFailedError extends Error {
  readonly batch_id: number;
  readonly offsets: readonly TopicPartitionOffset[];
  readonly request_ids?: string[];
  readonly trace_ids?: string[];
  constructor(batch: Batch, cause: unknown) {
    super(`batch ${batch.id}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = "BatchFailedError";
    this.batch_id = batch.id;
    this.offsets = batch.offsets;
    const ids = requestIdsOf(batchMessages(batch));
    this.request_ids = ids.request_ids;
    this.trace_ids = ids.trace_ids;
  }
}

/** What commitDurable needs, with the batch's logger made only if it logs. */
function batchCommitter(o: ScanLoopOptions, batch: Batch) {
  return {
    consumer: o.consumer,
    metrics: o.metrics,
    get logger() {
      return batch.log;
    },
  };
}

function* batchMessages(batch: Batch) {
  for (const r of batch.rows) yield r.message;
  for (const p of batch.poison) yield p.message;
}

/** Runs `fn` in a child span of `parent` when tracing is on; just runs it otherwise. */
async function traced<T>(
  tracing: Tracing,
  parent: Span | null,
  name: string,
  attributes: Record<string, string>,
  fn: () => Promise<T>,
): Promise<T> {
  if (!parent) return fn();
  const span = tracing.tracer.startSpan(
    name,
    { kind: SpanKind.CLIENT, attributes },
    trace.setSpan(ROOT_CONTEXT, parent),
  );
  try {
    return await fn();
  } catch (error) {
    span.recordException(error as Error);
    span.setStatus({ code: SpanStatusCode.ERROR });
    throw error;
  } finally {
    span.end();
  }
}

/**
 * Writes `rows`; if the database rejects the batch for a row's data (which the shared schema
 * should have caught), splits it in halves until the offending rows are alone, and turns those
 * into poison. Transient errors propagate to the retry wrapper; anything else stops the worker.
 *
 * Rows of days archived by retention are poison with the reason and the way back
 * (ArchivedDaysError.reason); a day's partition found missing (dropped by `bun run maintain` while
 * cached as known) makes the sink ask again once, before any row is taken for poison.
 */
async function writeIsolating(
  o: ScanLoopOptions,
  rows: Row[],
  poison: Poison[],
  partitionsRechecked = false,
): Promise<WriteResult> {
  try {
    return await o.sink.write(rows);
  } catch (error) {
    if (error instanceof ArchivedDaysError) {
      const kept: Row[] = [];
      for (const r of rows) {
        if (error.days.has(r.day)) poison.push({ message: r.message, error: ArchivedDaysError.reason(r.day) });
        else kept.push(r);
      }
      return kept.length ? writeIsolating(o, kept, poison, partitionsRechecked) : { inserted: 0, duplicates: 0 };
    }
    if (!isDataError(error)) throw error;
    if (!partitionsRechecked && isMissingPartition(error)) {
      o.sink.forgetPartitions();
      return writeIsolating(o, rows, poison, true);
    }
    if (rows.length === 1) {
      poison.push({ message: (rows[0] as Row).message, error: `rejected by Postgres: ${(error as Error).message}` });
      return { inserted: 0, duplicates: 0 };
    }
    const mid = Math.floor(rows.length / 2);
    const a = await writeIsolating(o, rows.slice(0, mid), poison, partitionsRechecked);
    const b = await writeIsolating(o, rows.slice(mid), poison, partitionsRechecked);
    return { inserted: a.inserted + b.inserted, duplicates: a.duplicates + b.duplicates };
  }
}
