// The project's Kafka client: a bun:ffi binding to librdkafka's C API. Its public surface is the
// safe classes and types below; the raw symbol table (ffi.ts) and the C helpers (native.ts) stay inside.
// See docs/development.md ("Why our own Kafka binding") for why the Confluent npm package is not used.
import { lib } from "./ffi.ts";

export { KafkaAdmin, type NewTopic, type PartitionLag, type TopicDescription } from "./admin.ts";
export { type ConsumedMessage, type ConsumerOptions, KafkaConsumer } from "./consumer.ts";
export { ErrorCode, type ErrorCodeName } from "./error-codes.ts";
export {
  KAFKA_ERRORS,
  KafkaError,
  type KafkaErrorCode,
  LibraryMismatchError,
  LibraryNotFoundError,
  QueueFullError,
  errorFromCode,
} from "./errors.ts";
export type { KafkaConfig, TopicPartition, TopicPartitionOffset } from "./native.ts";
export { nextOffsets } from "./offsets.ts";
export {
  type Bytes,
  type DeliveryReport,
  KafkaProducer,
  type ProducerMessage,
  type ProducerOptions,
} from "./producer.ts";

/** librdkafka's version string, e.g. "2.0.2". */
export function librdkafkaVersion(): string {
  return String(lib().rd_kafka_version_str());
}
