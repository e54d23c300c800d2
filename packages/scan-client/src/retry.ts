// Pure retry policy: capped exponential backoff with full jitter, and the waits the edge asks for
// (Retry-After, the RateLimit field, Max-Batch-Events). Kept free of I/O so unit tests cover it.

/** Full jitter: a uniform wait in [0, min(maxMs, baseMs * 2^attempt)). attempt counts from 0. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Retry-After as ms: delay-seconds or an HTTP-date (RFC 9110); null when absent or unreadable. */
export function parseRetryAfter(value: string | null, nowMs: number = Date.now()): number | null {
  if (value === null) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // An HTTP-date names its day and month ("Mon, 07 Dec 2026 04:00:05 GMT"); "-1" is not one.
  const date = /[a-z]/i.test(v) ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(date)) return null;
  return Math.max(0, date - nowMs);
}

/** The RateLimit field (draft-ietf-httpapi-ratelimit-headers-10): `"key";r=0;t=3` -> {r: 0, t: 3}. */
export function parseRateLimit(value: string | null): { r: number; t: number } | null {
  if (value === null) return null;
  const r = /(?:^|;)\s*r=(\d+)/.exec(value);
  const t = /(?:^|;)\s*t=(\d+)/.exec(value);
  if (!r || !t) return null;
  return { r: Number(r[1]), t: Number(t[1]) };
}

/** Max-Batch-Events: B as a positive integer, else null. */
export function parseMaxBatchEvents(value: string | null): number | null {
  if (value === null || !/^\s*\d+\s*$/.test(value)) return null;
  const n = Number(value);
  return n >= 1 ? n : null;
}

/**
 * How long the edge asked us to wait (ms), or null if it did not say: Retry-After first, else the
 * RateLimit field's reset time `t` when nothing is left (`r=0`).
 */
export function serverWaitMs(headers: Headers, nowMs: number = Date.now()): number | null {
  const retryAfter = parseRetryAfter(headers.get("retry-after"), nowMs);
  if (retryAfter !== null) return retryAfter;
  const limit = parseRateLimit(headers.get("ratelimit"));
  if (limit && limit.r === 0) return limit.t * 1000;
  return null;
}
