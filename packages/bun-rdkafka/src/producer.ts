// Kafka producer over librdkafka's C API.
//
// Guarantees: the idempotent producer (enable.idempotence=true, acks=all) is the default, so a
// message is reported delivered only once every in-sync replica has it, and broker-side retries
// never duplicate or reorder it. send() resolves only after librdkafka's delivery report says so.
//
// Threading: librdkafka never calls into JavaScript. Delivery reports, errors and statistics are
// routed to the main queue as events (rd_kafka_conf_set_events) and drained by rd_kafka_queue_poll
// from the JS thread: every millisecond while deliveries are outstanding, every 100 ms otherwise.
// Batching and compression are librdkafka's job (linger.ms, batch.num.messages, compression.type).
import { type Pointer, ptr, read } from "bun:ffi";
import { ErrorCode } from "./error-codes.ts";
import { KafkaError, errorFromCode } from "./errors.ts";
import { lib } from "./ffi.ts";
import {
  EVENT,
  HANDLE_TYPE,
  MESSAGE,
  MSG_F_COPY,
  PARTITION_UA,
  PURGE_F_INFLIGHT,
  PURGE_F_QUEUE,
  VTYPE,
  VU,
} from "./layout.ts";
import { type KafkaConfig, createHandle, cstr, errName, errText, takeError } from "./native.ts";

export type Bytes = string | Uint8Array;

export interface ProducerMessage {
  topic: string;
  value: Bytes | null;
  key?: Bytes | null;
  /** Explicit partition; omitted means the configured partitioner picks one from the key. */
  partition?: number;
  headers?: Readonly<Record<string, Bytes>>;
  /** Milliseconds since the epoch; omitted means "now" (set by librdkafka). */
  timestamp?: number;
}

export interface DeliveryReport {
  topic: string;
  partition: number;
  offset: number;
}

export interface ProducerOptions {
  /** librdkafka properties, e.g. {"bootstrap.servers": "127.0.0.1:19092", "linger.ms": 5}. */
  config: KafkaConfig;
  /** Called with librdkafka's statistics JSON every statistics.interval.ms (when set). */
  onStats?: (json: string) => void;
  /** Called for client-level errors (broker down, fatal idempotence errors...). */
  onError?: (error: KafkaError) => void;
}

const DEFAULTS: KafkaConfig = {
  "enable.idempotence": true,
  acks: "all",
  "linger.ms": 5,
  "compression.type": "lz4",
};

const FAST_POLL_MS = 1;
const IDLE_POLL_MS = 100;
const MAX_HEADERS = 32;
const MAX_VUS = 7 + MAX_HEADERS; // rkt, partition, key, value, opaque, msgflags, timestamp, headers
const DR_ARRAY_SIZE = 1024;

/** One send() call: settles when every message it enqueued has a delivery report. */
interface Tracker {
  remaining: number;
  error: KafkaError | null;
  report: DeliveryReport | null;
  resolve: (report: DeliveryReport | null) => void;
  reject: (error: KafkaError) => void;
}

export class KafkaProducer {
  readonly #rk: Pointer;
  readonly #queue: Pointer;
  readonly #topics = new Map<string, Pointer>();
  readonly #trackers = new Map<number, Tracker>();
  readonly #onStats: ((json: string) => void) | undefined;
  readonly #onError: ((error: KafkaError) => void) | undefined;
  #nextTrackerId = 1;
  #inflight = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #timerFast = false;
  #closed = false;
  #brokersDown = false;
  #hadMetadata = false;
  #fatal: KafkaError | null = null;

  // Scratch memory reused by every produce call: librdkafka copies key, value and headers
  // (RD_KAFKA_MSG_F_COPY) before rd_kafka_produceva returns, so nothing outlives the call.
  readonly #vus = new Uint8Array(VU.size * MAX_VUS);
  readonly #vuView = new DataView(this.#vus.buffer);
  readonly #vusPtr = ptr(this.#vus);
  #data = Buffer.allocUnsafeSlow(64 * 1024);
  #dataPtr = ptr(this.#data);
  readonly #drArray = new BigUint64Array(DR_ARRAY_SIZE);
  readonly #drArrayPtr = ptr(this.#drArray);

  /** Creates the producer (idempotent, acks=all, lz4, linger.ms=5 unless `config` says otherwise). */
  constructor(options: ProducerOptions) {
    this.#onStats = options.onStats;
    this.#onError = options.onError;
    this.#rk = createHandle(
      HANDLE_TYPE.PRODUCER,
      { ...DEFAULTS, ...options.config },
      EVENT.DR | EVENT.ERROR | EVENT.STATS,
    );
    this.#queue = lib().rd_kafka_queue_get_main(this.#rk) as Pointer;
    this.#schedule();
  }

  /** Messages enqueued whose delivery report has not been seen yet. */
  get inflight(): number {
    return this.#inflight;
  }

  /** librdkafka's own count: messages queued or in flight plus events not yet polled. */
  get queueLength(): number {
    return this.#closed ? 0 : lib().rd_kafka_outq_len(this.#rk);
  }

  /**
   * The fatal error librdkafka raised (e.g. the idempotent producer lost its guarantees), or null.
   * Once set, every send is refused with it: only a new producer (a restart) recovers.
   */
  get fatalError(): KafkaError | null {
    return this.#fatal;
  }

  /**
   * True once the client has had cluster metadata (a controller id) and while not every broker is
   * down. After the first metadata, a controller id gone unknown is not "disconnected": librdkafka
   * keeps the last metadata's id (-1 from a cluster that had lost its quorum) until its next
   * metadata request, which only sends trigger, so refusing sends on it kept a 3-node cluster's
   * edge answering 503 for minutes after the cluster had recovered (test/integration/kafka-replicated.test.ts).
   */
  get connected(): boolean {
    if (this.#closed || this.#fatal || this.#brokersDown) return false;
    return this.hasConnected;
  }

  /**
   * True once the client has had cluster metadata, and from then on whatever happens to the
   * brokers: a service can tell a client that never reached Kafka (still starting) from one in an
   * outage (server/app.ts's /ready keeps a new edge out of rotation until its first connection).
   */
  get hasConnected(): boolean {
    if (!this.#hadMetadata && !this.#closed) this.#hadMetadata = lib().rd_kafka_controllerid(this.#rk, 0) >= 0;
    return this.#hadMetadata;
  }

  /** Waits (polling, never blocking the event loop) until `connected`, or throws TIMEOUT. */
  async waitUntilConnected(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.connected) {
      if (this.#fatal) throw this.#fatal;
      if (Date.now() >= deadline) {
        throw new KafkaError("TIMEOUT", `no Kafka broker answered within ${timeoutMs} ms (check bootstrap.servers)`);
      }
      this.#poll();
      await Bun.sleep(10);
    }
  }

  /** Produces one message; resolves with where it landed once it is durable. */
  async produce(message: ProducerMessage): Promise<DeliveryReport> {
    const report = await this.#send([message], true);
    return report as DeliveryReport;
  }

  /**
   * Produces a batch; resolves once every message is acknowledged. Rejects with the first error
   * (a QueueFullError when the local queue filled up) only after every message that was enqueued
   * has its delivery report, so a rejection never leaves deliveries pending.
   */
  async send(messages: readonly ProducerMessage[]): Promise<void> {
    if (messages.length > 0) await this.#send(messages, false);
  }

  #send(messages: readonly ProducerMessage[], wantReport: boolean): Promise<DeliveryReport | null> {
    if (this.#closed) return Promise.reject(new KafkaError("CLOSED", "producer is closed"));
    if (this.#fatal) return Promise.reject(this.#fatal);
    const id = this.#nextTrackerId;
    this.#nextTrackerId = id >= 0x7fffffff ? 1 : id + 1;
    return new Promise((resolve, reject) => {
      const tracker: Tracker = { remaining: messages.length, error: null, report: null, resolve, reject };
      if (wantReport && messages[0]) tracker.report = { topic: messages[0].topic, partition: -1, offset: -1 };
      this.#trackers.set(id, tracker);
      let enqueued = 0;
      for (const message of messages) {
        const error = this.#enqueue(message, id);
        if (error) {
          tracker.error = error;
          break;
        }
        enqueued++;
      }
      this.#inflight += enqueued;
      tracker.remaining = enqueued;
      if (enqueued === 0) this.#settle(id, tracker);
      else this.#schedule();
    });
  }

  #enqueue(m: ProducerMessage, opaque: number): KafkaError | null {
    const rkt = this.#topic(m.topic);
    // Returned, never thrown: #send must account for what was already enqueued by this call.
    if (rkt instanceof KafkaError) return rkt;
    let n = 0;
    let pos = 0;
    n = this.#vuPtr(n, VTYPE.RKT, rkt);
    n = this.#vuI32(n, VTYPE.PARTITION, m.partition ?? PARTITION_UA);
    n = this.#vuI32(n, VTYPE.MSGFLAGS, MSG_F_COPY);
    n = this.#vuPtr(n, VTYPE.OPAQUE, opaque);
    if (m.timestamp !== undefined) {
      this.#vuView.setInt32(n * VU.size + VU.vtype, VTYPE.TIMESTAMP, true);
      this.#vuView.setBigInt64(n * VU.size + VU.u, BigInt(m.timestamp), true);
      n++;
    }
    if (m.key != null) {
      const len = this.#write(m.key, pos);
      n = this.#vuMem(n, VTYPE.KEY, pos, len);
      pos += len;
    }
    if (m.value != null) {
      const len = this.#write(m.value, pos);
      n = this.#vuMem(n, VTYPE.VALUE, pos, len);
      pos += len;
    }
    if (m.headers) {
      for (const name in m.headers) {
        if (n >= MAX_VUS) return new KafkaError("CONFIG", `at most ${MAX_HEADERS} headers per message`);
        const value = m.headers[name] as Bytes;
        const nameLen = this.#write(name, pos);
        this.#data[pos + nameLen] = 0;
        const valuePos = pos + nameLen + 1;
        const valueLen = this.#write(value, valuePos);
        const off = n * VU.size;
        this.#vuView.setInt32(off + VU.vtype, VTYPE.HEADER, true);
        this.#setPtr(off + VU.u, this.#dataPtr + pos);
        this.#setPtr(off + VU.u + 8, this.#dataPtr + valuePos);
        this.#setPtr(off + VU.u + 16, valueLen); // ssize_t length; non-negative, so the same two-uint32 write
        n++;
        pos = valuePos + valueLen;
      }
    }
    // _QUEUE_FULL comes back as a QueueFullError (errorFromCode), so the caller can wait and retry.
    return takeError(lib().rd_kafka_produceva(this.#rk, this.#vusPtr, n), `produce to ${m.topic} failed`);
  }

  /** Writes key/value/header bytes into the scratch buffer at `pos`, growing it when needed. */
  #write(value: Bytes, pos: number): number {
    const maxLen = typeof value === "string" ? value.length * 3 : value.byteLength;
    if (pos + maxLen + 1 > this.#data.length) this.#grow(pos + maxLen + 1);
    if (typeof value === "string") return this.#data.write(value, pos, "utf8");
    this.#data.set(value, pos);
    return value.byteLength;
  }

  #grow(minSize: number): void {
    let size = this.#data.length;
    while (size < minSize) size *= 2;
    const next = Buffer.allocUnsafeSlow(size);
    this.#data.copy(next);
    this.#data = next;
    this.#dataPtr = ptr(next);
  }

  #setPtr(off: number, p: number): void {
    // Pointers (and sizes) fit in 53 bits on x86-64/arm64 user space; written as two uint32 so the
    // hot path allocates no BigInt.
    this.#vuView.setUint32(off, p >>> 0, true);
    this.#vuView.setUint32(off + 4, Math.floor(p / 0x100000000), true);
  }

  #vuPtr(n: number, vtype: number, p: number): number {
    this.#vuView.setInt32(n * VU.size + VU.vtype, vtype, true);
    this.#setPtr(n * VU.size + VU.u, p);
    return n + 1;
  }

  #vuI32(n: number, vtype: number, v: number): number {
    this.#vuView.setInt32(n * VU.size + VU.vtype, vtype, true);
    this.#vuView.setInt32(n * VU.size + VU.u, v, true);
    return n + 1;
  }

  #vuMem(n: number, vtype: number, pos: number, len: number): number {
    this.#vuPtr(n, vtype, this.#dataPtr + pos);
    this.#setPtr(n * VU.size + VU.u + 8, len);
    return n + 1;
  }

  #topic(name: string): Pointer | KafkaError {
    let rkt = this.#topics.get(name);
    if (!rkt) {
      const created = lib().rd_kafka_topic_new(this.#rk, cstr(name), null);
      if (!created) {
        const shown = name.length > 80 ? `${name.slice(0, 80)}… (${name.length} characters)` : name;
        return new KafkaError("CONFIG", `could not create topic handle for "${shown}"`);
      }
      rkt = created;
      this.#topics.set(name, rkt);
    }
    return rkt;
  }

  #schedule(): void {
    const fast = this.#inflight > 0;
    if (this.#closed || (this.#timer && (this.#timerFast || !fast))) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerFast = fast;
    this.#timer = setTimeout(this.#tick, fast ? FAST_POLL_MS : IDLE_POLL_MS);
    // The idle timer only watches for stats and errors; it must not keep the process alive.
    if (!fast) this.#timer.unref();
  }

  readonly #tick = (): void => {
    this.#timer = null;
    this.#poll();
    this.#schedule();
  };

  /** Drains the main queue: delivery reports, errors, statistics. */
  #poll(): void {
    if (this.#closed) return;
    const l = lib();
    for (let i = 0; i < 10_000; i++) {
      const ev = l.rd_kafka_queue_poll(this.#queue, 0);
      if (!ev) return;
      const type = l.rd_kafka_event_type(ev);
      if (type === EVENT.DR) this.#onDeliveryReports(ev);
      else if (type === EVENT.ERROR) this.#onErrorEvent(ev);
      else if (type === EVENT.STATS) this.#onStatsEvent(ev);
      l.rd_kafka_event_destroy(ev);
    }
  }

  #onDeliveryReports(ev: Pointer): void {
    const l = lib();
    for (;;) {
      const n = Number(l.rd_kafka_event_message_array(ev, this.#drArrayPtr, DR_ARRAY_SIZE));
      if (n === 0) return;
      for (let i = 0; i < n; i++) {
        const msg = Number(this.#drArray[i]) as Pointer;
        const id = Number(read.ptr(msg, MESSAGE.private));
        const tracker = this.#trackers.get(id);
        this.#inflight--;
        if (!tracker) continue;
        const err = read.i32(msg, MESSAGE.err);
        if (err !== 0) {
          if (!tracker.error) tracker.error = errorFromCode(err, `delivery failed: ${errText(err)} (${errName(err)})`);
        } else {
          this.#brokersDown = false;
          if (tracker.report) {
            tracker.report.partition = read.i32(msg, MESSAGE.partition);
            tracker.report.offset = Number(read.i64(msg, MESSAGE.offset));
          }
        }
        if (--tracker.remaining === 0) this.#settle(id, tracker);
      }
      if (n < DR_ARRAY_SIZE) return;
    }
  }

  #settle(id: number, tracker: Tracker): void {
    this.#trackers.delete(id);
    if (tracker.error) tracker.reject(tracker.error);
    else tracker.resolve(tracker.report);
  }

  #onErrorEvent(ev: Pointer): void {
    const l = lib();
    const code = l.rd_kafka_event_error(ev);
    const fatal = l.rd_kafka_event_error_is_fatal(ev) !== 0;
    const error = errorFromCode(code, `Kafka producer: ${String(l.rd_kafka_event_error_string(ev))}`, fatal);
    if (code === ErrorCode._ALL_BROKERS_DOWN) this.#brokersDown = true;
    if (fatal) this.#fatal = error;
    this.#onError?.(error);
  }

  #onStatsEvent(ev: Pointer): void {
    const json = String(lib().rd_kafka_event_stats(ev));
    // Any broker in state UP means the cluster is reachable again after _ALL_BROKERS_DOWN.
    if (this.#brokersDown && json.includes('"state":"UP"')) this.#brokersDown = false;
    this.#onStats?.(json);
  }

  /**
   * Waits until every enqueued message has its delivery report or `timeoutMs` passes.
   * Resolves true when nothing is left outstanding.
   */
  async flush(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed) {
      this.#poll();
      if (this.#inflight === 0 && lib().rd_kafka_outq_len(this.#rk) === 0) return true;
      if (Date.now() >= deadline) return false;
      await Bun.sleep(FAST_POLL_MS);
    }
    return this.#inflight === 0;
  }

  /**
   * Flushes (up to `timeoutMs`), then destroys the client. Messages still undelivered at the
   * deadline are purged and their send() promises reject: nothing that was acknowledged is lost,
   * and nothing unacknowledged is reported as delivered.
   */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.#closed) return;
    const l = lib();
    if (!(await this.flush(timeoutMs))) {
      l.rd_kafka_purge(this.#rk, PURGE_F_QUEUE | PURGE_F_INFLIGHT);
      await this.flush(1_000);
    }
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    for (const [id, tracker] of this.#trackers) {
      tracker.error ??= new KafkaError("CLOSED", "producer closed before delivery was confirmed");
      this.#settle(id, tracker);
    }
    for (const rkt of this.#topics.values()) l.rd_kafka_topic_destroy(rkt);
    this.#topics.clear();
    l.rd_kafka_queue_destroy(this.#queue);
    l.rd_kafka_destroy(this.#rk);
  }
}
