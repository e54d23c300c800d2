// Settings that more than one process reads under the same name, defined once: where the pipeline's
// topics and consumer groups are, how the sink batches (restore-offsets' rewind depends on it),
// and the edge's oldest accepted event (the retention policy depends on it). The server's and the
// worker's schemas (server/config.ts, worker/config.ts) and the operator jobs' (jobs/) spread these
// entries, so a default changes in one place for all of them.
import {
  DURABLE_PRODUCER,
  KafkaSecurityEntries,
  assertDurableProducer,
  int,
  kafkaOverrides,
  kafkaSecurity,
  str,
} from "./config.ts";
import { TOPICS, localStack } from "./local-stack.ts";

/** The brokers and the scans topic: the edge produces to it, the worker consumes it. */
export const KafkaBrokerEntries = {
  KAFKA_BROKERS: str(localStack().brokers),
};

export const ScansTopicEntries = {
  SCANS_TOPIC: str(TOPICS.scans.name),
};

/** The worker's topics and groups beyond the scans topic (the dlq and restore-offsets jobs read them too). */
export const SinkGroupEntries = {
  DEAD_LETTER_TOPIC: str(TOPICS.deadLetters.name),
  CONSUMER_GROUP: str("qrscan-sink"),
  DEAD_LETTER_GROUP: str("qrscan-dead-letters"),
};

/** Everything the worker and the Kafka-facing jobs need to reach the pipeline's topics and groups. */
export const SinkKafkaEntries = {
  ...KafkaBrokerEntries,
  ...KafkaSecurityEntries,
  ...ScansTopicEntries,
  ...SinkGroupEntries,
};

/** The sink's batch size. */
export const BATCH_MAX_ROWS = int(5_000, 1, 100_000);
/** Batches written concurrently (one transaction and connection each); offsets still commit in order. */
export const WRITES_IN_FLIGHT = int(2, 1, 16);
/**
 * The edge's oldest accepted scan (its derived_at), in hours: 28 days, so a device offline for
 * weeks loses nothing, and its scans still fall in raw days kept (RETENTION_RAW_DAYS' default, 30:
 * the partition is the device's scanned_at, up to CLOCK_SKEW_MAX_HOURS older, and a day is dropped
 * whole). The maintain job's policy check reads both.
 */
export const SCANNED_AT_MAX_AGE_HOURS = int(28 * 24, 1);
/** The largest device clock offset (received_at - sent_at) the edge corrects; a larger one is refused. */
export const CLOCK_SKEW_MAX_HOURS = int(24, 1, 24 * 366);

/**
 * The worker's librdkafka settings, which the dlq job's replay producer shares: the brokers, then
 * KAFKA_OPT_* overrides (a weaker producer durability refused), then the security settings.
 */
export function pipelineKafkaSettings(
  c: Parameters<typeof kafkaSecurity>[0] & { KAFKA_BROKERS: string },
  env: Record<string, string | undefined>,
) {
  const overrides = kafkaOverrides(env);
  assertDurableProducer(overrides);
  const security = kafkaSecurity(c, overrides);
  return {
    /** KAFKA_OPT_* as librdkafka properties (the sink consumer applies them after its own). */
    overrides,
    /** Shared by the consumers and the producers (KAFKA_OPT_* overrides and security included). */
    kafka: {
      "bootstrap.servers": c.KAFKA_BROKERS,
      "statistics.interval.ms": 5_000,
      // Resume consuming within ~1 s of a broker's return (librdkafka's default cap is 10 s).
      "reconnect.backoff.max.ms": 1_000,
      ...overrides,
      ...security,
    } as Record<string, string | number | boolean>,
    /** Where and how to connect, nothing else: for admin clients and one-shot consumers. */
    kafkaClient: { "bootstrap.servers": c.KAFKA_BROKERS, ...security } as Record<string, string>,
    /** Applied last to a producer's settings: a record is acknowledged only once Kafka has it. */
    producer: DURABLE_PRODUCER,
  };
}
