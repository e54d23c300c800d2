// Kafka administration over librdkafka: create/delete/describe topics and consumer-group lag.
// Create/delete use the asynchronous Admin API with a private result queue polled from JS.
// Metadata, committed offsets and watermarks use librdkafka's blocking calls with the caller's
// timeout; they are for ops tooling and periodic gauges, not hot paths.
import { type Pointer, read } from "bun:ffi";
import { ErrorCode } from "./error-codes.ts";
import { KafkaError, errorFromCode } from "./errors.ts";
import { lib } from "./ffi.ts";
import { EVENT, HANDLE_TYPE, METADATA, METADATA_PARTITION, METADATA_TOPIC } from "./layout.ts";
import {
  type KafkaConfig,
  check,
  createHandle,
  createPartitionList,
  cstr,
  destroyPartitionList,
  errText,
  errstrText,
  readCString,
  readPartitionList,
} from "./native.ts";

export interface NewTopic {
  name: string;
  partitions: number;
  replicationFactor?: number;
  config?: Readonly<Record<string, string>>;
}

export interface TopicDescription {
  name: string;
  partitions: { id: number; leader: number }[];
  /** librdkafka's error code for this topic (0 when it exists and is healthy). */
  err: number;
}

export interface PartitionLag {
  partition: number;
  /** Next offset the group will read; -1 when the group has committed nothing for it. */
  committed: number;
  highWatermark: number;
  lag: number;
}

export class KafkaAdmin {
  readonly #config: KafkaConfig;
  readonly #rk: Pointer;
  #closed = false;

  /** An admin client: `config` needs bootstrap.servers; the same settings serve groupLag's look-ups. */
  constructor(options: { config: KafkaConfig }) {
    this.#config = options.config;
    this.#rk = createHandle(HANDLE_TYPE.PRODUCER, options.config, EVENT.NONE);
  }

  /** Creates topics; with `ignoreExisting` a topic that already exists is not an error. */
  async createTopics(topics: readonly NewTopic[], { timeoutMs = 15_000, ignoreExisting = true } = {}): Promise<void> {
    const l = lib();
    const errstr = Buffer.alloc(512);
    const handles: Pointer[] = [];
    try {
      for (const t of topics) {
        const nt = l.rd_kafka_NewTopic_new(cstr(t.name), t.partitions, t.replicationFactor ?? 1, errstr, 512);
        if (!nt) throw new KafkaError("CONFIG", `invalid topic ${t.name}: ${errstrText(errstr)}`);
        handles.push(nt);
        for (const [k, v] of Object.entries(t.config ?? {})) {
          check(l.rd_kafka_NewTopic_set_config(nt, cstr(k), cstr(v)), `topic ${t.name} config ${k}`);
        }
      }
      const array = new BigUint64Array(handles.map((h) => BigInt(h)));
      await this.#adminCall(
        (queue) => l.rd_kafka_CreateTopics(this.#rk, array, handles.length, null, queue),
        EVENT.CREATETOPICS_RESULT,
        (ev) => {
          const result = l.rd_kafka_event_CreateTopics_result(ev);
          return this.#topicResults(result, l.rd_kafka_CreateTopics_result_topics, ignoreExisting, "create");
        },
        timeoutMs,
      );
      await this.#waitForLeaders(
        topics.map((t) => t.name),
        timeoutMs,
      );
    } finally {
      for (const h of handles) l.rd_kafka_NewTopic_destroy(h);
    }
  }

  /** CreateTopics returns before every broker knows the new leaders; wait until metadata shows them. */
  async #waitForLeaders(names: string[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const described = this.describeTopics(names, 2_000);
      if (described.every((t) => t.err === 0 && t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))) {
        return;
      }
      if (Date.now() > deadline) throw new KafkaError("TIMEOUT", `topics ${names.join(", ")} have no leaders yet`);
      await Bun.sleep(50);
    }
  }

  /** Deletes topics; resolves once the controller accepted every deletion (TIMEOUT after `timeoutMs`). */
  async deleteTopics(names: readonly string[], { timeoutMs = 15_000 } = {}): Promise<void> {
    const l = lib();
    const handles = names.map((n) => l.rd_kafka_DeleteTopic_new(cstr(n)) as Pointer);
    try {
      const array = new BigUint64Array(handles.map((h) => BigInt(h)));
      await this.#adminCall(
        (queue) => l.rd_kafka_DeleteTopics(this.#rk, array, handles.length, null, queue),
        EVENT.DELETETOPICS_RESULT,
        (ev) => {
          const result = l.rd_kafka_event_DeleteTopics_result(ev);
          return this.#topicResults(result, l.rd_kafka_DeleteTopics_result_topics, false, "delete");
        },
        timeoutMs,
      );
    } finally {
      for (const h of handles) l.rd_kafka_DeleteTopic_destroy(h);
    }
  }

  #topicResults(
    result: Pointer | null,
    getTopics: (res: Pointer, cnt: Uint8Array) => Pointer | null,
    ignoreExisting: boolean,
    verb: string,
  ): KafkaError | null {
    if (!result) return new KafkaError("KAFKA", `${verb} topics: no result`);
    const cntBuf = new BigUint64Array(1);
    const arr = getTopics(result, new Uint8Array(cntBuf.buffer));
    const cnt = Number(cntBuf[0]);
    const l = lib();
    for (let i = 0; i < cnt && arr; i++) {
      const tr = read.ptr(arr, i * 8) as Pointer;
      const err = l.rd_kafka_topic_result_error(tr);
      if (err === 0 || (ignoreExisting && err === ErrorCode.TOPIC_ALREADY_EXISTS)) continue;
      const name = String(l.rd_kafka_topic_result_name(tr));
      return errorFromCode(err, `${verb} topic ${name}: ${String(l.rd_kafka_topic_result_error_string(tr))}`);
    }
    return null;
  }

  async #adminCall(
    start: (queue: Pointer) => void,
    expected: number,
    onResult: (ev: Pointer) => KafkaError | null,
    timeoutMs: number,
  ): Promise<void> {
    this.#assertOpen();
    const l = lib();
    const queue = l.rd_kafka_queue_new(this.#rk) as Pointer;
    try {
      start(queue);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const ev = l.rd_kafka_queue_poll(queue, 0);
        if (ev) {
          try {
            const type = l.rd_kafka_event_type(ev);
            const code = l.rd_kafka_event_error(ev);
            if (code !== 0) throw errorFromCode(code, `admin request: ${String(l.rd_kafka_event_error_string(ev))}`);
            if (type === expected) {
              const error = onResult(ev);
              if (error) throw error;
              return;
            }
          } finally {
            l.rd_kafka_event_destroy(ev);
          }
        }
        if (Date.now() > deadline) throw new KafkaError("TIMEOUT", `admin request timed out after ${timeoutMs} ms`);
        await Bun.sleep(5);
      }
    } finally {
      l.rd_kafka_queue_destroy(queue);
    }
  }

  /** Describes the given topics (all topics when `names` is omitted). Blocks up to `timeoutMs`. */
  describeTopics(names?: readonly string[], timeoutMs = 5_000): TopicDescription[] {
    this.#assertOpen();
    const l = lib();
    const out = new BigUint64Array(1);
    check(l.rd_kafka_metadata(this.#rk, 1, null, out, timeoutMs), "metadata request");
    const md = Number(out[0]) as Pointer;
    try {
      const topicCnt = read.i32(md, METADATA.topicCnt);
      const topics = read.ptr(md, METADATA.topics) as Pointer;
      const result: TopicDescription[] = [];
      for (let i = 0; i < topicCnt; i++) {
        const t = i * METADATA_TOPIC.size;
        const name = readCString(read.ptr(topics, t + METADATA_TOPIC.topic) as Pointer);
        if (names && !names.includes(name)) continue;
        const pcnt = read.i32(topics, t + METADATA_TOPIC.partitionCnt);
        const parts = read.ptr(topics, t + METADATA_TOPIC.partitions) as Pointer;
        const partitions = [];
        for (let p = 0; p < pcnt; p++) {
          const base = p * METADATA_PARTITION.size;
          partitions.push({
            id: read.i32(parts, base + METADATA_PARTITION.id),
            leader: read.i32(parts, base + METADATA_PARTITION.leader),
          });
        }
        partitions.sort((a, b) => a.id - b.id);
        result.push({ name, partitions, err: read.i32(topics, t + METADATA_TOPIC.err) });
      }
      for (const missing of names ?? []) {
        if (!result.some((r) => r.name === missing)) {
          result.push({ name: missing, partitions: [], err: ErrorCode.UNKNOWN_TOPIC_OR_PART });
        }
      }
      return result;
    } finally {
      l.rd_kafka_metadata_destroy(md);
    }
  }

  /**
   * Committed offset vs. high watermark per partition of `topic` for consumer group `groupId`:
   * the consumer-lag figure. Blocks up to `timeoutMs` per broker request.
   */
  groupLag(groupId: string, topic: string, timeoutMs = 5_000): PartitionLag[] {
    const [description] = this.describeTopics([topic], timeoutMs);
    if (!description || description.err !== 0) {
      throw errorFromCode(description?.err ?? ErrorCode._UNKNOWN_TOPIC, `topic ${topic} does not exist`);
    }
    const l = lib();
    // A throwaway handle with no log events: its connection failures would reach stderr as raw
    // lines on every call; they surface as this call's error instead, which the caller reports.
    const rk = createHandle(HANDLE_TYPE.CONSUMER, { ...this.#config, "group.id": groupId, log_level: "0" }, EVENT.NONE);
    const list = createPartitionList(description.partitions.map((p) => ({ topic, partition: p.id })));
    try {
      check(l.rd_kafka_committed(rk, list, timeoutMs), `committed offsets of group ${groupId}`);
      const low = new BigInt64Array(1);
      const high = new BigInt64Array(1);
      return readPartitionList(list).map((entry) => {
        // A partition that was just created or moved answers NOT_LEADER for a moment: retry those.
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const code = l.rd_kafka_query_watermark_offsets(rk, cstr(topic), entry.partition, low, high, timeoutMs);
          if (code === 0) break;
          const error = errorFromCode(code, `watermarks of ${topic}/${entry.partition}: ${errText(code)}`);
          if (!error.retriable || Date.now() > deadline) throw error;
          Bun.sleepSync(50);
        }
        const hw = Number(high[0]);
        const committed = entry.offset >= 0 ? entry.offset : -1;
        const lag = hw - (committed >= 0 ? committed : Number(low[0]));
        return { partition: entry.partition, committed, highWatermark: hw, lag };
      });
    } finally {
      destroyPartitionList(list);
      l.rd_kafka_destroy(rk);
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new KafkaError("CLOSED", "admin client is closed");
  }

  /** Frees the client; later calls throw CLOSED. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    lib().rd_kafka_destroy(this.#rk);
  }
}
