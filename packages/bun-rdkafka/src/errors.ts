// Typed errors of the Kafka binding: a closed list of codes, each with a retry flag
// (modelled on platformatic/kafka's errors.ts). librdkafka's own code and name ride along when known.
import { ErrorCode } from "./error-codes.ts";

export const KAFKA_ERRORS = {
  LIBRARY_NOT_FOUND: { retriable: false },
  /** The librdkafka found (or its rdkafka.h) is not the one the binding's struct layouts were built against. */
  LIBRARY_MISMATCH: { retriable: false },
  CONFIG: { retriable: false },
  QUEUE_FULL: { retriable: true },
  BROKER_UNAVAILABLE: { retriable: true },
  TIMEOUT: { retriable: true },
  UNKNOWN_TOPIC: { retriable: false },
  /** The group rebalanced under a commit: the uncommitted work is redelivered (to this or another member). */
  REBALANCE: { retriable: false },
  FATAL: { retriable: false },
  CLOSED: { retriable: false },
  KAFKA: { retriable: false },
} as const;

export type KafkaErrorCode = keyof typeof KAFKA_ERRORS;

export class KafkaError extends Error {
  readonly code: KafkaErrorCode;
  readonly retriable: boolean;
  /** librdkafka's rd_kafka_resp_err_t value, when the error came from librdkafka. */
  readonly kafkaCode: number | undefined;

  constructor(code: KafkaErrorCode, message: string, kafkaCode?: number) {
    super(message);
    this.name = "KafkaError";
    this.code = code;
    this.retriable = KAFKA_ERRORS[code].retriable;
    this.kafkaCode = kafkaCode;
  }
}

export class LibraryNotFoundError extends KafkaError {
  constructor(tried: readonly string[]) {
    super(
      "LIBRARY_NOT_FOUND",
      [
        "librdkafka could not be loaded. Install it (Debian/Ubuntu: `apt-get install librdkafka1`;",
        "macOS: `brew install librdkafka`) or point LIBRDKAFKA_PATH at the shared library.",
        `Tried: ${tried.join("; ")}`,
      ].join(" "),
    );
    this.name = "LibraryNotFoundError";
  }
}

/** The loaded library or the installed rdkafka.h differs from what the binding was built against. */
export class LibraryMismatchError extends KafkaError {
  /** Each difference, e.g. "MESSAGE.size: rdkafka.h says 80, the binding uses 72". */
  readonly differences: readonly string[];

  constructor(what: string, differences: readonly string[]) {
    super("LIBRARY_MISMATCH", `${what} differs from what bun-rdkafka was built against: ${differences.join("; ")}`);
    this.name = "LibraryMismatchError";
    this.differences = differences;
  }
}

/** The producer's local queue is full: back off and retry (HTTP layers map this to 503 + Retry-After). */
export class QueueFullError extends KafkaError {
  constructor(message = "producer queue is full (queue.buffering.max.messages/kbytes reached)") {
    super("QUEUE_FULL", message, ErrorCode._QUEUE_FULL);
    this.name = "QueueFullError";
  }
}

const BROKER_UNAVAILABLE_CODES = new Set<number>([
  ErrorCode._TRANSPORT,
  ErrorCode._ALL_BROKERS_DOWN,
  ErrorCode._MSG_TIMED_OUT,
  ErrorCode._RESOLVE,
  ErrorCode._PURGE_QUEUE,
  ErrorCode._PURGE_INFLIGHT,
  ErrorCode.LEADER_NOT_AVAILABLE,
  ErrorCode.NOT_LEADER_FOR_PARTITION,
  ErrorCode.NOT_ENOUGH_REPLICAS,
  ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
  ErrorCode.BROKER_NOT_AVAILABLE,
  ErrorCode.NETWORK_EXCEPTION,
  ErrorCode.REQUEST_TIMED_OUT,
  ErrorCode.COORDINATOR_NOT_AVAILABLE,
  ErrorCode.NOT_COORDINATOR,
  ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
]);

const REBALANCE_CODES = new Set<number>([
  ErrorCode.ILLEGAL_GENERATION,
  ErrorCode.UNKNOWN_MEMBER_ID,
  ErrorCode.REBALANCE_IN_PROGRESS,
  ErrorCode._ASSIGNMENT_LOST,
  ErrorCode._STATE,
]);

const TIMEOUT_CODES = new Set<number>([ErrorCode._TIMED_OUT, ErrorCode._TIMED_OUT_QUEUE]);
const UNKNOWN_TOPIC_CODES = new Set<number>([ErrorCode._UNKNOWN_TOPIC, ErrorCode.UNKNOWN_TOPIC_OR_PART]);

/** Maps a librdkafka response code to the binding's typed error. */
export function errorFromCode(kafkaCode: number, message: string, fatal = false): KafkaError {
  if (fatal) return new KafkaError("FATAL", message, kafkaCode);
  if (kafkaCode === ErrorCode._QUEUE_FULL) return new QueueFullError();
  if (BROKER_UNAVAILABLE_CODES.has(kafkaCode)) return new KafkaError("BROKER_UNAVAILABLE", message, kafkaCode);
  if (REBALANCE_CODES.has(kafkaCode)) return new KafkaError("REBALANCE", message, kafkaCode);
  if (TIMEOUT_CODES.has(kafkaCode)) return new KafkaError("TIMEOUT", message, kafkaCode);
  if (UNKNOWN_TOPIC_CODES.has(kafkaCode)) return new KafkaError("UNKNOWN_TOPIC", message, kafkaCode);
  return new KafkaError("KAFKA", message, kafkaCode);
}
