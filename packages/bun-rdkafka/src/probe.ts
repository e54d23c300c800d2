// The layout probe: compiles a small C program against an installed rdkafka.h and compares every
// struct offset and constant it prints with the values the binding uses (layout.ts), and the
// header's version with the librdkafka the binding loads. Run it after installing or upgrading
// librdkafka (`bunx bun-rdkafka-probe`); it needs a C compiler and the librdkafka headers
// (Debian: librdkafka-dev), which the binding itself does not.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KafkaError, LibraryMismatchError } from "./errors.ts";
import { lib, versionString } from "./ffi.ts";
import * as L from "./layout.ts";

export const PROGRAM = `
#include <stdio.h>
#include <stddef.h>
#include <librdkafka/rdkafka.h>
#define P(name, value) printf("%s=%ld\\n", name, (long)(value))
int main(void) {
  P("RD_KAFKA_VERSION", RD_KAFKA_VERSION);
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

export interface ProbeOptions {
  /** A directory holding librdkafka/rdkafka.h (passed as -I); omitted: the compiler's default paths. */
  includeDir?: string;
  /** The C compiler; default "cc". */
  cc?: string;
}

export interface ProbeResult {
  /** RD_KAFKA_VERSION of the header, e.g. "2.0.2". */
  headerVersion: string;
  /** rd_kafka_version() of the library the binding loaded. */
  libraryVersion: string;
  /** How many offsets and constants were compared. */
  checked: number;
}

/** Compiles and runs the probe program; returns each printed name with its value. */
export function headerValues(options: ProbeOptions = {}): Map<string, number> {
  const dir = mkdtempSync(join(tmpdir(), "rdk-probe-"));
  try {
    writeFileSync(join(dir, "probe.c"), PROGRAM);
    const include = options.includeDir ? ["-I", options.includeDir] : [];
    const cc = options.cc ?? "cc";
    const built = spawnSync(cc, [...include, join(dir, "probe.c"), "-o", join(dir, "probe")], { encoding: "utf8" });
    if (built.error || built.status !== 0) {
      throw new KafkaError(
        "CONFIG",
        `the layout probe could not be compiled with ${cc} (it needs a C compiler and rdkafka.h: Debian librdkafka-dev): ${
          built.error?.message ?? built.stderr.trim()
        }`,
      );
    }
    const run = spawnSync(join(dir, "probe"), { encoding: "utf8" });
    if (run.status !== 0) throw new KafkaError("CONFIG", `the layout probe exited with ${run.status}: ${run.stderr}`);
    return new Map(
      run.stdout
        .trim()
        .split("\n")
        .map((line) => {
          const [name, value] = line.split("=");
          return [name as string, Number(value)];
        }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The binding's value for a probe name such as "MESSAGE.size" (undefined when it has none). */
function bindingValue(name: string): unknown {
  const [group, field] = name.split(".");
  const value = (L as Record<string, unknown>)[group as string];
  return field === undefined ? value : (value as Record<string, unknown> | undefined)?.[field];
}

/** The differences between the header's values and the binding's, as readable lines. */
export function layoutDifferences(values: ReadonlyMap<string, number>): string[] {
  const differences: string[] = [];
  for (const [name, value] of values) {
    if (name === "RD_KAFKA_VERSION") continue;
    const ours = bindingValue(name);
    if (ours !== value) differences.push(`${name}: rdkafka.h says ${value}, the binding uses ${String(ours)}`);
  }
  return differences;
}

/**
 * Checks the installed rdkafka.h and the loaded librdkafka against the binding. Throws a
 * LibraryMismatchError listing every difference: a struct offset or constant the header defines
 * otherwise, or a library whose version is not the header's (two installs mixed up).
 */
export function probeLayout(options: ProbeOptions = {}): ProbeResult {
  const values = headerValues(options);
  const header = values.get("RD_KAFKA_VERSION");
  if (header === undefined || Number.isNaN(header)) {
    throw new KafkaError("CONFIG", "the layout probe printed no RD_KAFKA_VERSION: not librdkafka's rdkafka.h?");
  }
  const where = options.includeDir ? `${options.includeDir}/librdkafka/rdkafka.h` : "the installed rdkafka.h";
  const differences = layoutDifferences(values);
  if (differences.length > 0) throw new LibraryMismatchError(where, differences);
  const libraryHex = lib().rd_kafka_version();
  const headerVersion = versionString(header);
  const libraryVersion = versionString(libraryHex);
  if (headerVersion !== libraryVersion) {
    throw new LibraryMismatchError(`the loaded librdkafka (${libraryVersion})`, [
      `${where} is ${headerVersion}: the header and the library come from different installs`,
    ]);
  }
  return { headerVersion, libraryVersion, checked: values.size };
}
