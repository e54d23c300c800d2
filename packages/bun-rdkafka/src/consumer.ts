// Kafka group consumer over librdkafka's C API.
//
// Guarantees: offsets are never committed behind the caller's back (enable.auto.commit=false,
// enable.auto.offset.store=false); commit() commits exactly the offsets it is given, which are
// the next offsets to read (last processed + 1). Whatever was not committed is delivered again
// after a restart or a rebalance: at-least-once.
//
// Rebalances: cooperative-sticky by default. A revocation that arrives while poll() has already
// gathered messages is held back: poll() returns those messages, and the revocation is applied
// at the start of the next poll() (or close()). The caller's contract is "write, commit, then
// poll again", so by then the revoked partitions' work is durable and committed. A caller that
// polls the next batch while writing the previous one says so (`workInFlight`): the revocation
// is then held even with nothing gathered, until a poll() made with nothing in flight.
//
// Threading: everything arrives as events on the consumer queue (fetched messages, rebalances,
// errors, statistics), polled from JS with a zero timeout; librdkafka never calls into JS.
import { type Pointer, read } from "bun:ffi";
import { ErrorCode } from "./error-codes.ts";
import { KafkaError, errorFromCode } from "./errors.ts";
import { lib, libc } from "./ffi.ts";
import { EVENT, HANDLE_TYPE, MESSAGE } from "./layout.ts";
import {
  type KafkaConfig,
  type TopicPartition,
  type TopicPartitionOffset,
  check,
  createHandle,
  createPartitionList,
  destroyPartitionList,
  errName,
  errText,
  readCString,
  readPartitionList,
  takeError,
} from "./native.ts";

export interface ConsumedMessage {
  topic: string;
  partition: number;
  offset: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Record<string, Uint8Array> | null;
  /** Milliseconds since the epoch (producer create time or broker log-append time). */
  timestamp: number;
}

export interface ConsumerOptions {
  /** librdkafka properties; needs bootstrap.servers and group.id. */
  config: KafkaConfig;
  /** Called with librdkafka's statistics JSON every statistics.interval.ms (when set). */
  onStats?: (json: string) => void;
  /** Non-fatal client errors (broker connection lost...); fatal ones are thrown from poll(). */
  onError?: (error: KafkaError) => void;
  /** Called after partitions were assigned to this consumer. */
  onAssign?: (partitions: TopicPartition[]) => void;
  /** Called after revoked partitions are released. */
  onRevoke?: (partitions: TopicPartition[]) => void;
}

const DEFAULTS: KafkaConfig = {
  "partition.assignment.strategy": "cooperative-sticky",
  "auto.offset.reset": "earliest",
  "session.timeout.ms": 10_000,
  "heartbeat.interval.ms": 1_000,
};

// Applied after the caller's config and never overridable: the delivery guarantee above depends
// on the application alone deciding which offsets are committed.
const ENFORCED: KafkaConfig = {
  "enable.auto.commit": false,
  "enable.auto.offset.store": false,
  "enable.partition.eof": false,
};

const EMPTY_POLL_SLEEP_MS = 1;
const MAX_EMPTY_POLL_SLEEP_MS = 8;
// Messages served per turn of the event loop: a large batch is gathered in slices so the
// caller's other I/O (e.g. the previous batch's database round trips) is not held up.
const DRAIN_SLICE = 500;
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export class KafkaConsumer {
  readonly #rk: Pointer;
  readonly #queue: Pointer;
  readonly #commitQueue: Pointer;
  readonly #options: ConsumerOptions;
  readonly #topicNames = new Map<number, string>();
  readonly #assignment = new Map<string, TopicPartition>();
  readonly #headersOut = new BigUint64Array(1);
  readonly #hdrName = new BigUint64Array(1);
  readonly #hdrValue = new BigUint64Array(1);
  readonly #hdrSize = new BigUint64Array(1);
  #pendingRevoke: Pointer | null = null;
  #commitChain: Promise<void> = Promise.resolve();
  #polling = false;
  #closed = false;

  /** Creates a group consumer (`config` needs group.id); auto-commit and auto offset store are forced off. */
  constructor(options: ConsumerOptions) {
    if (!options.config["group.id"]) throw new KafkaError("CONFIG", "consumer config needs group.id");
    this.#options = options;
    this.#rk = createHandle(
      HANDLE_TYPE.CONSUMER,
      { ...DEFAULTS, ...options.config, ...ENFORCED },
      EVENT.FETCH | EVENT.REBALANCE | EVENT.ERROR | EVENT.STATS | EVENT.OFFSET_COMMIT,
    );
    const l = lib();
    // Route the main queue (errors, stats) into the consumer queue: one queue to poll.
    check(l.rd_kafka_poll_set_consumer(this.#rk), "poll_set_consumer");
    this.#queue = l.rd_kafka_queue_get_consumer(this.#rk) as Pointer;
    this.#commitQueue = l.rd_kafka_queue_new(this.#rk) as Pointer;
  }

  /** Joins the group for `topics` (replacing any earlier subscription); partitions arrive with poll(). */
  subscribe(topics: readonly string[]): void {
    this.#assertOpen();
    const list = createPartitionList(topics.map((topic) => ({ topic, partition: -1 })));
    try {
      check(lib().rd_kafka_subscribe(this.#rk, list), `subscribe to ${topics.join(", ")}`);
    } finally {
      destroyPartitionList(list);
    }
  }

  /** Partitions currently assigned to this consumer. */
  assignment(): TopicPartition[] {
    return [...this.#assignment.values()];
  }

  /**
   * Returns up to `maxMessages` messages, waiting at most `maxWaitMs` (never blocking the event
   * loop). Applies a held-back revocation first: call it only after every batch it returned
   * before is written and committed.
   *
   * With `workInFlight` the caller is still writing an earlier batch: a revocation is then never
   * applied, only held (see `revokePending`), and poll() returns as soon as one arrives.
   */
  async poll(maxMessages: number, maxWaitMs: number, { workInFlight = false } = {}): Promise<ConsumedMessage[]> {
    this.#assertOpen();
    if (this.#polling) throw new KafkaError("KAFKA", "poll() is already running on this consumer");
    this.#polling = true;
    try {
      const messages: ConsumedMessage[] = [];
      if (this.#pendingRevoke) {
        if (workInFlight) return messages;
        this.#applyRevoke();
      }
      const deadline = Date.now() + maxWaitMs;
      let sleepMs = EMPTY_POLL_SLEEP_MS;
      while (messages.length < maxMessages) {
        const slice = Math.min(maxMessages, messages.length + DRAIN_SLICE);
        const drained = this.#drain(messages, slice, workInFlight);
        if (this.#pendingRevoke) break;
        const now = Date.now();
        if (!drained && now >= deadline) break;
        if (!drained) {
          // An empty queue: wait a little longer each time (1, 2, 4, 8 ms), never past the deadline,
          // so an idle consumer does not wake a thousand times a second.
          await Bun.sleep(Math.min(sleepMs, deadline - now));
          sleepMs = Math.min(sleepMs * 2, MAX_EMPTY_POLL_SLEEP_MS);
        } else {
          sleepMs = EMPTY_POLL_SLEEP_MS;
          if (messages.length < maxMessages) await yieldToEventLoop();
        }
        if (this.#closed) break;
      }
      return messages;
    } finally {
      this.#polling = false;
    }
  }

  /** True when a revocation is held until the caller's work is committed and it polls again. */
  get revokePending(): boolean {
    return this.#pendingRevoke !== null;
  }

  /** Serves queued events into `messages`; returns false when the queue was empty. */
  #drain(messages: ConsumedMessage[], maxMessages: number, workInFlight: boolean): boolean {
    const l = lib();
    let served = false;
    while (messages.length < maxMessages && !this.#pendingRevoke) {
      const ev = l.rd_kafka_queue_poll(this.#queue, 0);
      if (!ev) return served;
      served = true;
      const type = l.rd_kafka_event_type(ev);
      if (type === EVENT.REBALANCE) {
        // Ownership of `ev` passes to the rebalance handler.
        this.#onRebalance(ev, workInFlight || messages.length > 0);
        continue;
      }
      try {
        if (type === EVENT.FETCH) {
          const msg = l.rd_kafka_event_message_next(ev);
          if (msg) {
            const err = read.i32(msg, MESSAGE.err);
            if (err === 0) messages.push(this.#readMessage(msg));
            else this.#onConsumerError(msg, err);
          }
        } else if (type === EVENT.ERROR) {
          const code = l.rd_kafka_event_error(ev);
          const fatal = l.rd_kafka_event_error_is_fatal(ev) !== 0;
          const error = errorFromCode(code, `Kafka consumer: ${String(l.rd_kafka_event_error_string(ev))}`, fatal);
          // Fatal errors and a subscribed topic that does not exist never heal: tell the caller.
          if (fatal || error.code === "UNKNOWN_TOPIC") throw error;
          this.#options.onError?.(error);
        } else if (type === EVENT.STATS) {
          this.#options.onStats?.(String(l.rd_kafka_event_stats(ev)));
        }
      } finally {
        l.rd_kafka_event_destroy(ev);
      }
    }
    return served;
  }

  #onConsumerError(msg: Pointer, err: number): void {
    const topic = this.#topicName(read.ptr(msg, MESSAGE.rkt) as Pointer | null);
    const error = errorFromCode(err, `consume ${topic || "(group)"}: ${errText(err)} (${errName(err)})`);
    // Subscribing to a topic that does not exist will never make progress: tell the caller.
    if (error.code === "UNKNOWN_TOPIC") throw error;
    this.#options.onError?.(error);
  }

  #readMessage(msg: Pointer): ConsumedMessage {
    const l = lib();
    const len = read.u32(msg, MESSAGE.len);
    const payload = read.ptr(msg, MESSAGE.payload) as Pointer | null;
    const keyLen = read.u32(msg, MESSAGE.keyLen);
    const key = read.ptr(msg, MESSAGE.key) as Pointer | null;
    let headers: Record<string, Uint8Array> | null = null;
    if (l.rd_kafka_message_headers(msg, this.#headersOut) === 0) {
      const hdrs = Number(this.#headersOut[0]) as Pointer;
      const cnt = Number(l.rd_kafka_header_cnt(hdrs));
      headers = {};
      for (let i = 0; i < cnt; i++) {
        if (l.rd_kafka_header_get_all(hdrs, i, this.#hdrName, this.#hdrValue, this.#hdrSize) !== 0) break;
        const name = readCString(Number(this.#hdrName[0]) as Pointer);
        headers[name] = copyBytes(Number(this.#hdrValue[0]) as Pointer, Number(this.#hdrSize[0])) ?? new Uint8Array();
      }
    }
    return {
      topic: this.#topicName(read.ptr(msg, MESSAGE.rkt) as Pointer),
      partition: read.i32(msg, MESSAGE.partition),
      // int64 read as two halves: offsets stay below 2^53 and this avoids a BigInt per message.
      offset: read.i32(msg, MESSAGE.offset + 4) * 0x100000000 + read.u32(msg, MESSAGE.offset),
      key: copyBytes(key, keyLen),
      value: copyBytes(payload, len),
      headers,
      timestamp: l.rd_kafka_message_timestamp(msg, null) as number,
    };
  }

  #topicName(rkt: Pointer | null): string {
    if (!rkt) return "";
    let name = this.#topicNames.get(rkt);
    if (name === undefined) {
      name = String(lib().rd_kafka_topic_name(rkt));
      this.#topicNames.set(rkt, name);
    }
    return name;
  }

  #onRebalance(ev: Pointer, holdRevoke: boolean): void {
    const l = lib();
    const code = l.rd_kafka_event_error(ev);
    if (code === ErrorCode._REVOKE_PARTITIONS) {
      this.#pendingRevoke = ev;
      if (!holdRevoke) this.#applyRevoke();
      return;
    }
    try {
      if (code !== ErrorCode._ASSIGN_PARTITIONS) {
        this.#options.onError?.(errorFromCode(code, `rebalance failed: ${errText(code)}`));
        check(l.rd_kafka_assign(this.#rk, null), "unassign after rebalance error");
        this.#assignment.clear();
        return;
      }
      const list = l.rd_kafka_event_topic_partition_list(ev);
      if (this.#cooperative()) {
        const error = takeError(l.rd_kafka_incremental_assign(this.#rk, list), "incremental assign");
        if (error) throw error;
      } else {
        check(l.rd_kafka_assign(this.#rk, list), "assign");
      }
      const partitions = readPartitionList(list).map(({ topic, partition }) => ({ topic, partition }));
      for (const tp of partitions) this.#assignment.set(`${tp.topic}/${tp.partition}`, tp);
      this.#options.onAssign?.(partitions);
    } finally {
      l.rd_kafka_event_destroy(ev);
    }
  }

  #applyRevoke(): void {
    const ev = this.#pendingRevoke;
    if (!ev) return;
    this.#pendingRevoke = null;
    const l = lib();
    try {
      const list = l.rd_kafka_event_topic_partition_list(ev);
      const partitions = readPartitionList(list).map(({ topic, partition }) => ({ topic, partition }));
      if (this.#cooperative()) {
        const error = takeError(l.rd_kafka_incremental_unassign(this.#rk, list), "incremental unassign");
        if (error) throw error;
        for (const tp of partitions) this.#assignment.delete(`${tp.topic}/${tp.partition}`);
      } else {
        check(l.rd_kafka_assign(this.#rk, null), "unassign");
        this.#assignment.clear();
      }
      this.#options.onRevoke?.(partitions);
    } finally {
      l.rd_kafka_event_destroy(ev);
    }
  }

  #cooperative(): boolean {
    return String(lib().rd_kafka_rebalance_protocol(this.#rk)) === "COOPERATIVE";
  }

  /**
   * Commits exactly these offsets (each the next offset to read) and resolves when the group
   * coordinator confirmed them. Commits are serialized in call order.
   */
  commit(offsets: readonly TopicPartitionOffset[]): Promise<void> {
    const next = this.#commitChain.then(() => this.#commitNow(offsets));
    this.#commitChain = next.catch(() => {});
    return next;
  }

  async #commitNow(offsets: readonly TopicPartitionOffset[]): Promise<void> {
    this.#assertOpen();
    if (offsets.length === 0) return;
    const l = lib();
    const list = createPartitionList(offsets);
    try {
      check(l.rd_kafka_commit_queue(this.#rk, list, this.#commitQueue, null, null), "commit");
    } finally {
      destroyPartitionList(list);
    }
    for (;;) {
      const ev = l.rd_kafka_queue_poll(this.#commitQueue, 0);
      if (!ev) {
        await Bun.sleep(1);
        continue;
      }
      try {
        if (l.rd_kafka_event_type(ev) !== EVENT.OFFSET_COMMIT) continue;
        const code = l.rd_kafka_event_error(ev);
        if (code !== 0 && code !== ErrorCode._NO_OFFSET) {
          throw errorFromCode(code, `offset commit failed: ${String(l.rd_kafka_event_error_string(ev))}`);
        }
        const failed = readPartitionList(l.rd_kafka_event_topic_partition_list(ev)).find((e) => e.err !== 0);
        if (failed) {
          throw errorFromCode(
            failed.err,
            `offset commit failed for ${failed.topic}/${failed.partition}: ${errText(failed.err)}`,
          );
        }
        return;
      } finally {
        l.rd_kafka_event_destroy(ev);
      }
    }
  }

  /** Stops fetching these partitions (librdkafka stops prefetching too) until resume(). */
  pause(partitions: readonly TopicPartition[]): void {
    this.#pauseResume(partitions, true);
  }

  /** Fetches these paused partitions again, from where they stopped. */
  resume(partitions: readonly TopicPartition[]): void {
    this.#pauseResume(partitions, false);
  }

  #pauseResume(partitions: readonly TopicPartition[], pause: boolean): void {
    this.#assertOpen();
    if (partitions.length === 0) return;
    const l = lib();
    const list = createPartitionList(partitions);
    try {
      check(
        pause ? l.rd_kafka_pause_partitions(this.#rk, list) : l.rd_kafka_resume_partitions(this.#rk, list),
        pause ? "pause" : "resume",
      );
    } finally {
      destroyPartitionList(list);
    }
  }

  /**
   * Leaves the group cleanly: releases partitions (the caller has committed what it wrote),
   * waits for librdkafka's close to finish (bounded), then frees every handle.
   */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.#closed) return;
    while (this.#polling) await Bun.sleep(1);
    await this.#commitChain;
    this.#closed = true;
    const l = lib();
    const deadline = Date.now() + timeoutMs;
    this.#applyRevoke();
    // librdkafka before 2.4 can block forever inside an (un)assign call when a cooperative
    // assignment is served while the consumer is closing (librdkafka#4527), which froze a worker
    // on SIGTERM here once. So leave the group first: unsubscribe and serve the rebalances that
    // follow until nothing is assigned; only then close.
    const unsubscribed = l.rd_kafka_unsubscribe(this.#rk);
    if (unsubscribed !== 0)
      this.#options.onError?.(errorFromCode(unsubscribed, `unsubscribe: ${errText(unsubscribed)}`));
    else await this.#serveRebalancesUntil(() => this.#assignment.size === 0, deadline);
    const error = takeError(l.rd_kafka_consumer_close_queue(this.#rk, this.#queue), "consumer close");
    if (error) this.#options.onError?.(error);
    else await this.#serveRebalancesUntil(() => l.rd_kafka_consumer_closed(this.#rk) !== 0, deadline);
    l.rd_kafka_queue_destroy(this.#commitQueue);
    l.rd_kafka_queue_destroy(this.#queue);
    l.rd_kafka_destroy(this.#rk);
  }

  /** While closing: serves rebalance events; fetched messages are dropped (never returned, never committed). */
  async #serveRebalancesUntil(done: () => boolean, deadline: number): Promise<void> {
    const l = lib();
    while (!done() && Date.now() < deadline) {
      const ev = l.rd_kafka_queue_poll(this.#queue, 0);
      if (!ev) {
        await Bun.sleep(5);
        continue;
      }
      if (l.rd_kafka_event_type(ev) !== EVENT.REBALANCE) {
        l.rd_kafka_event_destroy(ev);
        continue;
      }
      try {
        this.#onRebalance(ev, false);
      } catch (error) {
        this.#options.onError?.(error as KafkaError);
      }
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new KafkaError("CLOSED", "consumer is closed");
  }
}

/** Copies `len` bytes of librdkafka memory into a JS-owned buffer (null pointer → null). */
function copyBytes(p: Pointer | null, len: number): Uint8Array | null {
  if (!p) return null;
  const out = new Uint8Array(len);
  if (len > 0) libc().memcpy(out, p, len);
  return out;
}
