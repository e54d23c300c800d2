// Reading from Kafka in tests. Topics, producers and consumers come from ./fixtures.ts.
import { type ConsumedMessage, type KafkaConsumer, nextOffsets } from "bun-rdkafka";

/** Polls until `count` messages arrived (or `timeoutMs`), committing as it goes when asked. */
export async function consumeN(
  consumer: KafkaConsumer,
  count: number,
  { timeoutMs = 30_000, commit = false } = {},
): Promise<ConsumedMessage[]> {
  const out: ConsumedMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < count && Date.now() < deadline) {
    const batch = await consumer.poll(Math.min(5_000, count - out.length), 100);
    out.push(...batch);
    if (commit && batch.length) await consumer.commit(nextOffsets(batch));
  }
  return out;
}

export const text = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString("utf8") : null);
