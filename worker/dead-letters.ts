// Poison messages: published to the dead-letter topic (with headers naming the error and the
// source coordinates) before the batch's offsets are committed, so one bad message never blocks
// its partition and is never lost. A second consumer group reads that topic into dead_letters.
// A dead letter keeps what ties it to its request: the original's traceparent, request_id and
// event_id headers (event_id from the payload when the header is missing), in the dead-letter
// topic's headers and in dead_letters' columns (migration 0010).
import { type ConsumedMessage, type KafkaConsumer, type KafkaProducer, nextOffsets } from "bun-rdkafka";
import type { Logger } from "../shared/logger.ts";
import type { Poison } from "../shared/scan-events.ts";
import { commitDurable } from "./commit.ts";
import type { Transaction } from "./db.ts";
import {
  EDGE_HEADER,
  eventIdOf,
  requestIdOf,
  requestIdsOf,
  traceIdOfMessage,
  traceparentOf,
} from "./message-context.ts";
import type { WorkerMetrics } from "./metrics.ts";
import type { WithRetry } from "./retry.ts";

export const HEADER = {
  error: "dlq_error",
  sourceTopic: "dlq_source_topic",
  sourcePartition: "dlq_source_partition",
  sourceOffset: "dlq_source_offset",
  failedAt: "dlq_failed_at",
} as const;

/** The original's headers a dead letter carries on, as they were (bytes). */
const CARRIED = [EDGE_HEADER.traceparent, EDGE_HEADER.tracestate, EDGE_HEADER.requestId] as const;

/** The dead-letter topic's headers for one poison message. */
export function deadLetterHeaders({ message, error }: Poison, failedAt: string): Record<string, string | Uint8Array> {
  const headers: Record<string, string | Uint8Array> = {
    [HEADER.error]: error.slice(0, 2_000),
    [HEADER.sourceTopic]: message.topic,
    [HEADER.sourcePartition]: String(message.partition),
    [HEADER.sourceOffset]: String(message.offset),
    [HEADER.failedAt]: failedAt,
  };
  for (const name of CARRIED) {
    const value = message.headers?.[name];
    if (value) headers[name] = value;
  }
  const eventId = message.headers?.[EDGE_HEADER.eventId] ?? eventIdOf(message);
  if (eventId) headers[EDGE_HEADER.eventId] = eventId;
  return headers;
}

/** Publishes poison messages and resolves once Kafka has them all (acks=all). */
export async function publishDeadLetters(producer: KafkaProducer, topic: string, poison: readonly Poison[]) {
  const failedAt = new Date().toISOString();
  await producer.send(
    poison.map((p) => ({ topic, key: p.message.key, value: p.message.value, headers: deadLetterHeaders(p, failedAt) })),
  );
}

/** Dead letters logged one per line, with their ids; past this many per batch, one line counts the rest. */
export const DEAD_LETTER_LINES_PER_BATCH = 20;

/**
 * One warning per dead letter, after they are published: where it came from, why, and the
 * request_id, trace_id and event_id that tie it to its request (dead letters are rare: the edge
 * accepts only what Postgres stores).
 */
export function logDeadLetters(logger: Logger, batchId: number, poison: readonly Poison[]): void {
  for (const { message, error } of poison.slice(0, DEAD_LETTER_LINES_PER_BATCH)) {
    logger.warn(
      {
        batch_id: batchId,
        request_id: requestIdOf(message),
        trace_id: traceIdOfMessage(message),
        event_id: eventIdOf(message),
        source: `${message.topic}/${message.partition}@${message.offset}`,
        error,
      },
      "dead-lettered a message that can never be stored",
    );
  }
  const rest = poison.length - DEAD_LETTER_LINES_PER_BATCH;
  if (rest > 0) {
    logger.warn(
      {
        batch_id: batchId,
        count: rest,
        ...requestIdsOf(poison.slice(DEAD_LETTER_LINES_PER_BATCH).map((p) => p.message)),
      },
      `dead-lettered more messages that can never be stored (one line each for the first ${DEAD_LETTER_LINES_PER_BATCH} of this batch)`,
    );
  }
}

const header = (m: ConsumedMessage, name: string) => {
  const value = m.headers?.[name];
  return value ? Buffer.from(value).toString("utf8") : undefined;
};

/**
 * A dead_letters row; a message without our headers is stored against its own coordinates. The
 * request's ids are stored only when well formed (a record produced around the edge can carry
 * anything, and a value Postgres refused would block the dead-letter topic).
 */
export function deadLetterRow(m: ConsumedMessage) {
  return {
    source_topic: header(m, HEADER.sourceTopic) ?? m.topic,
    source_partition: Number(header(m, HEADER.sourcePartition) ?? m.partition),
    source_offset: Number(header(m, HEADER.sourceOffset) ?? m.offset),
    key: m.key ? Buffer.from(m.key) : null,
    payload: m.value ? Buffer.from(m.value) : null,
    error: header(m, HEADER.error) ?? "dead letter without an error header",
    failed_at: header(m, HEADER.failedAt) ?? new Date(m.timestamp).toISOString(),
    event_id: eventIdOf(m) ?? null,
    request_id: requestIdOf(m) ?? null,
    traceparent: traceparentOf(m) ?? null,
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
          insert into dead_letters ${tx(rows, "source_topic", "source_partition", "source_offset", "key", "payload", "error", "failed_at", "event_id", "request_id", "traceparent")}
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
        ...requestIdsOf(messages),
        offsets,
      },
      "stored dead letters",
    );
  }
}
