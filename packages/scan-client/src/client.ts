// ScanClient: scan() stamps event_id (UUIDv7) and scanned_at once and resolves when the event is
// durably queued; one send loop takes the oldest events in batches, stamps sent_at per attempt and
// POSTs them, one request at a time (simple, and the order is kept). What the edge answers decides:
// accepted -> removed, refused per event -> onRefused and removed, anything else -> kept and retried
// (Retry-After / RateLimit honoured, else capped exponential backoff with full jitter). The entry
// points (node.ts, browser.ts) only choose the default queue.
import { type Batch, buildBatch, gzip } from "./batch.ts";
import { QueueFullError, ScanClientError } from "./errors.ts";
import { type Queue, type QueuedEvent, isQueue } from "./queue.ts";
import { backoffMs, parseMaxBatchEvents, serverWaitMs } from "./retry.ts";
import { uuidv7Generator } from "./uuid.ts";
import { type ErrorAnswer, type FieldError, type IngestAnswer, SCHEMA_VERSION, type WireEvent } from "./wire.ts";

export interface ScanInput {
  qr_id: string;
  scanner_id?: string;
  location?: { lat: number; lon: number; accuracy_m?: number };
  user_agent?: string;
  attributes?: Record<string, string | number | boolean>;
}

/** An event the edge refused for good (a 4xx other than 401/408/429): never retried. */
export interface RefusedEvent {
  event: WireEvent;
  /** 400 for a per-event rejection (also inside a 202), else the answer's status (403, 413, 415…). */
  status: number;
  errors: FieldError[];
}

export interface ScanClientMetrics {
  /** Events in the queue, in flight included. */
  queued: number;
  /** Events in the request being sent. */
  inFlight: number;
  /** Events the edge accepted (since open). */
  sent: number;
  /** Events the edge refused (since open), each reported to onRefused. */
  refused: number;
  /** Events dropped by whenFull: "evict-oldest" (since open). */
  evicted: number;
  /** Age of the oldest queued event by the device clock, 0 when none. */
  oldestQueuedAgeMs: number;
}

export type QueueOption = Queue | { path: string } | { name: string };

export interface ScanClientOptions {
  /** Base URL of the edge, e.g. "http://127.0.0.1:8080". */
  endpoint: string;
  /** Sent as Authorization: Bearer. */
  apiKey?: string;
  /** Bearer token provider; called again after a 401 (refresh). */
  token?: () => string | Promise<string>;
  queue?: QueueOption;
  /** Default 100,000 events. */
  maxQueued?: number;
  /** Default "refuse": scan() rejects with QueueFullError. */
  whenFull?: "refuse" | "evict-oldest";
  /** Defaults: 500 events, 512 KiB, 1,000 ms. */
  batch?: { maxEvents?: number; maxBytes?: number; maxWaitMs?: number };
  /** Default 16 KiB. */
  gzipAboveBytes?: number;
  /** Defaults: 500 ms, 60 s. */
  retry?: { baseMs?: number; maxMs?: number };
  /** The device clock (ms since epoch). */
  now?: () => number;
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  onRefused?: (refused: RefusedEvent[]) => void;
  onError?: (error: ScanClientError) => void;
  /** Called with the events dropped by whenFull: "evict-oldest". */
  onEvicted?: (events: WireEvent[]) => void;
}

export type QueueFactory = (option: QueueOption | undefined) => Promise<Queue>;

/** A request that takes longer is abandoned and retried (the same events: harmless). */
const REQUEST_TIMEOUT_MS = 30_000;

type Timer = ReturnType<typeof setTimeout> & { ref?: () => void; unref?: () => void };

export class ScanClient {
  /** The entry point's default queue; this one takes only a Queue instance. */
  protected static queueFactory: QueueFactory = async (option) => {
    if (isQueue(option)) return option;
    throw new ScanClientError("config", 'no queue: import ScanClient from "scan-client" or "scan-client/browser"');
  };

  static async open(options: ScanClientOptions): Promise<ScanClient> {
    // biome-ignore lint/complexity/noThisInStatic: the entry point's subclass chooses the default queue
    const queue = await (this as unknown as { queueFactory: QueueFactory }).queueFactory(options.queue);
    const client = new ScanClient(options, queue);
    await client.start();
    return client;
  }

  private readonly endpoint: string;
  private readonly now: () => number;
  private readonly fetchFn: (url: string, init: RequestInit) => Promise<Response>;
  private readonly newId: () => string;
  private readonly maxQueued: number;
  private readonly maxEvents: number;
  private readonly maxBytes: number;
  private readonly maxWaitMs: number;
  private readonly gzipAbove: number;
  private readonly baseMs: number;
  private readonly maxMs: number;

  private closed = false;
  private queuedCount = 0;
  /** scan() calls counted in queuedCount whose append has not resolved yet. */
  private reserved = 0;
  private inFlight: QueuedEvent[] = [];
  private sent = 0;
  private refused = 0;
  private evicted = 0;
  private head: QueuedEvent | null = null;
  private lastQueuedSeq = 0;
  private evicting: Promise<void> = Promise.resolve();
  /** The eviction running, if any: the send loop peeks after it. */
  private evictionRunning: Promise<void> | null = null;
  /** The send loop's peek, if running: an eviction waits for it, so it sees what is in flight. */
  private peeking: Promise<unknown> | null = null;

  /** Consecutive failed attempts, for the backoff. */
  private attempt = 0;
  /** No request before this (performance.now() ms). */
  private blockedUntil = 0;
  /** The largest batch the edge takes (Max-Batch-Events, 413), learned from its answers. */
  private learnedMax = Number.POSITIVE_INFINITY;
  /** While bisecting a 403: the size of the next batch. */
  private probeMax: number | null = null;
  private cachedToken: string | null = null;
  /** 1 once the edge refused sent_at / schema_version as unknown fields (rolled back to version 1). */
  private wireVersion: 1 | 2 = 2;

  private timer: Timer | null = null;
  private pumping: Promise<void> | null = null;
  private again = false;
  private abort: AbortController | null = null;
  private flushWaiters: { target: number; resolve: () => void; reject: (e: unknown) => void }[] = [];

  protected constructor(
    private readonly options: ScanClientOptions,
    private readonly queue: Queue,
  ) {
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    this.now = options.now ?? Date.now;
    this.fetchFn = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
    this.newId = uuidv7Generator(this.now);
    this.maxQueued = options.maxQueued ?? 100_000;
    this.maxEvents = options.batch?.maxEvents ?? 500;
    this.maxBytes = options.batch?.maxBytes ?? 512 * 1024;
    this.maxWaitMs = options.batch?.maxWaitMs ?? 1_000;
    this.gzipAbove = options.gzipAboveBytes ?? 16 * 1024;
    this.baseMs = options.retry?.baseMs ?? 500;
    this.maxMs = options.retry?.maxMs ?? 60_000;
  }

  private async start(): Promise<void> {
    this.queuedCount = await this.queue.size();
    // flush() covers what an earlier process left queued too: its newest seq is the first target.
    this.lastQueuedSeq = this.queue.lastSeq
      ? await this.queue.lastSeq()
      : ((await this.queue.peek(this.queuedCount)).at(-1)?.seq ?? 0);
    await this.refreshHead();
    // What an earlier process left queued goes out now.
    this.wake();
  }

  /** Queues one scan durably; event_id and scanned_at are fixed here and never change. */
  async scan(input: ScanInput): Promise<{ event_id: string; scanned_at: string }> {
    if (this.closed) throw new ScanClientError("closed", "scan() on a closed ScanClient");
    if (typeof input?.qr_id !== "string" || input.qr_id.length === 0) {
      throw new ScanClientError("invalid_scan", "scan() needs a non-empty string qr_id");
    }
    if (this.queuedCount >= this.maxQueued) {
      if (this.options.whenFull !== "evict-oldest") throw new QueueFullError(this.maxQueued);
      // One eviction at a time, each re-checking: concurrent scans must not evict the same events.
      const turn = this.evicting.then(() => (this.queuedCount >= this.maxQueued ? this.evictOldest() : undefined));
      this.evicting = turn.catch(() => {}); // the error is this scan()'s, thrown below
      await turn;
    }
    const t = this.now();
    const event: WireEvent = {
      event_id: this.newId(),
      qr_id: input.qr_id,
      scanned_at: new Date(t).toISOString(),
      schema_version: SCHEMA_VERSION,
    };
    if (input.scanner_id !== undefined) event.scanner_id = input.scanner_id;
    if (input.location !== undefined) event.location = input.location;
    if (input.user_agent !== undefined) event.user_agent = input.user_agent;
    if (input.attributes !== undefined) event.attributes = input.attributes;
    this.queuedCount++;
    this.reserved++;
    let queued: QueuedEvent[];
    try {
      queued = await this.queue.append([{ event, queuedAt: t }]);
    } catch (error) {
      this.queuedCount--;
      throw error;
    } finally {
      this.reserved--;
    }
    const q = queued[0] as QueuedEvent;
    this.lastQueuedSeq = Math.max(this.lastQueuedSeq, q.seq);
    this.head ??= q;
    if (this.queuedCount - this.reserved >= this.maxEvents) this.wake();
    else this.schedule(this.maxWaitMs);
    return { event_id: event.event_id, scanned_at: event.scanned_at };
  }

  metrics(): ScanClientMetrics {
    return {
      queued: this.queuedCount,
      inFlight: this.inFlight.length,
      sent: this.sent,
      refused: this.refused,
      evicted: this.evicted,
      oldestQueuedAgeMs: this.head ? Math.max(0, this.now() - this.head.queuedAt) : 0,
    };
  }

  /** Resolves when every event queued before the call is acknowledged or refused. */
  flush({ timeoutMs }: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closed) return Promise.reject(new ScanClientError("closed", "flush() on a closed ScanClient"));
    const target = this.lastQueuedSeq;
    if (this.head === null || this.head.seq > target) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let timeout: Timer | null = null;
      const waiter = {
        target,
        resolve: () => {
          if (timeout) clearTimeout(timeout);
          resolve();
        },
        reject: (e: unknown) => {
          if (timeout) clearTimeout(timeout);
          reject(e);
        },
      };
      if (timeoutMs !== undefined) {
        timeout = setTimeout(() => {
          this.flushWaiters = this.flushWaiters.filter((w) => w !== waiter);
          reject(
            new ScanClientError(
              "timeout",
              `flush(): ${this.queuedCount} events still queued after ${timeoutMs} ms (oldest seq ${this.head?.seq}, waiting for seq <= ${target})`,
            ),
          );
        }, timeoutMs) as Timer;
      }
      this.flushWaiters.push(waiter);
      // A flush keeps the process alive until it settles; the send loop's timers do otherwise not.
      this.timer?.ref?.();
      this.wake();
    });
  }

  /** Stops sending (an in-flight request is abandoned); what is queued stays for the next open(). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    await this.pumping;
    const closedError = new ScanClientError("closed", "the ScanClient was closed before the flush completed");
    for (const w of this.flushWaiters.splice(0)) w.reject(closedError);
    await this.queue.close();
  }

  // ---- the send loop ------------------------------------------------------------------------

  /** Runs the loop now (or once more after the current pass). */
  private wake(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.pumping = this.pump()
      .catch((error) => {
        // The queue failed (or gzip is missing): retried later like a network error, so an idle
        // device does not stall and flush() does not wait for its timeout.
        this.inFlight = [];
        this.retryLater(null, asClientError(error));
        this.reschedule(this.blockedUntil - performance.now());
      })
      .finally(() => {
        this.pumping = null;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  /** Runs the loop in `delayMs` unless it is already due sooner. */
  private schedule(delayMs: number): void {
    if (this.closed || this.timer) return;
    if (this.pumping) {
      // The running pass may have looked at the queue before this event: let it look again.
      this.again = true;
      return;
    }
    this.reschedule(delayMs);
  }

  private async pump(): Promise<void> {
    while (!this.closed) {
      this.again = false;
      const wait = this.blockedUntil - performance.now();
      if (wait > 0) {
        this.reschedule(wait);
        return;
      }
      const limit = Math.min(this.maxEvents, this.learnedMax, this.probeMax ?? Number.POSITIVE_INFINITY);
      // Marked in flight as soon as peeked: an eviction must not take what is being sent.
      if (this.evictionRunning) await this.evictionRunning;
      const peeking = this.queue.peek(limit);
      this.peeking = peeking;
      const queued = await peeking.finally(() => {
        this.peeking = null;
      });
      this.inFlight = queued;
      if (queued.length === 0) {
        this.probeMax = null;
        return;
      }
      const first = queued[0] as QueuedEvent;
      const age = this.now() - first.queuedAt;
      // A negative age is the device clock stepped back (NTP): due now, not held for the step's length.
      if (queued.length < limit && this.flushWaiters.length === 0 && age >= 0 && age < this.maxWaitMs) {
        this.inFlight = [];
        this.reschedule(this.maxWaitMs - age);
        return;
      }
      await this.send(queued);
    }
  }

  /** Runs the loop in `delayMs`, replacing any timer (also from inside pump(), while pumping is true). */
  private reschedule(delayMs: number): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    const timer = setTimeout(() => {
      this.timer = null;
      this.wake();
    }, delayMs) as Timer;
    if (this.flushWaiters.length === 0) timer.unref?.();
    this.timer = timer;
  }

  /** One attempt for the oldest events; updates the queue and the retry state from the answer. */
  private async send(queued: QueuedEvent[]): Promise<void> {
    const headers: Record<string, string> = { "content-type": "application/x-ndjson" };
    let credential: string | null;
    try {
      credential = await this.credential();
    } catch (cause) {
      this.inFlight = [];
      this.retryLater(
        null,
        new ScanClientError("unauthorized", `the token provider failed: ${String(cause)}`, { cause }),
      );
      return;
    }
    if (credential) headers.authorization = `Bearer ${credential}`;
    // sent_at is stamped after the token provider's wait, as close to the request as can be.
    const sentAt = new Date(this.now()).toISOString();
    const batch = buildBatch(queued, sentAt, queued.length, this.maxBytes, this.wireVersion);
    // The rest of the peeked events (over maxBytes) are no longer in flight: evictable.
    this.inFlight = batch.events;
    let body: Uint8Array = batch.body;
    if (body.byteLength > this.gzipAbove) {
      body = await gzip(body);
      headers["content-encoding"] = "gzip";
    }
    // One controller for close() and the timeout: AbortSignal.any is missing in Safari < 17.4 and
    // Chrome < 116, and its TypeError would be retried forever as a network error.
    const abort = new AbortController();
    this.abort = abort;
    const timeout = setTimeout(
      () => abort.abort(new ScanClientError("network", `no answer within ${REQUEST_TIMEOUT_MS} ms`)),
      REQUEST_TIMEOUT_MS,
    ) as Timer;
    timeout.unref?.();
    let res: Response;
    try {
      res = await this.fetchFn(`${this.endpoint}/v1/scans`, { method: "POST", headers, body, signal: abort.signal });
    } catch (cause) {
      clearTimeout(timeout);
      this.inFlight = [];
      if (this.closed) return;
      this.retryLater(
        null,
        new ScanClientError("network", `POST ${this.endpoint}/v1/scans failed: ${String(cause)}`, { cause }),
      );
      return;
    }
    try {
      await this.handle(res, batch);
    } finally {
      clearTimeout(timeout);
      this.inFlight = [];
    }
  }

  private async handle(res: Response, batch: Batch): Promise<void> {
    const status = res.status;
    const n = batch.events.length;
    const text = await res.text().catch(() => "");
    const answer = parseJson(text) as Partial<IngestAnswer & ErrorAnswer> | null;
    const where = `POST ${this.endpoint}/v1/scans (${n} events) answered ${status}`;
    const detail = answer?.error ? `: ${answer.error}` : "";

    if ((status === 202 || status === 400) && answer && Array.isArray(answer.rejected)) {
      if (this.wireVersion === 2 && answer.rejected.length > 0 && answer.rejected.every(onlyVersion2Fields)) {
        // An edge rolled back to contract version 1: not a verdict on these events. The rejected ones
        // are kept and resent (same event_id and scanned_at) without the version 2 fields.
        this.wireVersion = 1;
        this.report(
          new ScanClientError(
            "version_fallback",
            `${where}: the edge refuses sent_at/schema_version; sending contract version 1`,
            {
              status,
            },
          ),
        );
        const rejected = new Set(answer.rejected.map((r) => r.index));
        await this.settle(
          batch.events.filter((_, i) => !rejected.has(i)),
          [],
        );
        return;
      }
      // Per-event verdicts: the accepted ones are durable at the edge, the rejected ones are final.
      const refused: RefusedEvent[] = answer.rejected.flatMap((r) => {
        const q = batch.events[r.index];
        // 400 even inside a 202: the status of this event's own verdict, as if it was sent alone.
        return q ? [{ event: q.event, status: 400, errors: r.errors }] : [];
      });
      await this.settle(batch.events, refused);
      // Accepted, but the edge says the quota is spent (`RateLimit: "key";r=0;t=N`): wait before the next.
      const wait = serverWaitMs(res.headers);
      if (wait !== null) this.blockedUntil = performance.now() + Math.min(wait, this.maxMs);
      return;
    }
    if (status >= 200 && status < 300) {
      // Not the edge's answer (a captive portal's 200 page, a proxy): nothing says the events are stored.
      this.retryLater(null, new ScanClientError("bad_endpoint", `${where} without the edge's answer body`, { status }));
      return;
    }
    if (status === 401) {
      this.cachedToken = null;
      this.retryLater(
        null,
        new ScanClientError("unauthorized", `${where}${detail}; the credential is asked again`, { status }),
      );
      return;
    }
    if (status === 429 && !res.headers.has("retry-after")) {
      const max = parseMaxBatchEvents(res.headers.get("max-batch-events"));
      if (max !== null) {
        // Never accepted at this size: split, without waiting.
        this.learnedMax = Math.min(this.learnedMax, max);
        return;
      }
    }
    if (status === 408 || status === 429 || status >= 500) {
      const code = status >= 500 ? "server_error" : "rate_limited";
      this.retryLater(serverWaitMs(res.headers), new ScanClientError(code, `${where}${detail}`, { status }));
      return;
    }
    if (status === 404 || status === 405) {
      // Not the ingest route (a wrong endpoint): nothing was judged, so the events are kept.
      this.retryLater(null, new ScanClientError("bad_endpoint", `${where}${detail}; is endpoint right?`, { status }));
      return;
    }
    if ((status === 413 || status === 403) && n > 1) {
      if (status === 413) this.learnedMax = Math.ceil(n / 2);
      // 403 for one event's qr_id refuses the whole request: halve until the refused event is alone.
      else this.probeMax = Math.ceil(n / 2);
      return;
    }
    // Any other 4xx (and 403/413 for a single event) is final for these events.
    const errors: FieldError[] = [{ path: "", message: answer?.error ?? `HTTP ${status}` }];
    if (status === 403) this.probeMax = null;
    await this.settle(
      batch.events,
      batch.events.map((q) => ({ event: q.event, status, errors })),
    );
  }

  /** The edge judged these events: remove them all, count and report the refused ones. */
  private async settle(events: QueuedEvent[], refused: RefusedEvent[]): Promise<void> {
    // Reported before the removal is durable: a kill in between reports again (at least once) rather
    // than never.
    if (refused.length > 0) this.callback(() => this.options.onRefused?.(refused), "onRefused");
    await this.queue.remove(events.map((q) => q.seq));
    this.inFlight = [];
    this.attempt = 0;
    this.queuedCount -= events.length;
    this.sent += events.length - refused.length;
    this.refused += refused.length;
    await this.refreshHead();
  }

  private retryLater(serverWait: number | null, error: ScanClientError): void {
    const delay = serverWait ?? backoffMs(this.attempt, this.baseMs, this.maxMs);
    this.attempt++;
    // Capped: a Retry-After HTTP-date is read against the device clock, which may be far behind.
    this.blockedUntil = performance.now() + Math.min(delay, this.maxMs);
    this.report(error);
  }

  private async credential(): Promise<string | null> {
    if (this.options.token) {
      this.cachedToken ??= await this.options.token();
      return this.cachedToken;
    }
    return this.options.apiKey ?? null;
  }

  private evictOldest(): Promise<void> {
    const running = (this.peeking ?? Promise.resolve())
      .catch(() => {}) // the send loop's peek error is reported by the send loop
      .then(() => this.evictOldestNow());
    const settled: Promise<void> = running.then(
      () => this.clearEviction(settled),
      () => this.clearEviction(settled), // the error is the scan()'s, returned below
    );
    this.evictionRunning = settled;
    return running;
  }

  private clearEviction(done: Promise<void>): void {
    if (this.evictionRunning === done) this.evictionRunning = null;
  }

  private async evictOldestNow(): Promise<void> {
    const inFlight = new Set(this.inFlight.map((q) => q.seq));
    const excess = this.queuedCount - this.maxQueued + 1;
    const candidates = await this.queue.peek(inFlight.size + excess);
    const victims = candidates.filter((q) => !inFlight.has(q.seq)).slice(0, excess);
    if (victims.length === 0) throw new QueueFullError(this.maxQueued);
    // Reported before the removal is durable (at least once, as onRefused).
    this.callback(() => this.options.onEvicted?.(victims.map((q) => q.event)), "onEvicted");
    await this.queue.remove(victims.map((q) => q.seq));
    this.queuedCount -= victims.length;
    this.evicted += victims.length;
    await this.refreshHead();
  }

  private async refreshHead(): Promise<void> {
    const [head] = await this.queue.peek(1);
    this.head = head ?? null;
    const done = this.flushWaiters.filter((w) => this.head === null || this.head.seq > w.target);
    if (done.length === 0) return;
    this.flushWaiters = this.flushWaiters.filter((w) => !done.includes(w));
    for (const w of done) w.resolve();
  }

  /** Transient problems go to onError (or the console when the app gave none). */
  private report(error: ScanClientError): void {
    if (this.options.onError) this.callback(() => this.options.onError?.(error), "onError");
    else console.warn(`scan-client: ${error.message}`);
  }

  /** An app callback that throws is the app's bug: rethrown outside the send loop, not swallowed. */
  private callback(fn: () => void, name: string): void {
    try {
      fn();
    } catch (error) {
      queueMicrotask(() => {
        throw new Error(`scan-client: the app's ${name} callback threw`, { cause: error });
      });
    }
  }
}

/** A rejection whose every error is an unknown-field error on sent_at or schema_version (a version 1 edge). */
function onlyVersion2Fields(r: { errors?: FieldError[] }): boolean {
  return (
    Array.isArray(r.errors) &&
    r.errors.length > 0 &&
    r.errors.every((e) => /^unknown field "?(sent_at|schema_version)"?$/.test(e.message ?? ""))
  );
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null; // not JSON (a proxy's page): the status alone decides
  }
}

function asClientError(error: unknown): ScanClientError {
  return error instanceof ScanClientError
    ? error
    : new ScanClientError("journal_io", `send loop: ${String(error)}`, { cause: error });
}
