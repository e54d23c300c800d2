// Small helpers shared by the safe classes: C strings, configuration objects, handles,
// partition lists and rd_kafka_error_t. Every pointer created here is freed by the same helper
// or handed to librdkafka, which then owns it; the comments say which.
import { CString, type Pointer, read, toArrayBuffer } from "bun:ffi";
import { KafkaError, errorFromCode } from "./errors.ts";
import { lib } from "./ffi.ts";
import { CONF_OK, TOPIC_PARTITION, TOPIC_PARTITION_LIST } from "./layout.ts";

export type KafkaConfig = Record<string, string | number | boolean>;

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface TopicPartitionOffset extends TopicPartition {
  /** The next offset to read (last processed + 1), as Kafka commits it. */
  offset: number;
}

const ERRSTR_SIZE = 512;

/** A NUL-terminated UTF-8 copy of `s`, valid for as long as the returned buffer is referenced. */
export function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

export function errstrText(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.toString("utf8", 0, end < 0 ? buf.length : end);
}

export function errName(code: number): string {
  return String(lib().rd_kafka_err2name(code));
}

export function errText(code: number): string {
  return String(lib().rd_kafka_err2str(code));
}

/**
 * Creates an rd_kafka_t. The configuration object is consumed by rd_kafka_new on success and
 * destroyed here on any failure. `eventMask` routes delivery reports, errors, stats, rebalances
 * to queues that JavaScript polls, so librdkafka never calls into JavaScript.
 */
export function createHandle(type: number, config: KafkaConfig, eventMask: number): Pointer {
  const l = lib();
  const conf = l.rd_kafka_conf_new();
  if (!conf) throw new KafkaError("FATAL", "rd_kafka_conf_new returned NULL (out of memory)");
  const errstr = Buffer.alloc(ERRSTR_SIZE);
  for (const [name, value] of Object.entries(config)) {
    const res = l.rd_kafka_conf_set(conf, cstr(name), cstr(String(value)), errstr, ERRSTR_SIZE);
    if (res !== CONF_OK) {
      l.rd_kafka_conf_destroy(conf);
      // A secret's value never goes into an error message (it would end up in a log).
      const shown = /password|secret|\.pem$|\.key$/.test(name) ? "<redacted>" : String(value);
      throw new KafkaError("CONFIG", `invalid Kafka setting ${name}=${shown}: ${errstrText(errstr)}`);
    }
  }
  l.rd_kafka_conf_set_events(conf, eventMask);
  const rk = l.rd_kafka_new(type, conf, errstr, ERRSTR_SIZE);
  if (!rk) {
    l.rd_kafka_conf_destroy(conf);
    throw new KafkaError("CONFIG", `could not create Kafka client: ${errstrText(errstr)}`);
  }
  return rk;
}

/** Converts an rd_kafka_error_t* into a typed error and destroys it; null when there was none. */
export function takeError(err: Pointer | null, context: string): KafkaError | null {
  if (!err) return null;
  const l = lib();
  const code = l.rd_kafka_error_code(err);
  const message = `${context}: ${String(l.rd_kafka_error_string(err))}`;
  const fatal = l.rd_kafka_error_is_fatal(err) !== 0;
  l.rd_kafka_error_destroy(err);
  return errorFromCode(code, message, fatal);
}

/** Throws a typed error for a non-zero rd_kafka_resp_err_t. */
export function check(code: number, context: string): void {
  if (code !== 0) throw errorFromCode(code, `${context}: ${errText(code)} (${errName(code)})`);
}

/** Builds a rd_kafka_topic_partition_list_t; the caller must destroy it with destroyPartitionList. */
export function createPartitionList(items: readonly (TopicPartition & { offset?: number })[]): Pointer {
  const l = lib();
  const list = l.rd_kafka_topic_partition_list_new(Math.max(items.length, 1));
  if (!list) throw new KafkaError("FATAL", "rd_kafka_topic_partition_list_new returned NULL");
  for (const item of items) {
    const elem = l.rd_kafka_topic_partition_list_add(list, cstr(item.topic), item.partition);
    if (elem && item.offset !== undefined) {
      // The element's int64 offset field, written through a view of librdkafka's memory.
      new DataView(toArrayBuffer(elem, 0, TOPIC_PARTITION.size)).setBigInt64(
        TOPIC_PARTITION.offset,
        BigInt(item.offset),
        true,
      );
    }
  }
  return list;
}

export function destroyPartitionList(list: Pointer): void {
  lib().rd_kafka_topic_partition_list_destroy(list);
}

export interface PartitionListEntry extends TopicPartitionOffset {
  err: number;
}

/** Copies a rd_kafka_topic_partition_list_t into plain objects (the list itself is not freed). */
export function readPartitionList(list: Pointer | null): PartitionListEntry[] {
  if (!list) return [];
  const cnt = read.i32(list, TOPIC_PARTITION_LIST.cnt);
  const elems = read.ptr(list, TOPIC_PARTITION_LIST.elems) as Pointer;
  const out: PartitionListEntry[] = [];
  for (let i = 0; i < cnt; i++) {
    const base = i * TOPIC_PARTITION.size;
    out.push({
      topic: readCString(read.ptr(elems, base + TOPIC_PARTITION.topic) as Pointer),
      partition: read.i32(elems, base + TOPIC_PARTITION.partition),
      offset: Number(read.i64(elems, base + TOPIC_PARTITION.offset)),
      err: read.i32(elems, base + TOPIC_PARTITION.err),
    });
  }
  return out;
}

export function readCString(p: Pointer | null): string {
  return p ? String(new CString(p)) : "";
}
