// Factories for Kafka integration tests: each gives a random topic/group and registers cleanup,
// so tests never share state and leave nothing behind.
import { up } from "../../scripts/stack.ts";
import { KafkaAdmin, type KafkaConfig, KafkaConsumer, KafkaProducer, nextOffsets } from "../../shared/kafka/index.ts";
import type { ConsumedMessage, ConsumerOptions, ProducerOptions } from "../../shared/kafka/index.ts";
import { localStack } from "../../shared/local-stack.ts";
import { onCleanup } from "./cleanup.ts";

// Integration tests run against the project's real local stack; `up` is idempotent and returns
// at once when everything already runs, so any test file can also run alone.
await up();

export const stack = localStack();
export const brokerConfig: KafkaConfig = { "bootstrap.servers": stack.brokers };

export { onCleanup } from "./cleanup.ts";

export const uniqueName = (prefix: string) => `${prefix}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;

export function createAdmin(): KafkaAdmin {
  const admin = new KafkaAdmin({ config: brokerConfig });
  onCleanup(() => admin.close());
  return admin;
}

/** Creates a fresh topic, deleted after the test. */
export async function createTopic(partitions = 3): Promise<string> {
  const name = uniqueName("test");
  const admin = createAdmin();
  await admin.createTopics([{ name, partitions }], { ignoreExisting: false });
  onCleanup(() => admin.deleteTopics([name]));
  return name;
}

export function createProducer(config: KafkaConfig = {}, options: Omit<ProducerOptions, "config"> = {}): KafkaProducer {
  const producer = new KafkaProducer({ ...options, config: { ...brokerConfig, ...config } });
  onCleanup(() => producer.close(2_000));
  return producer;
}

export function createConsumer(config: KafkaConfig = {}, options: Omit<ConsumerOptions, "config"> = {}): KafkaConsumer {
  const consumer = new KafkaConsumer({
    ...options,
    config: { ...brokerConfig, "group.id": uniqueName("g"), ...config },
  });
  onCleanup(() => consumer.close(5_000));
  return consumer;
}

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

export { nextOffsets } from "../../shared/kafka/index.ts";

export const text = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString("utf8") : null);
