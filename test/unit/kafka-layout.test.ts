// The struct offsets in shared/kafka/layout.ts, checked against the installed rdkafka.h with a C
// compiler, and the generated error-code table checked against the same header.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_HEADER, OUTPUT, generateErrorCodes } from "../../scripts/gen-kafka-errors.ts";
import { ErrorCode } from "../../shared/kafka/error-codes.ts";
import * as L from "../../shared/kafka/layout.ts";

const PROGRAM = `
#include <stdio.h>
#include <stddef.h>
#include <librdkafka/rdkafka.h>
#define P(name, value) printf("%s=%ld\\n", name, (long)(value))
int main(void) {
  P("MESSAGE.size", sizeof(rd_kafka_message_t));
  P("MESSAGE.err", offsetof(rd_kafka_message_t, err));
  P("MESSAGE.rkt", offsetof(rd_kafka_message_t, rkt));
  P("MESSAGE.partition", offsetof(rd_kafka_message_t, partition));
  P("MESSAGE.payload", offsetof(rd_kafka_message_t, payload));
  P("MESSAGE.len", offsetof(rd_kafka_message_t, len));
  P("MESSAGE.key", offsetof(rd_kafka_message_t, key));
  P("MESSAGE.keyLen", offsetof(rd_kafka_message_t, key_len));
  P("MESSAGE.offset", offsetof(rd_kafka_message_t, offset));
  P("MESSAGE.private", offsetof(rd_kafka_message_t, _private));
  P("TOPIC_PARTITION.size", sizeof(rd_kafka_topic_partition_t));
  P("TOPIC_PARTITION.topic", offsetof(rd_kafka_topic_partition_t, topic));
  P("TOPIC_PARTITION.partition", offsetof(rd_kafka_topic_partition_t, partition));
  P("TOPIC_PARTITION.offset", offsetof(rd_kafka_topic_partition_t, offset));
  P("TOPIC_PARTITION.err", offsetof(rd_kafka_topic_partition_t, err));
  P("TOPIC_PARTITION_LIST.cnt", offsetof(rd_kafka_topic_partition_list_t, cnt));
  P("TOPIC_PARTITION_LIST.size", offsetof(rd_kafka_topic_partition_list_t, size));
  P("TOPIC_PARTITION_LIST.elems", offsetof(rd_kafka_topic_partition_list_t, elems));
  P("VU.size", sizeof(rd_kafka_vu_t));
  P("VU.vtype", offsetof(rd_kafka_vu_t, vtype));
  P("VU.u", offsetof(rd_kafka_vu_t, u));
  P("METADATA.brokerCnt", offsetof(rd_kafka_metadata_t, broker_cnt));
  P("METADATA.brokers", offsetof(rd_kafka_metadata_t, brokers));
  P("METADATA.topicCnt", offsetof(rd_kafka_metadata_t, topic_cnt));
  P("METADATA.topics", offsetof(rd_kafka_metadata_t, topics));
  P("METADATA_TOPIC.size", sizeof(rd_kafka_metadata_topic_t));
  P("METADATA_TOPIC.topic", offsetof(rd_kafka_metadata_topic_t, topic));
  P("METADATA_TOPIC.partitionCnt", offsetof(rd_kafka_metadata_topic_t, partition_cnt));
  P("METADATA_TOPIC.partitions", offsetof(rd_kafka_metadata_topic_t, partitions));
  P("METADATA_TOPIC.err", offsetof(rd_kafka_metadata_topic_t, err));
  P("METADATA_PARTITION.size", sizeof(rd_kafka_metadata_partition_t));
  P("METADATA_PARTITION.id", offsetof(rd_kafka_metadata_partition_t, id));
  P("METADATA_PARTITION.err", offsetof(rd_kafka_metadata_partition_t, err));
  P("METADATA_PARTITION.leader", offsetof(rd_kafka_metadata_partition_t, leader));
  P("VTYPE.END", RD_KAFKA_VTYPE_END); P("VTYPE.TOPIC", RD_KAFKA_VTYPE_TOPIC); P("VTYPE.RKT", RD_KAFKA_VTYPE_RKT);
  P("VTYPE.PARTITION", RD_KAFKA_VTYPE_PARTITION); P("VTYPE.VALUE", RD_KAFKA_VTYPE_VALUE); P("VTYPE.KEY", RD_KAFKA_VTYPE_KEY);
  P("VTYPE.OPAQUE", RD_KAFKA_VTYPE_OPAQUE); P("VTYPE.MSGFLAGS", RD_KAFKA_VTYPE_MSGFLAGS);
  P("VTYPE.TIMESTAMP", RD_KAFKA_VTYPE_TIMESTAMP); P("VTYPE.HEADER", RD_KAFKA_VTYPE_HEADER); P("VTYPE.HEADERS", RD_KAFKA_VTYPE_HEADERS);
  P("EVENT.DR", RD_KAFKA_EVENT_DR); P("EVENT.FETCH", RD_KAFKA_EVENT_FETCH); P("EVENT.ERROR", RD_KAFKA_EVENT_ERROR);
  P("EVENT.REBALANCE", RD_KAFKA_EVENT_REBALANCE); P("EVENT.OFFSET_COMMIT", RD_KAFKA_EVENT_OFFSET_COMMIT);
  P("EVENT.STATS", RD_KAFKA_EVENT_STATS); P("EVENT.CREATETOPICS_RESULT", RD_KAFKA_EVENT_CREATETOPICS_RESULT);
  P("EVENT.DELETETOPICS_RESULT", RD_KAFKA_EVENT_DELETETOPICS_RESULT);
  P("HANDLE_TYPE.PRODUCER", RD_KAFKA_PRODUCER); P("HANDLE_TYPE.CONSUMER", RD_KAFKA_CONSUMER);
  P("MSG_F_COPY", RD_KAFKA_MSG_F_COPY); P("PURGE_F_QUEUE", RD_KAFKA_PURGE_F_QUEUE);
  P("PURGE_F_INFLIGHT", RD_KAFKA_PURGE_F_INFLIGHT); P("PARTITION_UA", RD_KAFKA_PARTITION_UA);
  P("CONF_OK", RD_KAFKA_CONF_OK);
  return 0;
}
`;

function compiledValues(): Map<string, number> {
  const dir = mkdtempSync(join(tmpdir(), "rdk-layout-"));
  try {
    writeFileSync(join(dir, "layout.c"), PROGRAM);
    const cc = spawnSync("cc", [join(dir, "layout.c"), "-o", join(dir, "layout")], { encoding: "utf8" });
    if (cc.status !== 0) throw new Error(`compiling the layout probe failed (needs librdkafka-dev):\n${cc.stderr}`);
    const out = spawnSync(join(dir, "layout"), { encoding: "utf8" }).stdout;
    return new Map(
      out
        .trim()
        .split("\n")
        .map((line) => {
          const [k, v] = line.split("=");
          return [k as string, Number(v)];
        }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function ours(path: string): unknown {
  const [group, field] = path.split(".");
  const value = (L as Record<string, unknown>)[group as string];
  return field === undefined ? value : (value as Record<string, unknown>)[field];
}

describe("librdkafka ABI", () => {
  const values = compiledValues();

  test("the probe printed every checked constant", () => {
    expect(values.size).toBe(PROGRAM.match(/P\("/g)?.length ?? -1);
    expect(values.size).toBeGreaterThan(50);
  });

  for (const [path, expected] of values) {
    test(`${path} matches rdkafka.h`, () => {
      expect(ours(path)).toBe(expected);
    });
  }

  test("error-codes.ts is what the generator makes from the installed header", () => {
    expect(readFileSync(OUTPUT, "utf8")).toBe(generateErrorCodes(readFileSync(DEFAULT_HEADER, "utf8")));
    expect(ErrorCode._QUEUE_FULL).toBe(-184);
  });
});

describe("generated error codes", () => {
  test("every name maps to the code librdkafka itself gives that name", async () => {
    const { lib } = await import("../../shared/kafka/ffi.ts");
    const entries = Object.entries(ErrorCode);
    expect(entries.length).toBeGreaterThan(100);
    for (const [name, code] of entries) expect(String(lib().rd_kafka_err2name(code))).toBe(name);
  });
});
