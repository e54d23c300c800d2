// The sink loop of one worker: poll a batch, decode it, dead-letter the poison, write the rest to
// Postgres, and only then commit the batch's offsets (highest + 1 per partition). A crash anywhere
// before the commit replays the batch; the unique key makes the replay a no-op.
//
// While a batch is being written, the next is polled and decoded, and up to WRITES_IN_FLIGHT
// batches are written at once (each in its own transaction, on its own connection), so this
// process and the database work at the same time. Offsets are still committed batch by batch, in
// poll order, and at most WRITES_IN_FLIGHT + 1 batches are held in memory.
import { isDataError } from "../shared/db-errors.ts";
import {
  type ConsumedMessage,
  type KafkaConsumer,
  type KafkaProducer,
  type TopicPartitionOffset,
  nextOffsets,
} from "../shared/kafka/index.ts";
import type { Logger } from "../shared/logger.ts";
import { commitDurable } from "./commit.ts";
import type { WorkerConfig } from "./config.ts";
import { publishDeadLetters } from "./dead-letters.ts";
import { type Poison, type Row, decode, isPoison } from "./decode.ts";
import type { WorkerMetrics } from "./metrics.ts";
import type { PartitionProgress } from "./progress.ts";
import type { ScanSink, WriteResult } from "./sink.ts";

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
  withRetry: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
}

interface Batch {
  /** The offsets committing this batch commits: highest polled + 1 per partition. */
  offsets: TopicPartitionOffset[];
  rows: Row[];
  poison: Poison[];
}

export async function runScanLoop(o: ScanLoopOptions): Promise<void> {
  const { config, consumer } = o;
  // Oldest first; each batch commits its offsets only after the one before it has.
  const inFlight: Promise<void>[] = [];
  // The first write that failed: the loop stops at its next turn, not when it next awaits that write.
  let failure = null as { error: unknown } | null;
  while (!o.isStopping()) {
    if (failure) throw failure.error;
    const messages = await consumer.poll(config.BATCH_MAX_ROWS, config.BATCH_MAX_WAIT_MS, {
      workInFlight: inFlight.length > 0,
    });
    const batch = messages.length > 0 ? await decodeBatch(messages) : null;
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

async function decodeBatch(messages: ConsumedMessage[]): Promise<Batch> {
  const rows: Row[] = [];
  const poison: Poison[] = [];
  for (let i = 0; i < messages.length; i++) {
    if (i > 0 && i % DECODE_SLICE === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    const d = decode(messages[i] as ConsumedMessage);
    if (isPoison(d)) poison.push(d);
    else rows.push(d);
  }
  return { offsets: nextOffsets(messages), rows, poison };
}

/**
 * Writes a batch, then commits its offsets once `previous` (the batch polled before it) has
 * committed: an offset commit covers everything before it in the partition, so a batch written
 * early must not commit past one still being written. If `previous` failed, this one throws too.
 */
async function writeAndCommit(o: ScanLoopOptions, batch: Batch, previous: Promise<void> | null): Promise<void> {
  const { offsets, rows, poison } = batch;
  const { config, metrics } = o;
  const started = performance.now();
  // Each attempt isolates afresh: a retry after a partial bisection must not dead-letter twice.
  const { result, isolated } = await o.withRetry("write batch", async () => {
    const isolated: Poison[] = [];
    return { result: await writeIsolating(o, rows, isolated), isolated };
  });
  poison.push(...isolated);
  metrics.writeDuration.observe((performance.now() - started) / 1000);
  if (poison.length) {
    await o.withRetry("publish dead letters", () => publishDeadLetters(o.producer, config.DEAD_LETTER_TOPIC, poison));
    metrics.deadLettered.inc(poison.length);
  }
  if (config.FAULT_DELAY_BEFORE_COMMIT_MS) await Bun.sleep(config.FAULT_DELAY_BEFORE_COMMIT_MS);

  await previous;
  // A retriable commit error (the group coordinator moving while a broker restarts) is retried,
  // partitions paused, like a transient database error; it used to end the worker.
  await o.withRetry("commit offsets", () => commitDurable(o, offsets));
  o.progress.committed(offsets);
  metrics.batches.inc();
  metrics.inserted.inc(result.inserted);
  metrics.duplicates.inc(result.duplicates);
}

/**
 * Writes `rows`; if the database rejects the batch for a row's data (which the shared schema
 * should have caught), splits it in halves until the offending rows are alone, and turns those
 * into poison. Transient errors propagate to the retry wrapper; anything else stops the worker.
 */
async function writeIsolating(o: ScanLoopOptions, rows: Row[], poison: Poison[]): Promise<WriteResult> {
  try {
    return await o.sink.write(rows);
  } catch (error) {
    if (!isDataError(error)) throw error;
    if (rows.length === 1) {
      poison.push({ message: (rows[0] as Row).message, error: `rejected by Postgres: ${(error as Error).message}` });
      return { inserted: 0, duplicates: 0 };
    }
    const mid = Math.floor(rows.length / 2);
    const a = await writeIsolating(o, rows.slice(0, mid), poison);
    const b = await writeIsolating(o, rows.slice(mid), poison);
    return { inserted: a.inserted + b.inserted, duplicates: a.duplicates + b.duplicates };
  }
}
