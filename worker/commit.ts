// Committing a batch once it is durable (the offsets to commit: bun-rdkafka's nextOffsets).
import { type KafkaConsumer, KafkaError, type TopicPartitionOffset } from "bun-rdkafka";
import type { Logger } from "../shared/logger.ts";
import type { WorkerMetrics } from "./metrics.ts";

/**
 * Commits a batch that is already durable in Postgres. If the group rebalanced meanwhile, the
 * commit is refused; that is safe to skip: the partitions' next owner (maybe us) re-reads from
 * the last committed offset and the unique key turns the replay into a no-op.
 */
export async function commitDurable(
  o: { consumer: KafkaConsumer; logger: Logger; metrics: WorkerMetrics },
  offsets: readonly TopicPartitionOffset[],
): Promise<void> {
  try {
    await o.consumer.commit(offsets);
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
