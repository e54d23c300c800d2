// Reading from Kafka in tests. Topics, producers and consumers come from ./fixtures.ts.
import { type ConsumedMessage, type KafkaConsumer, nextOffsets } from "bun-rdkafka";
import { javaClasspath } from "../../tools/stack/kafka.ts";
import { stack } from "./stack.ts";

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

/** One producer the broker keeps state for on a partition (its idempotence/transaction bookkeeping). */
export interface ProducerState {
  producerId: number;
  producerEpoch: number;
  /** The sequence number of the last record it appended to the partition (records − 1 for one producer). */
  lastSequence: number;
}

/**
 * The producers the broker holds state for on `topic`/`partition`, from the broker itself (the
 * DescribeProducers admin API, through Kafka's own `kafka-transactions.sh describe-producers`
 * from the stack's jars; a JVM start, about 3 s). A producer without idempotence leaves none.
 */
export function describeProducers(topic: string, partition: number): ProducerState[] {
  const res = Bun.spawnSync(
    [
      "java",
      "-Xmx256m",
      "-cp",
      javaClasspath(stack),
      "org.apache.kafka.tools.TransactionsCommand",
      "--bootstrap-server",
      stack.brokers,
      "describe-producers",
      "--topic",
      topic,
      "--partition",
      String(partition),
    ],
    { timeout: 60_000 },
  );
  const out = res.stdout.toString();
  if (res.exitCode !== 0) {
    throw new Error(`describe-producers ${topic}/${partition} exited ${res.exitCode}:\n${out}\n${res.stderr}`);
  }
  // A header line (ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence …), then one per producer.
  const [header, ...rows] = out.trim().split("\n");
  const columns = (header ?? "").trim().split(/\s+/);
  const col = (name: string) => {
    const i = columns.indexOf(name);
    if (i < 0) throw new Error(`describe-producers: no ${name} column in ${JSON.stringify(header)}`);
    return i;
  };
  const [id, epoch, last] = [col("ProducerId"), col("ProducerEpoch"), col("LastSequence")];
  return rows
    .filter((r) => r.trim())
    .map((r) => {
      const f = r.trim().split(/\s+/);
      return { producerId: Number(f[id]), producerEpoch: Number(f[epoch]), lastSequence: Number(f[last]) };
    });
}
