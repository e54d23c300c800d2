// The offsets to commit after a batch: the highest offset + 1 per partition. Used by the worker's
// commits, the tests' consumers and the benches.
import type { ConsumedMessage } from "./consumer.ts";
import type { TopicPartitionOffset } from "./native.ts";

/** The offsets to commit after processing `messages`: per partition, its highest offset + 1. */
export function nextOffsets(messages: readonly ConsumedMessage[]): TopicPartitionOffset[] {
  // Per topic, the next offset indexed by partition (no per-message key strings: batches are large).
  const byTopic = new Map<string, number[]>();
  for (const m of messages) {
    let next = byTopic.get(m.topic);
    if (!next) {
      next = [];
      byTopic.set(m.topic, next);
    }
    if (!(m.offset < (next[m.partition] ?? 0))) next[m.partition] = m.offset + 1;
  }
  const offsets: TopicPartitionOffset[] = [];
  for (const [topic, next] of byTopic) {
    next.forEach((offset, partition) => offsets.push({ topic, partition, offset }));
  }
  return offsets;
}
