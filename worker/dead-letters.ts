// Poison messages: published to the dead-letter topic (with headers naming the error and the
// source coordinates) before the batch's offsets are committed, so one bad message never blocks
// its partition and is never lost. A second consumer group reads that topic into dead_letters.
import { type ConsumedMessage, type KafkaConsumer, type KafkaProducer, nextOffsets } from "bun-rdkafka";
import type { Logger } from "../shared/logger.ts";
import type { Poison } from "../shared/scan-events.ts";
import { commitDurable } from "./commit.ts";
import type { Transaction } from "./db.ts";
import type { WorkerMetrics } from "./metrics.ts";
import type { WithRetry } from "./retry.ts";

export const HEADER = {
  error: "dlq_error",
  sourceTopic: "dlq_source_topic",
  sourcePartition: "dlq_source_partition",
  sourceOffset: "dlq_source_offset",
  failedAt: "dlq_failed_at",
} as const;

/** Publishes poison messages and resolves once Kafka has them all (acks=all). */
export async function publishDeadLetters(producer: KafkaProducer, topic: string, poison: readonly Poison[]) {
  const failedAt = new Date().toISOString();
  await producer.send(
    poison.map(({ message, error }) => ({
      topic,
      key: message.key,
      value: message.value,
      headers: {
        [HEADER.error]: error.slice(0, 2_000),
        [HEADER.sourceTopic]: message.topic,
        [HEADER.sourcePartition]: String(message.partition),
        [HEADER.sourceOffset]: String(message.offset),
        [HEADER.failedAt]: failedAt,
      },
    })),
  );
}

const header = (m: ConsumedMessage, name: string) => {
  const value = m.headers?.[name];
  return value ? Buffer.from(value).toString("utf8") : undefined;
};

/** A dead_letters row; a message without our headers is stored against its own coordinates. */
export function deadLetterRow(m: ConsumedMessage) {
  return {
    source_topic: header(m, HEADER.sourceTopic) ?? m.topic,
    source_partition: Number(header(m, HEADER.sourcePartition) ?? m.partition),
    source_offset: Number(header(m, HEADER.sourceOffset) ?? m.offset),
    key: m.key ? Buffer.from(m.key) : null,
    payload: m.value ? Buffer.from(m.value) : null,
    error: header(m, HEADER.error) ?? "dead letter without an error header",
    failed_at: header(m, HEADER.failedAt) ?? new Date(m.timestamp).toISOString(),
  };
}

export interface DeadLetterLoopOptions {
  consumer: KafkaConsumer;
  /** A bounded transaction (worker/db.ts): statement timeout and client-side deadline. */
  transaction: Transaction;
  metrics: WorkerMetrics;
  logger: Logger;
  isStopping: () => boolean;
  /** Wraps the database write with the same transient-error retry as the main sink. */
  withRetry: WithRetry;
}

/** Reads the dead-letter topic into dead_letters (idempotent on the source coordinates). */
export async function runDeadLetterLoop(o: DeadLetterLoopOptions): Promise<void> {
  while (!o.isStopping()) {
    const messages = await o.consumer.poll(500, 200);
    if (messages.length === 0) continue;
    const rows = messages.map(deadLetterRow);
    await o.withRetry("store dead letters", () =>
      o.transaction(
        "store dead letters",
        (tx) => tx`
          insert into dead_letters ${tx(rows, "source_topic", "source_partition", "source_offset", "key", "payload", "error", "failed_at")}
          on conflict (source_topic, source_partition, source_offset) do nothing`,
      ),
    );
    const offsets = nextOffsets(messages);
    await o.withRetry("commit dead-letter offsets", () => commitDurable(o, offsets));
    o.metrics.deadLettersStored.inc(rows.length);
    // Where they came from (the first 20), for `bun run dlq list` (docs/runbooks/dead-letters.md).
    o.logger.warn(
      {
        count: rows.length,
        sources: rows.slice(0, 20).map((r) => `${r.source_topic}/${r.source_partition}@${r.source_offset}`),
        offsets,
      },
      "stored dead letters",
    );
  }
}
