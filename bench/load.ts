// Load generator for POST /v1/scans, for capacity planners. Runs as its own process; works against
// a local or remote deployment (http or https, HTTP/1.1 keep-alive).
//
//   bun bench/load.ts --url http://127.0.0.1:8080 [--scenario single|batch|ndjson] [--batch 100]
//                     [--concurrency 64] [--duration 10] [--rate 0] [--api-key KEY] [--origin URL]
//                     [--out file.json]
//                     [--acked-out ids.txt]   (event ids answered 202, one per line)
//
// Closed loop (default): `concurrency` connections send back to back; measures the maximum rate.
// Open loop (--rate R requests/s): requests are due at fixed times and latency is measured from
// when each was due, not when it was sent, so a stalled server cannot hide its queueing
// (coordinated omission); connections are opened as requests wait for one (at most 256).
// Prints a summary, with the generator's own CPU per event, and, with --out, writes it as JSON.
//
// It must cost little beside what it measures (it shares the box with the pipeline): each
// connection renders its request once (head and body as bytes, fixed-width fields) and patches
// the ids, QR codes and timestamp in place per request; requests go over raw keep-alive sockets
// (Bun's fetch cost 25-50 µs of CPU per 10-event request); results go into preallocated typed
// arrays, ids are kept as the first counter of each acknowledged request and written out at the end.
import { writeFileSync } from "node:fs";
import type { Socket } from "bun";
import { arg, numArg } from "./lib.ts";

export type Scenario = "single" | "batch" | "ndjson";

export interface LoadOptions {
  url: string;
  scenario: Scenario;
  batch: number;
  concurrency: number;
  durationS: number;
  /** Requests per second for an open-loop run; 0 means closed loop. */
  rate: number;
  apiKey?: string;
  /** Sent as the Origin header (exercises the CORS path). */
  origin?: string;
  /** Collects the event ids of every 202 (all events the generator makes are valid). */
  acknowledged?: string[];
}

export interface LoadResult {
  scenario: Scenario;
  mode: "closed" | "open";
  offered_rps: number | null;
  requests: number;
  events: number;
  rps: number;
  events_per_s: number;
  error_rate: number;
  /** By HTTP status; "error" is a request without an answer (connection refused, reset or closed). */
  statuses: Record<string, number>;
  latency_ms: { p50: number; p95: number; p99: number; max: number };
  duration_s: number;
  /** Answers carrying Retry-After (429, 503) and the largest value in seconds (delta-seconds form). */
  retry_after: { responses: number; max_s: number };
  /** The generator's own CPU (user + system, all its threads) over the run, and per event sent. */
  generator: { cpu_s: number; us_per_event: number; connections: number };
  /** Per second of the run (by when requests were due): requests, non-202s, latency percentiles. */
  timeline: { t: number; requests: number; errors: number; p50: number; p95: number; p99: number }[];
}

/** Open loop: connections opened as requests wait, up to this many (Bun's fetch pooled as many). */
export const MAX_OPEN_LOOP_CONNECTIONS = 256;
/** In-flight requests still unanswered this long after the run are counted as errors. */
const DRAIN_TIMEOUT_MS = 60_000;

const HEX = new TextEncoder().encode("0123456789abcdef");
const ID_DIGITS = 12;
/** Bytes of the QR code's number slot: up to 4 digits, the closing quote, then JSON whitespace. */
const QR_SLOT = 5;
const QR_CODES = 5000;
const TIMESTAMP_BYTES = 24; // Date#toISOString(): 2026-01-31T12:00:00.000Z

/**
 * This run's event ids: a random 24-character prefix (64 random bits, so runs against one
 * database never collide) and a 12-hex-digit counter, unique within the run.
 */
export function idPrefix(): string {
  const r = crypto.getRandomValues(new Uint8Array(8));
  const h = Buffer.from(r).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(12, 15)}-8${h.slice(15, 16)}${h.slice(0, 2)}-`;
}

export const eventIdOf = (prefix: string, n: number) => `${prefix}${n.toString(16).padStart(ID_DIGITS, "0")}`;

/** The QR code of event number n: spread over QR-0 … QR-4999 (the e2e observer samples every 100th). */
export const qrNumberOf = (n: number) => ((n % 4294967296) * 7919) % QR_CODES;

/**
 * One request (head and body) rendered once as bytes, with every variable field fixed-width, so a
 * request is made by patching its events' counters, QR numbers and the timestamp in place.
 */
export class RequestTemplate {
  readonly bytes: Uint8Array;
  readonly events: number;
  readonly bodyStart: number;
  private readonly idAt: Int32Array;
  private readonly qrAt: Int32Array;
  private readonly tsAt: Int32Array;

  constructor(o: {
    scenario: Scenario;
    batch: number;
    prefix: string;
    host: string;
    path: string;
    apiKey?: string;
    origin?: string;
  }) {
    this.events = o.scenario === "single" ? 1 : o.batch;
    const ts = "0".repeat(TIMESTAMP_BYTES);
    const head = '{"event_id":"';
    const afterId = '","qr_id":"QR-';
    const afterQr = ',"scanned_at":"';
    const tail = '","scanner_id":"bench"}';
    const parts: string[] = [];
    const idAt: number[] = [];
    const qrAt: number[] = [];
    const tsAt: number[] = [];
    let at = 0;
    const push = (s: string) => {
      parts.push(s);
      at += Buffer.byteLength(s);
    };
    if (o.scenario === "batch") push("[");
    for (let i = 0; i < this.events; i++) {
      if (i > 0) push(o.scenario === "ndjson" ? "\n" : ",");
      push(head);
      push(o.prefix);
      idAt.push(at);
      push("0".repeat(ID_DIGITS));
      push(afterId);
      qrAt.push(at);
      push(`0"${" ".repeat(QR_SLOT - 2)}`);
      push(afterQr);
      tsAt.push(at);
      push(ts);
      push(tail);
    }
    if (o.scenario === "batch") push("]");
    const body = parts.join("");
    const contentType = o.scenario === "ndjson" ? "application/x-ndjson" : "application/json";
    const auth = o.apiKey ? `Authorization: Bearer ${o.apiKey}\r\n` : "";
    const origin = o.origin ? `Origin: ${o.origin}\r\n` : "";
    const requestHead =
      `POST ${o.path} HTTP/1.1\r\nHost: ${o.host}\r\nContent-Type: ${contentType}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n${auth}${origin}\r\n`;
    this.bodyStart = Buffer.byteLength(requestHead);
    this.bytes = new Uint8Array(Buffer.from(requestHead + body));
    const shift = (xs: number[]) => Int32Array.from(xs, (x) => x + this.bodyStart);
    this.idAt = shift(idAt);
    this.qrAt = shift(qrAt);
    this.tsAt = shift(tsAt);
  }

  /** Events first … first + events - 1, all scanned at `timestamp` (24 ASCII bytes). */
  fill(first: number, timestamp: Uint8Array): Uint8Array {
    const b = this.bytes;
    for (let i = 0; i < this.events; i++) {
      const n = first + i;
      // 12 hex digits: the low 32 bits, then the next 16.
      let lo = n >>> 0;
      let hi = Math.floor(n / 4294967296);
      let p = (this.idAt[i] as number) + ID_DIGITS - 1;
      for (let k = 0; k < 8; k++) {
        b[p--] = HEX[lo & 15] as number;
        lo >>>= 4;
      }
      for (let k = 0; k < 4; k++) {
        b[p--] = HEX[hi & 15] as number;
        hi >>>= 4;
      }
      let q = qrNumberOf(n);
      let w = this.qrAt[i] as number;
      const digits = q >= 1000 ? 4 : q >= 100 ? 3 : q >= 10 ? 2 : 1;
      for (let k = digits - 1; k >= 0; k--) {
        b[w + k] = 48 + (q % 10);
        q = Math.floor(q / 10);
      }
      w += digits;
      b[w++] = 34; // "
      for (let k = digits + 1; k < QR_SLOT; k++) b[w++] = 32;
      b.set(timestamp, this.tsAt[i] as number);
    }
    return b;
  }
}

/** What parseResponse found: the status, whether the server closes, Retry-After (-1: none). */
export interface ParsedResponse {
  /** Bytes the response took; -1 while it is incomplete. */
  length: number;
  status: number;
  close: boolean;
  retryAfterS: number;
}

const CRLFCRLF = Buffer.from("\r\n\r\n");
const CRLF = Buffer.from("\r\n");

/** Is the header name at buf[start, end) `name` (lower case, ASCII), ignoring case? */
function headerIs(buf: Uint8Array, start: number, end: number, name: Uint8Array): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) if (((buf[start + i] as number) | 0x20) !== name[i]) return false;
  return true;
}
const CONTENT_LENGTH = new TextEncoder().encode("content-length");
const TRANSFER_ENCODING = new TextEncoder().encode("transfer-encoding");
const CONNECTION = new TextEncoder().encode("connection");
const RETRY_AFTER = new TextEncoder().encode("retry-after");

/** Decimal digits at buf[i, end) after optional spaces; -1 if none. */
function decimalAt(buf: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end && buf[i] === 32) i++;
  let n = -1;
  for (; i < end; i++) {
    const c = buf[i] as number;
    if (c < 48 || c > 57) break;
    n = (n < 0 ? 0 : n * 10) + c - 48;
  }
  return n;
}

/** Does buf[i, end) contain `word` (lower case), ignoring case? (For "chunked" and "close".) */
function valueHas(buf: Uint8Array, i: number, end: number, word: string): boolean {
  outer: for (let s = i; s + word.length <= end; s++) {
    for (let k = 0; k < word.length; k++) if (((buf[s + k] as number) | 0x20) !== word.charCodeAt(k)) continue outer;
    return true;
  }
  return false;
}

/**
 * Parses one HTTP/1.1 response at the start of `buf` (Content-Length or chunked bodies; without
 * either, the body runs to the connection's close, so `close` is set and the length is all of buf).
 * Writes into `out` and returns it; out.length is -1 while the response is incomplete.
 */
export function parseResponse(buf: Buffer, out: ParsedResponse): ParsedResponse {
  out.length = -1;
  const headEnd = buf.indexOf(CRLFCRLF);
  if (headEnd < 0) return out;
  out.status = ((buf[9] as number) - 48) * 100 + ((buf[10] as number) - 48) * 10 + ((buf[11] as number) - 48);
  out.close = buf[7] === 48; // HTTP/1.0 closes unless told otherwise
  out.retryAfterS = -1;
  let contentLength = -1;
  let chunked = false;
  let line = buf.indexOf(10, 0) + 1;
  while (line < headEnd) {
    let eol = buf.indexOf(13, line);
    if (eol < 0 || eol > headEnd) eol = headEnd;
    const colon = buf.indexOf(58, line);
    if (colon > 0 && colon < eol) {
      const c = (buf[line] as number) | 0x20;
      if (c === 99 /* c */) {
        if (headerIs(buf, line, colon, CONTENT_LENGTH)) contentLength = decimalAt(buf, colon + 1, eol);
        else if (headerIs(buf, line, colon, CONNECTION)) out.close = valueHas(buf, colon + 1, eol, "close");
      } else if (c === 116 /* t */ && headerIs(buf, line, colon, TRANSFER_ENCODING)) {
        chunked = valueHas(buf, colon + 1, eol, "chunked");
      } else if (c === 114 /* r */ && headerIs(buf, line, colon, RETRY_AFTER)) {
        out.retryAfterS = Math.max(0, decimalAt(buf, colon + 1, eol));
      }
    }
    line = eol + 2;
  }
  const bodyStart = headEnd + 4;
  const status = out.status;
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
    out.length = bodyStart;
  } else if (chunked) {
    let i = bodyStart;
    for (;;) {
      const eol = buf.indexOf(CRLF, i);
      if (eol < 0) return out;
      let size = 0;
      for (let k = i; k < eol; k++) {
        const h = (buf[k] as number) | 0x20;
        const d = h >= 48 && h <= 57 ? h - 48 : h >= 97 && h <= 102 ? h - 87 : -1;
        if (d < 0) break; // chunk extensions
        size = size * 16 + d;
      }
      if (size === 0) {
        // The last chunk, then trailers (assumed none) and the final CRLF.
        if (buf.length < eol + 4) return out;
        out.length = eol + 4;
        break;
      }
      i = eol + 2 + size + 2;
      if (buf.length < i) return out;
    }
  } else if (contentLength >= 0) {
    if (buf.length < bodyStart + contentLength) return out;
    out.length = bodyStart + contentLength;
  } else {
    out.close = true;
    out.length = buf.length;
  }
  return out;
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/** A keep-alive connection and the request it carries (one at a time: no pipelining). */
interface Conn {
  socket: Socket<Conn> | null;
  template: RequestTemplate;
  request: Uint8Array;
  written: number;
  busy: boolean;
  dead: boolean;
  due: number;
  first: number;
  /** Bytes of an incomplete response (rare: answers are small and arrive in one read). */
  pending: Buffer | null;
}

/** A growable array of doubles: amortised doubling, no allocation per element. */
class Doubles {
  a: Float64Array;
  n = 0;
  constructor(capacity: number) {
    this.a = new Float64Array(Math.max(16, capacity));
  }
  push(x: number) {
    if (this.n === this.a.length) {
      const b = new Float64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = x;
  }
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const target = new URL(`${o.url.replace(/\/$/, "")}/v1/scans`);
  const tls = target.protocol === "https:";
  const port = Number(target.port || (tls ? 443 : 80));
  const prefix = idPrefix();
  const templateOptions = {
    scenario: o.scenario,
    batch: o.batch,
    prefix,
    host: target.host,
    path: target.pathname + target.search,
    apiKey: o.apiKey,
    origin: o.origin,
  };
  const perRequest = o.scenario === "single" ? 1 : o.batch;
  const open = o.rate > 0;
  const maxConnections = open ? MAX_OPEN_LOOP_CONNECTIONS : o.concurrency;

  // Per request, in completion order: latency, the second it was due in, its status (0: no answer).
  // Sized for the run (capped: they grow by doubling past it).
  const expected = Math.min(1 << 22, open ? Math.ceil(o.rate * o.durationS) + 16 : 1 << 16);
  const latencies = new Doubles(expected);
  const seconds = new Doubles(expected);
  const codes = new Doubles(expected);
  /** The first event counter of each request answered 202 (its events are first … first + perRequest - 1). */
  const acked = new Doubles(o.acknowledged ? expected : 0);
  const byStatus = new Float64Array(600);
  const retryAfter = { responses: 0, max_s: 0 };
  let events = 0;
  let counter = 0;
  let connectionsOpened = 0;

  // scanned_at: now, re-rendered at most once per millisecond.
  const timestamp = new Uint8Array(TIMESTAMP_BYTES);
  const encoder = new TextEncoder();
  let timestampMs = -1;
  const now = () => {
    const ms = Date.now();
    if (ms !== timestampMs) {
      timestampMs = ms;
      encoder.encodeInto(new Date(ms).toISOString(), timestamp);
    }
    return timestamp;
  };

  const conns = new Set<Conn>();
  const idle: Conn[] = [];
  let connecting = 0;
  let inFlight = 0;
  /** Open loop: due times of requests waiting for a connection (a FIFO ring). */
  let waiting = new Float64Array(1024);
  let waitHead = 0;
  let waitLen = 0;
  let schedulingDone = false;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });

  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const endAt = started + o.durationS * 1000;

  const record = (due: number, status: number) => {
    latencies.push(performance.now() - due);
    seconds.push(Math.max(0, Math.floor((due - started) / 1000)));
    codes.push(status);
    byStatus[status] = (byStatus[status] as number) + 1;
  };

  const maybeFinish = () => {
    if (schedulingDone && inFlight === 0 && waitLen === 0) finish();
  };

  const send = (c: Conn, due: number) => {
    c.busy = true;
    c.due = due;
    c.first = counter;
    counter += perRequest;
    inFlight++;
    c.request = c.template.fill(c.first, now());
    c.written = Math.max(0, (c.socket as Socket<Conn>).write(c.request));
  };

  /** The connection is free: the next waiting request, the next closed-loop one, or idle. */
  const free = (c: Conn) => {
    c.busy = false;
    if (c.dead) return;
    if (waitLen > 0) {
      const due = waiting[waitHead] as number;
      waitHead = (waitHead + 1) % waiting.length;
      waitLen--;
      send(c, due);
    } else if (!open && performance.now() < endAt) {
      send(c, performance.now());
    } else {
      idle.push(c);
    }
  };

  const complete = (c: Conn, status: number) => {
    inFlight--;
    record(c.due, status);
    if (status === 202) {
      events += perRequest;
      if (o.acknowledged) acked.push(c.first);
    }
  };

  const parsed: ParsedResponse = { length: -1, status: 0, close: false, retryAfterS: -1 };
  const drop = (c: Conn) => {
    if (c.dead) return;
    c.dead = true;
    conns.delete(c);
    if (c.busy) {
      c.busy = false;
      complete(c, 0);
    }
    c.socket?.end();
    c.socket = null;
    ensureConnections();
    maybeFinish();
  };

  const handlers = {
    open(s: Socket<Conn>) {
      s.setNoDelay(true);
    },
    data(s: Socket<Conn>, chunk: Buffer) {
      const c = s.data;
      if (!c.busy) return; // nothing asked: ignore (a server's stray bytes)
      const buf = c.pending ? Buffer.concat([c.pending, chunk]) : chunk;
      const r = parseResponse(buf, parsed);
      if (r.length < 0) {
        c.pending = c.pending ? buf : Buffer.from(chunk); // Bun may reuse `chunk`
        return;
      }
      c.pending = null;
      if (r.retryAfterS >= 0) {
        retryAfter.responses++;
        retryAfter.max_s = Math.max(retryAfter.max_s, r.retryAfterS);
      }
      if (r.close) {
        complete(c, r.status);
        c.busy = false;
        drop(c);
        return;
      }
      complete(c, r.status);
      free(c);
      maybeFinish();
    },
    drain(s: Socket<Conn>) {
      const c = s.data;
      if (c.busy && c.written < c.request.length) c.written += Math.max(0, s.write(c.request, c.written));
    },
    close(s: Socket<Conn>) {
      drop(s.data);
    },
    error(s: Socket<Conn>) {
      drop(s.data);
    },
  };

  const connect = () => {
    connecting++;
    connectionsOpened++;
    const c: Conn = {
      socket: null,
      template: new RequestTemplate(templateOptions),
      request: new Uint8Array(0),
      written: 0,
      busy: false,
      dead: false,
      due: 0,
      first: 0,
      pending: null,
    };
    Bun.connect<Conn>({ hostname: target.hostname, port, tls, data: c, socket: handlers }).then(
      (socket) => {
        connecting--;
        c.socket = socket;
        conns.add(c);
        free(c);
        maybeFinish();
      },
      () => {
        // Refused or unreachable: the request it was opened for fails (as fetch's would).
        connecting--;
        if (waitLen > 0) {
          const due = waiting[waitHead] as number;
          waitHead = (waitHead + 1) % waiting.length;
          waitLen--;
          record(due, 0);
        } else if (!open && performance.now() < endAt) {
          record(performance.now(), 0);
        }
        ensureConnections();
        maybeFinish();
      },
    );
  };

  /** Open loop: a connection per waiting request, up to the cap; closed loop: `concurrency`. */
  const ensureConnections = () => {
    if (open) {
      while (waitLen > connecting && conns.size + connecting < maxConnections) connect();
    } else if (performance.now() < endAt) {
      while (conns.size + connecting < maxConnections) connect();
    }
  };

  const dispatch = (due: number) => {
    let c = idle.pop();
    while (c?.dead) c = idle.pop();
    if (c) {
      send(c, due);
      return;
    }
    if (waitLen === waiting.length) {
      const bigger = new Float64Array(waiting.length * 2);
      for (let i = 0; i < waitLen; i++) bigger[i] = waiting[(waitHead + i) % waiting.length] as number;
      waiting = bigger;
      waitHead = 0;
    }
    waiting[(waitHead + waitLen) % waiting.length] = due;
    waitLen++;
    ensureConnections();
  };

  if (open) {
    const interval = 1000 / o.rate;
    let next = started;
    const tick = () => {
      const t = performance.now();
      while (next <= t && next < endAt) {
        dispatch(next);
        next += interval;
      }
      if (next < endAt) setTimeout(tick, Math.max(0, next - performance.now()));
      else {
        schedulingDone = true;
        maybeFinish();
      }
    };
    tick();
  } else {
    ensureConnections();
    setTimeout(
      () => {
        schedulingDone = true;
        maybeFinish();
      },
      Math.max(0, endAt - performance.now()),
    );
  }
  // A server that never answers must not hang the run: past the drain timeout, what is still in
  // flight or waiting is counted as unanswered.
  const deadline = setTimeout(
    () => {
      for (const c of [...conns]) drop(c);
      while (waitLen > 0) {
        record(waiting[waitHead] as number, 0);
        waitHead = (waitHead + 1) % waiting.length;
        waitLen--;
      }
      finish();
    },
    o.durationS * 1000 + DRAIN_TIMEOUT_MS,
  );
  await finished;
  clearTimeout(deadline);
  const elapsed = (performance.now() - started) / 1000;
  for (const c of conns) {
    c.dead = true;
    c.socket?.end();
  }
  const cpu = process.cpuUsage(cpuBefore);
  const cpuS = (cpu.user + cpu.system) / 1e6;

  if (o.acknowledged) {
    for (let i = 0; i < acked.n; i++) {
      const first = acked.a[i] as number;
      for (let j = 0; j < perRequest; j++) o.acknowledged.push(eventIdOf(prefix, first + j));
    }
  }
  const count = latencies.n;
  const sorted = latencies.a.slice(0, count).sort();
  const statuses: Record<string, number> = {};
  for (let s = 0; s < byStatus.length; s++)
    if (byStatus[s]) statuses[s === 0 ? "error" : String(s)] = byStatus[s] as number;
  const errors = count - (byStatus[202] as number);
  const round = (x: number) => Math.round(x * 100) / 100;
  // The timeline: requests grouped by the second they were due in.
  const perSecond = new Map<number, number[]>();
  const errorsPerSecond = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    const t = seconds.a[i] as number;
    const xs = perSecond.get(t);
    if (xs) xs.push(latencies.a[i] as number);
    else perSecond.set(t, [latencies.a[i] as number]);
    if (codes.a[i] !== 202) errorsPerSecond.set(t, (errorsPerSecond.get(t) ?? 0) + 1);
  }
  const lastSecond = Math.max(-1, ...perSecond.keys());
  const sent = counter;
  return {
    scenario: o.scenario,
    mode: open ? "open" : "closed",
    offered_rps: open ? o.rate : null,
    requests: count,
    events,
    rps: Math.round(count / elapsed),
    events_per_s: Math.round(events / elapsed),
    error_rate: count ? round(errors / count) : 0,
    statuses,
    latency_ms: {
      p50: round(percentile(sorted, 50)),
      p95: round(percentile(sorted, 95)),
      p99: round(percentile(sorted, 99)),
      max: round(sorted[count - 1] ?? Number.NaN),
    },
    duration_s: round(elapsed),
    retry_after: retryAfter,
    generator: {
      cpu_s: round(cpuS),
      us_per_event: sent ? round((cpuS * 1e6) / sent) : 0,
      connections: connectionsOpened,
    },
    timeline: Array.from({ length: lastSecond + 1 }, (_, t) => {
      const s = Float64Array.from(perSecond.get(t) ?? []).sort();
      return {
        t,
        requests: s.length,
        errors: errorsPerSecond.get(t) ?? 0,
        p50: round(percentile(s, 50)),
        p95: round(percentile(s, 95)),
        p99: round(percentile(s, 99)),
      };
    }),
  };
}

/**
 * Runs the load generator (bench/load.ts) in its own process, so its CPU is not the measured
 * process's, and returns its result line.
 */
export async function runLoadProcess(
  url: string,
  scenario: string,
  { duration, concurrency, extra = [] }: { duration: number; concurrency: number; extra?: string[] },
): Promise<LoadResult> {
  const proc = Bun.spawn(
    [
      "bun",
      "bench/load.ts",
      "--url",
      url,
      "--scenario",
      scenario,
      "--duration",
      String(duration),
      "--concurrency",
      String(concurrency),
      ...extra,
    ],
    { cwd: new URL("..", import.meta.url).pathname, stdout: "pipe", stderr: "inherit" },
  );
  const out = await new Response(proc.stdout).text();
  if ((await proc.exited) !== 0) throw new Error(`load generator failed for ${scenario}`);
  return JSON.parse(out.trim().split("\n").at(-1) as string) as LoadResult;
}

if (import.meta.main) {
  const scenario = arg("scenario", "single") as Scenario;
  if (!["single", "batch", "ndjson"].includes(scenario)) throw new Error("--scenario must be single, batch or ndjson");
  const ackedOut = arg("acked-out", "");
  const acknowledged: string[] = [];
  const result = await runLoad({
    // Collected only when asked for: a long closed-loop run would otherwise hold millions of ids.
    acknowledged: ackedOut ? acknowledged : undefined,
    url: arg("url", "http://127.0.0.1:8080"),
    scenario,
    batch: numArg("batch", 100),
    concurrency: numArg("concurrency", 64),
    durationS: numArg("duration", 10),
    rate: numArg("rate", 0),
    apiKey: arg("api-key", process.env.API_KEY ?? "") || undefined,
    origin: arg("origin", "") || undefined,
  });
  const out = arg("out", "");
  if (out) writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  if (ackedOut) writeFileSync(ackedOut, acknowledged.join("\n"));
  console.log(JSON.stringify(result));
}
