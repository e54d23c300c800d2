// Committing a batch once it is durable: the highest offset + 1 per partition.
import {
  type ConsumedMessage,
  type KafkaConsumer,
  KafkaError,
  type TopicPartitionOffset,
} from "../shared/kafka/index.ts";
import type { Logger } from "../shared/logger.ts";
import type { WorkerMetrics } from "./metrics.ts";

export function nextOffsets(messages: readonly ConsumedMessage[]): TopicPartitionOffset[] {
  const next = new Map<string, TopicPartitionOffset>();
  for (const m of messages) {
    const key = `${m.topic}\u0000${m.partition}`;
    const cur = next.get(key);
    if (!cur || m.offset + 1 > cur.offset)
      next.set(key, { topic: m.topic, partition: m.partition, offset: m.offset + 1 });
  }
  return [...next.values()];
}

/**
 * Commits a batch that is already durable in Postgres. If the group rebalanced meanwhile, the
 * commit is refused; that is safe to skip: the partitions' next owner (maybe us) re-reads from
 * the last committed offset and the unique key turns the replay into a no-op.
 */
export async function commitDurable(
  o: { consumer: KafkaConsumer; logger: Logger; metrics: WorkerMetrics },
  messages: readonly ConsumedMessage[],
): Promise<void> {
  try {
    await o.consumer.commit(nextOffsets(messages));
    o.metrics.lastCommit.set(Date.now() / 1000);
  } catch (error) {
    if (!(error instanceof KafkaError && error.code === "REBALANCE")) throw error;
    o.metrics.skippedCommits.inc();
    o.logger.warn(
      { err: error.message },
      "offsets not committed (group rebalanced); the batch will be replayed as a no-op",
    );
  }
}
