// What to commit after a batch is durable: the highest offset + 1 per partition.
import type { ConsumedMessage, TopicPartitionOffset } from "../shared/kafka/index.ts";

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
