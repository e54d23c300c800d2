// The sink loop of one worker: poll a batch, decode it, dead-letter the poison, write the rest to
// Postgres, and only then commit the batch's offsets (highest + 1 per partition). A crash anywhere
// before the commit replays the batch; the unique key makes the replay a no-op.
import type { KafkaConsumer, KafkaProducer } from "../shared/kafka/index.ts";
import type { Logger } from "../shared/logger.ts";
import { commitDurable } from "./commit.ts";
import type { WorkerConfig } from "./config.ts";
import { publishDeadLetters } from "./dead-letters.ts";
import { type Poison, type Row, decode, isPoison } from "./decode.ts";
import type { WorkerMetrics } from "./metrics.ts";
import type { ScanSink, WriteResult } from "./sink.ts";

export interface ScanLoopOptions {
  config: WorkerConfig;
  consumer: KafkaConsumer;
  producer: KafkaProducer;
  sink: ScanSink;
  metrics: WorkerMetrics;
  logger: Logger;
  isStopping: () => boolean;
  withRetry: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
}

/** SQLSTATE classes caused by a row's data (22: data exception, 23: integrity): isolate the row. */
const isDataError = (error: unknown) => /^2[23]/.test(String((error as { code?: unknown }).code ?? ""));

export async function runScanLoop(o: ScanLoopOptions): Promise<void> {
  const { config, consumer, metrics } = o;
  while (!o.isStopping()) {
    const messages = await consumer.poll(config.BATCH_MAX_ROWS, config.BATCH_MAX_WAIT_MS);
    if (messages.length === 0) continue;

    const rows: Row[] = [];
    const poison: Poison[] = [];
    for (const m of messages) {
      const d = decode(m);
      if (isPoison(d)) poison.push(d);
      else rows.push(d);
    }

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

    await commitDurable(o, messages);
    metrics.batches.inc();
    metrics.inserted.inc(result.inserted);
    metrics.duplicates.inc(result.duplicates);
  }
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
