// Struct layouts and #define constants from rdkafka.h for x86-64/arm64 (LP64).
// probe.ts compiles a C program against an installed rdkafka.h and checks every value here
// (test/layout.test.ts runs it against this machine's header).

/** The librdkafka release these values were taken from (RD_KAFKA_VERSION of its rdkafka.h). */
export const BUILT_AGAINST = { version: "2.0.2", hex: 0x020002ff } as const;

export const MESSAGE = {
  size: 72,
  err: 0,
  rkt: 8,
  partition: 16,
  payload: 24,
  len: 32,
  key: 40,
  keyLen: 48,
  offset: 56,
  private: 64,
} as const;

export const TOPIC_PARTITION = { size: 64, topic: 0, partition: 8, offset: 16, err: 48 } as const;
export const TOPIC_PARTITION_LIST = { cnt: 0, size: 4, elems: 8 } as const;

/** rd_kafka_vu_t: a vtype tag then a union; 72 bytes each. */
export const VU = { size: 72, vtype: 0, u: 8 } as const;

export const METADATA = { brokerCnt: 0, brokers: 8, topicCnt: 16, topics: 24 } as const;
export const METADATA_TOPIC = { size: 32, topic: 0, partitionCnt: 8, partitions: 16, err: 24 } as const;
export const METADATA_PARTITION = { size: 40, id: 0, err: 4, leader: 8 } as const;

export const VTYPE = {
  END: 0,
  TOPIC: 1,
  RKT: 2,
  PARTITION: 3,
  VALUE: 4,
  KEY: 5,
  OPAQUE: 6,
  MSGFLAGS: 7,
  TIMESTAMP: 8,
  HEADER: 9,
  HEADERS: 10,
} as const;

export const EVENT = {
  NONE: 0x0,
  DR: 0x1,
  FETCH: 0x2,
  LOG: 0x4,
  ERROR: 0x8,
  REBALANCE: 0x10,
  OFFSET_COMMIT: 0x20,
  STATS: 0x40,
  CREATETOPICS_RESULT: 100,
  DELETETOPICS_RESULT: 101,
} as const;

export const HANDLE_TYPE = { PRODUCER: 0, CONSUMER: 1 } as const;
export const MSG_F_COPY = 0x2;
export const PURGE_F_QUEUE = 0x1;
export const PURGE_F_INFLIGHT = 0x2;
export const PARTITION_UA = -1;
export const CONF_OK = 0;
