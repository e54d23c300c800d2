// Realistic scan traffic against POST /v1/scans, for the dev demo and the crash suite: many QR
// codes with a skewed (Zipf) popularity, periodic bursts, a few invalid events and duplicates.
// Remembers every event id that a 202 acknowledged, so a check can prove none was lost. With
// resendOnFailure it behaves like a scanner that retries: a request answered 408, 429, 5xx or cut
// off is sent again, the same events (same event_id), until a 202 or until stopped.

export interface TrafficOptions {
  url: string;
  apiKey?: string;
  /** Events per second outside bursts. */
  rate: number;
  /** Events per request (1 = single-event requests). */
  batchSize?: number;
  qrCodes?: number;
  /** Share of events that are invalid (rejected by the edge, never acknowledged). */
  invalidRatio?: number;
  /** Share of events that repeat an earlier event id (a client retry). */
  duplicateRatio?: number;
  /**
   * Share of events drawn from ADVERSARIAL: values at the edge of what Postgres stores (offsets
   * of ±15:59, sub-microsecond fractions, lone surrogates, reserved keys…), valid or not. Whatever
   * the edge answers decides what counts as acknowledged.
   */
  adversarialRatio?: number;
  /** Every `burstEveryS` seconds, `burstFactor` × the rate for `burstForS` seconds. */
  burstEveryS?: number;
  burstForS?: number;
  burstFactor?: number;
  /**
   * Resend the SAME batch (same event ids) after `delayMs` when a request is answered 408, 429 or
   * 5xx or fails without an answer, until it is acknowledged; stop() then waits for the resends
   * (at most `giveUpMs` after it is called). Off by default: each request is sent once.
   */
  resendOnFailure?: { delayMs?: number; giveUpMs?: number };
  /** Each answer (or "error") as it arrives: for timelines, e.g. when answers turned 202 again. */
  onAnswer?: (status: string, at: number) => void;
}

export interface TrafficStats {
  requests: number;
  accepted: number;
  rejected: number;
  statuses: Record<string, number>;
  /** Distinct event ids acknowledged with 202 (the ones that must end up in Postgres). */
  acknowledged: Set<string>;
  /** With resendOnFailure: requests sent again, and the event ids of batches that needed it. */
  resends: number;
  resent: Set<string>;
  /** With resendOnFailure: batches still not acknowledged when stop() gave up. */
  abandoned: number;
}

const TICK_MS = 100;

/** `now` written in a UTC offset of `sign` hours:minutes (the same instant). */
function inOffset(now: number, sign: 1 | -1, hours: number, minutes: number): string {
  const local = new Date(now + sign * (hours * 60 + minutes) * 60_000).toISOString().slice(0, 19);
  return `${local}${sign > 0 ? "+" : "-"}${String(hours).padStart(2, "0")}:${String(minutes).padStart(2, "0")}`;
}

/** Events at the edge of what Postgres stores; some valid, some not (the edge decides). */
export const ADVERSARIAL: ((base: Record<string, unknown>, now: number) => Record<string, unknown>)[] = [
  (b, now) => ({ ...b, scanned_at: inOffset(now, 1, 15, 59) }),
  (b, now) => ({ ...b, scanned_at: inOffset(now, -1, 15, 59) }),
  (b, now) => ({ ...b, scanned_at: inOffset(now, 1, 16, 0) }),
  (b, now) => ({ ...b, scanned_at: new Date(now).toISOString().replace("Z", "9999995Z") }),
  (b) => ({ ...b, event_id: String(b.event_id).toUpperCase() }),
  (b) => ({ ...b, attributes: { emoji: "😀", rtl: "שלום", esc: '\t\n\\"', sep: "\u2028", bom: "\ufeff" } }),
  (b) => ({ ...b, attributes: { gate: "A\ud800" } }),
  (b) => ({ ...b, scanner_id: "gun\u0000" }),
  (b) => ({ ...b, attributes: JSON.parse('{"__proto__":"x"}') }),
  (b) => ({ ...b, location: { lat: 90, lon: -180, accuracy_m: 5e-324 } }),
  (b) => ({ ...b, scanned_at: "2026-02-30T00:00:00Z" }),
  (b) => ({ ...b, user_agent: "x".repeat(512) }),
];

/** Zipf-like popularity: QR code k is picked with weight 1/(k+1). */
function zipfPicker(n: number): () => number {
  const cumulative = new Float64Array(n);
  let total = 0;
  for (let k = 0; k < n; k++) {
    total += 1 / (k + 1);
    cumulative[k] = total;
  }
  return () => {
    const x = Math.random() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cumulative[mid] as number) < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export function startTraffic(o: TrafficOptions) {
  const batchSize = o.batchSize ?? 20;
  const pick = zipfPicker(o.qrCodes ?? 2_000);
  const stats: TrafficStats = {
    requests: 0,
    accepted: 0,
    rejected: 0,
    statuses: {},
    acknowledged: new Set(),
    resends: 0,
    resent: new Set(),
    abandoned: 0,
  };
  let giveUpAt = Number.POSITIVE_INFINITY;
  const recent: Record<string, unknown>[] = [];
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (o.apiKey) headers.authorization = `Bearer ${o.apiKey}`;
  const inflight = new Set<Promise<void>>();
  let stopped = false;
  const started = Date.now();

  const makeEvent = (): Record<string, unknown> => {
    const r = Math.random();
    if (r < (o.invalidRatio ?? 0.02)) {
      return { event_id: "not-a-uuid", qr_id: "bad qr id", scanned_at: "yesterday" };
    }
    if (r < (o.invalidRatio ?? 0.02) + (o.duplicateRatio ?? 0.01) && recent.length > 0) {
      return recent[Math.floor(Math.random() * recent.length)] as Record<string, unknown>;
    }
    let event: Record<string, unknown> = {
      event_id: crypto.randomUUID(),
      qr_id: `QR-${pick()}`,
      scanned_at: new Date().toISOString(),
      scanner_id: `gate-${Math.floor(Math.random() * 40)}`,
    };
    if (Math.random() < (o.adversarialRatio ?? 0)) {
      const make = ADVERSARIAL[Math.floor(Math.random() * ADVERSARIAL.length)] as (typeof ADVERSARIAL)[number];
      event = make(event, Date.now());
    }
    recent.push(event);
    if (recent.length > 1_000) recent.shift();
    return event;
  };

  /** One attempt; the answer's status, or "error" when the request got none. */
  const attempt = async (batch: Record<string, unknown>[]): Promise<string> => {
    let status = "error";
    try {
      const res = await fetch(`${o.url}/v1/scans`, {
        method: "POST",
        headers,
        body: JSON.stringify(batch),
      });
      status = String(res.status);
      const body = (await res.json().catch(() => null)) as {
        accepted?: number;
        rejected?: { index: number }[];
      } | null;
      if (res.status === 202) {
        // Acknowledged: every event of a 202 that the edge did not list as rejected (ids are
        // stored lower-case, as Postgres' uuid returns them).
        const refused = new Set(body?.rejected?.map((x) => x.index));
        batch.forEach((b, i) => {
          if (!refused.has(i)) stats.acknowledged.add(String(b.event_id).toLowerCase());
        });
        stats.accepted += body?.accepted ?? 0;
        stats.rejected += body?.rejected?.length ?? 0;
      }
    } catch {
      status = "error"; // refused/reset while a component is down: counted per status, never acknowledged
    }
    stats.requests++;
    stats.statuses[status] = (stats.statuses[status] ?? 0) + 1;
    o.onAnswer?.(status, Date.now());
    return status;
  };

  const retriable = (status: string) => status === "error" || status === "408" || status === "429" || status[0] === "5";
  const send = async (batch: Record<string, unknown>[]) => {
    let status = await attempt(batch);
    if (!o.resendOnFailure || !retriable(status)) return;
    for (const b of batch) stats.resent.add(String(b.event_id).toLowerCase());
    while (retriable(status)) {
      if (Date.now() >= giveUpAt) {
        stats.abandoned++;
        return;
      }
      await Bun.sleep(o.resendOnFailure.delayMs ?? 100);
      stats.resends++;
      // The same objects: a retry is the same events, never new ids.
      status = await attempt(batch);
    }
  };

  const loop = (async () => {
    let carry = 0;
    while (!stopped) {
      const t = (Date.now() - started) / 1000;
      const burst = o.burstEveryS && t % o.burstEveryS < (o.burstForS ?? 2) ? (o.burstFactor ?? 3) : 1;
      carry += (o.rate * burst * TICK_MS) / 1000;
      while (carry >= batchSize) {
        carry -= batchSize;
        const p = send(Array.from({ length: batchSize }, makeEvent));
        inflight.add(p);
        p.finally(() => inflight.delete(p));
      }
      await Bun.sleep(TICK_MS);
    }
  })();

  return {
    stats,
    /** Stops sending and waits for the requests in flight. */
    async stop() {
      stopped = true;
      giveUpAt = Date.now() + (o.resendOnFailure?.giveUpMs ?? 30_000);
      await loop;
      await Promise.all(inflight);
      return stats;
    },
  };
}
