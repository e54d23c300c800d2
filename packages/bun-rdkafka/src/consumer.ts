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
// errors, statistics), polled from JS with a zero timeout; an empty queue is awaited on a pipe
// librdkafka writes a byte to (QueueWake below). librdkafka never calls into JS.
import { type Pointer, ptr, read } from "bun:ffi";
import { ErrorCode } from "./error-codes.ts";
import { KafkaError, errorFromCode } from "./errors.ts";
import { lib, libc, pipeCalls } from "./ffi.ts";
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

// Messages served per turn of the event loop: a large batch is gathered in slices so the
// caller's other I/O (e.g. the previous batch's database round trips) is not held up.
const DRAIN_SLICE = 500;
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
// An empty queue is looked at again after this long even without a wake-up (none is expected to
// be missed; this bounds the cost if one were), and this often where there is no wake-up pipe.
const WAKE_FALLBACK_MS = 8;
// How long a queue's pipe stays watched after a wait (see QueueWake.idle).
const WAKE_LINGER_MS = 50;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

export class KafkaConsumer {
  readonly #rk: Pointer;
  readonly #queue: Pointer;
  readonly #commitQueue: Pointer;
  readonly #options: ConsumerOptions;
  readonly #topicNames = new Map<number, string>();
  readonly #assignment = new Map<string, TopicPartition>();
  // Out-parameters of the header calls, passed by address: a typed array argument would be
  // converted to a pointer on every call.
  readonly #headersOut = new BigUint64Array(1);
  readonly #hdrName = new BigUint64Array(1);
  readonly #hdrValue = new BigUint64Array(1);
  readonly #hdrSize = new BigUint64Array(1);
  readonly #headersOutPtr = ptr(this.#headersOut);
  readonly #hdrNamePtr = ptr(this.#hdrName);
  readonly #hdrValuePtr = ptr(this.#hdrValue);
  readonly #hdrSizePtr = ptr(this.#hdrSize);
  // One slice's fetch events, held until their bytes are copied out (reused: no per-poll arrays).
  readonly #events: Pointer[] = [];
  readonly #messages: Pointer[] = [];
  // Per gathered header: its message's index, name, value pointer and size (read while gathering,
  // so that the slice's buffer can be sized before anything is copied).
  readonly #headerRefs: number[] = [];
  readonly #queueWake: QueueWake;
  readonly #commitWake: QueueWake;
  #lastRkt: Pointer | null = null;
  #lastTopic = "";
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
    this.#queueWake = new QueueWake(this.#queue);
    this.#commitWake = new QueueWake(this.#commitQueue);
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
      while (messages.length < maxMessages) {
        const slice = Math.min(maxMessages, messages.length + DRAIN_SLICE);
        const drained = this.#drain(messages, slice, workInFlight);
        if (this.#pendingRevoke) break;
        const now = Date.now();
        if (!drained && now >= deadline) break;
        // An empty queue: wait for librdkafka's wake-up (never past the deadline), so an idle
        // consumer sleeps and a busy one sees the next fetch at once.
        if (!drained) await this.#queueWake.wait(Math.min(WAKE_FALLBACK_MS, deadline - now));
        else if (messages.length < maxMessages) await yieldToEventLoop();
        if (this.#closed) break;
      }
      return messages;
    } finally {
      this.#queueWake.idle();
      this.#polling = false;
    }
  }

  /** True when a revocation is held until the caller's work is committed and it polls again. */
  get revokePending(): boolean {
    return this.#pendingRevoke !== null;
  }

  /**
   * Serves queued events into `messages`; returns false when the queue was empty.
   *
   * A slice is gathered first (one fetch event holds one message), then copied out at once: every
   * key, value and header value of the slice goes into one new buffer with one memcpy each, and
   * the messages are views of it. The buffer is never reused, so a message kept by the caller
   * stays intact after later polls (it keeps its slice's buffer alive).
   */
  #drain(messages: ConsumedMessage[], maxMessages: number, workInFlight: boolean): boolean {
    const l = lib();
    const events = this.#events;
    const msgs = this.#messages;
    const headerRefs = this.#headerRefs;
    let served = false;
    let bytes = 0;
    try {
      while (messages.length + msgs.length < maxMessages && !this.#pendingRevoke) {
        const ev = l.rd_kafka_queue_poll(this.#queue, 0);
        if (!ev) break;
        served = true;
        // Only a fetch event has a message (a consumer gets no delivery reports), so the common
        // case needs no rd_kafka_event_type call.
        const msg = l.rd_kafka_event_message_next(ev);
        if (msg) {
          const err = read.i32(msg, MESSAGE.err);
          if (err === 0) {
            // Held until copied out below: the message's memory belongs to the event.
            events.push(ev);
            msgs.push(msg);
            bytes +=
              read.u32(msg, MESSAGE.len) + read.u32(msg, MESSAGE.keyLen) + this.#gatherHeaders(msg, msgs.length - 1);
            continue;
          }
          try {
            this.#onConsumerError(msg, err);
          } finally {
            l.rd_kafka_event_destroy(ev);
          }
          continue;
        }
        const type = l.rd_kafka_event_type(ev);
        if (type === EVENT.REBALANCE) {
          // Ownership of `ev` passes to the rebalance handler.
          this.#onRebalance(ev, workInFlight || messages.length + msgs.length > 0);
        } else {
          try {
            this.#onEvent(ev, type);
          } finally {
            l.rd_kafka_event_destroy(ev);
          }
        }
      }
      if (msgs.length > 0) this.#copyOut(messages, bytes);
    } finally {
      // Every held event is freed, also when an error event threw (those messages are dropped
      // with the poll that threw, as before: never returned, never committed).
      for (const ev of events) l.rd_kafka_event_destroy(ev);
      events.length = 0;
      msgs.length = 0;
      headerRefs.length = 0;
    }
    return served;
  }

  /** Errors and statistics from the consumer queue; the caller destroys `ev`. */
  #onEvent(ev: Pointer, type: number): void {
    const l = lib();
    if (type === EVENT.ERROR) {
      const code = l.rd_kafka_event_error(ev);
      const fatal = l.rd_kafka_event_error_is_fatal(ev) !== 0;
      const error = errorFromCode(code, `Kafka consumer: ${String(l.rd_kafka_event_error_string(ev))}`, fatal);
      // Fatal errors and a subscribed topic that does not exist never heal: tell the caller.
      if (fatal || error.code === "UNKNOWN_TOPIC") throw error;
      this.#options.onError?.(error);
    } else if (type === EVENT.STATS) {
      this.#options.onStats?.(String(l.rd_kafka_event_stats(ev)));
    }
  }

  /** Notes `msg`'s headers (index `index` in the slice) in #headerRefs; returns their value bytes. */
  #gatherHeaders(msg: Pointer, index: number): number {
    const l = lib();
    if (l.rd_kafka_message_headers(msg, this.#headersOutPtr) !== 0) return 0;
    const hdrs = Number(this.#headersOut[0]) as Pointer;
    const cnt = Number(l.rd_kafka_header_cnt(hdrs));
    let bytes = 0;
    for (let i = 0; i < cnt; i++) {
      if (l.rd_kafka_header_get_all(hdrs, i, this.#hdrNamePtr, this.#hdrValuePtr, this.#hdrSizePtr) !== 0) break;
      const size = Number(this.#hdrSize[0]);
      this.#headerRefs.push(index, Number(this.#hdrName[0]), Number(this.#hdrValue[0]), size);
      bytes += size;
    }
    // A message with an empty header list still has headers ({}), as before.
    if (cnt === 0) this.#headerRefs.push(index, 0, 0, 0);
    return bytes;
  }

  /** Copies the gathered slice (`bytes` in all) into one new buffer and appends the messages. */
  #copyOut(messages: ConsumedMessage[], bytes: number): void {
    const l = lib();
    const memcpy = libc().memcpy;
    const msgs = this.#messages;
    const headerRefs = this.#headerRefs;
    // Backed by an ArrayBuffer from the start: a small `new Uint8Array(n)` keeps its bytes inline
    // and moves them when a view of its buffer is first taken, which would leave `base` stale.
    const buf = new Uint8Array(new ArrayBuffer(bytes));
    // The buffer's address, taken once: each copy is then a plain-number FFI call.
    const base = bytes > 0 ? ptr(buf) : 0;
    let at = 0;
    let h = 0;
    for (let i = 0; i < msgs.length; i++) {
      const msg = msgs[i] as Pointer;
      let key: Uint8Array | null = null;
      const keyPtr = read.ptr(msg, MESSAGE.key);
      if (keyPtr) {
        const keyLen = read.u32(msg, MESSAGE.keyLen);
        if (keyLen > 0) memcpy(base + at, keyPtr, keyLen);
        key = buf.subarray(at, at + keyLen);
        at += keyLen;
      }
      let value: Uint8Array | null = null;
      const payload = read.ptr(msg, MESSAGE.payload);
      if (payload) {
        const len = read.u32(msg, MESSAGE.len);
        if (len > 0) memcpy(base + at, payload, len);
        value = buf.subarray(at, at + len);
        at += len;
      }
      let headers: Record<string, Uint8Array> | null = null;
      if (headerRefs[h] === i) {
        headers = {};
        for (; headerRefs[h] === i; h += 4) {
          const name = headerRefs[h + 1] as number;
          if (name === 0) continue;
          const valuePtr = headerRefs[h + 2] as number;
          const size = headerRefs[h + 3] as number;
          // A header without a value (NULL) reads as empty bytes, as before.
          if (valuePtr && size > 0) memcpy(base + at, valuePtr, size);
          headers[readCString(name as Pointer)] = buf.subarray(at, valuePtr ? at + size : at);
          if (valuePtr) at += size;
        }
      }
      messages.push({
        topic: this.#topicName(read.ptr(msg, MESSAGE.rkt) as Pointer),
        partition: read.i32(msg, MESSAGE.partition),
        // int64 read as two halves: offsets stay below 2^53 and this avoids a BigInt per message.
        offset: read.i32(msg, MESSAGE.offset + 4) * 0x100000000 + read.u32(msg, MESSAGE.offset),
        key,
        value,
        headers,
        timestamp: l.rd_kafka_message_timestamp(msg, null) as number,
      });
    }
  }

  #onConsumerError(msg: Pointer, err: number): void {
    const topic = this.#topicName(read.ptr(msg, MESSAGE.rkt) as Pointer | null);
    const error = errorFromCode(err, `consume ${topic || "(group)"}: ${errText(err)} (${errName(err)})`);
    // Subscribing to a topic that does not exist will never make progress: tell the caller.
    if (error.code === "UNKNOWN_TOPIC") throw error;
    this.#options.onError?.(error);
  }

  #topicName(rkt: Pointer | null): string {
    if (!rkt) return "";
    // A batch is mostly one topic: the last one is kept at hand.
    if (rkt === this.#lastRkt) return this.#lastTopic;
    let name = this.#topicNames.get(rkt);
    if (name === undefined) {
      name = String(lib().rd_kafka_topic_name(rkt));
      this.#topicNames.set(rkt, name);
    }
    this.#lastRkt = rkt;
    this.#lastTopic = name;
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
    // The reply is awaited on the wake-up pipe: a 1 ms sleep per look cost >= 1 ms per commit, as
    // much as reading 1,000 messages.
    try {
      for (;;) {
        const ev = l.rd_kafka_queue_poll(this.#commitQueue, 0);
        if (!ev) await this.#commitWake.wait(WAKE_FALLBACK_MS);
        else if (this.#commitReply(ev)) return;
      }
    } finally {
      this.#commitWake.idle();
    }
  }

  /** Handles one event of the commit queue and destroys it; true when it was the commit's reply. */
  #commitReply(ev: Pointer): boolean {
    const l = lib();
    try {
      if (l.rd_kafka_event_type(ev) !== EVENT.OFFSET_COMMIT) return false;
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
      return true;
    } finally {
      l.rd_kafka_event_destroy(ev);
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
    await this.#commitWake.close();
    await this.#queueWake.close();
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

const readPipe = (fd: number) => Bun.file(fd).stream().getReader();
type PipeReader = ReturnType<typeof readPipe>;

/**
 * Lets JS await "this queue got an event" on the event loop, without spinning or fixed sleeps:
 * librdkafka writes a byte to a non-blocking pipe when the queue goes from empty to non-empty
 * (rd_kafka_queue_io_event_enable), and Bun reads the pipe like any other stream. Where there is
 * no pipe2 (macOS), waiting is a plain sleep.
 */
class QueueWake {
  readonly #queue: Pointer;
  readonly #fds: Int32Array | null = null;
  #reader: PipeReader | null = null;
  #pending: Promise<unknown> | null = null;
  #linger: Timer | null = null;

  constructor(queue: Pointer) {
    this.#queue = queue;
    const calls = pipeCalls();
    const fds = new Int32Array(2);
    if (!calls || calls.pipe2(fds, O_NONBLOCK | O_CLOEXEC) !== 0) return;
    // librdkafka keeps its own copy of the payload.
    lib().rd_kafka_queue_io_event_enable(queue, fds[1] as number, new Uint8Array([1]), 1);
    this.#fds = fds;
  }

  /** Resolves once the queue got an event since it was last polled empty, or after `ms`. */
  async wait(ms: number): Promise<void> {
    if (!this.#fds) return Bun.sleep(ms);
    if (this.#linger) clearTimeout(this.#linger);
    this.#linger = null;
    const reader = this.#reader ?? readPipe(this.#fds[0] as number);
    this.#reader = reader;
    // One read outstanding at a time; a wait that timed out leaves it for the next wait.
    if (!this.#pending) {
      const pending: Promise<unknown> = reader.read().then(() => {
        if (this.#pending === pending) this.#pending = null;
      });
      this.#pending = pending;
    }
    let timer: Timer | undefined;
    const timedOut = new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    });
    await Promise.race([this.#pending, timedOut]);
    clearTimeout(timer);
  }

  /**
   * Called when a wait is over: the pipe stays watched a little longer (a busy consumer waits again
   * well within that, and setting up a reader per commit cost ~0.3 ms of CPU), then is let go, so
   * that a consumer nobody waits on keeps no process alive.
   */
  idle(): void {
    if (!this.#reader || this.#linger) return;
    this.#linger = setTimeout(() => {
      this.#linger = null;
      void this.#release();
    }, WAKE_LINGER_MS);
  }

  async #release(): Promise<void> {
    const reader = this.#reader;
    if (!reader) return;
    this.#reader = null;
    this.#pending = null;
    await reader.cancel();
  }

  /** Stops the wake-ups (librdkafka must not write to a closed descriptor), then closes the pipe. */
  async close(): Promise<void> {
    if (this.#linger) clearTimeout(this.#linger);
    this.#linger = null;
    await this.#release();
    if (!this.#fds) return;
    lib().rd_kafka_queue_io_event_enable(this.#queue, -1, null, 0);
    pipeCalls()?.close(this.#fds[0] as number);
    pipeCalls()?.close(this.#fds[1] as number);
  }
}
