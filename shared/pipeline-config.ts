// Settings that more than one process reads under the same name, defined once: where the pipeline's
// topics and consumer groups are, how the sink batches (restore-offsets' rewind depends on it),
// and the edge's oldest accepted event (the retention policy depends on it). The server's and the
// worker's schemas (server/config.ts, worker/config.ts) and the operator jobs' (jobs/) spread these
// entries, so a default changes in one place for all of them.
import { int, str } from "./config.ts";
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

/** The sink's batch size. */
export const BATCH_MAX_ROWS = int(5_000, 1, 100_000);
/** Batches written concurrently (one transaction and connection each); offsets still commit in order. */
export const WRITES_IN_FLIGHT = int(2, 1, 16);
/** The edge's oldest accepted scanned_at, in hours (the maintain job's policy check reads it too). */
export const SCANNED_AT_MAX_AGE_HOURS = int(7 * 24, 1);
