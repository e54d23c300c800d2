// Unit tests of the pure retry policy: backoff bounds and the edge's wait headers.
import { expect, test } from "bun:test";
import { backoffMs, parseMaxBatchEvents, parseRateLimit, parseRetryAfter, serverWaitMs } from "../src/retry.ts";

test("backoff: full jitter under a ceiling that doubles from baseMs and stops at maxMs", () => {
  expect(backoffMs(0, 500, 60_000, () => 0.999999)).toBe(499);
  expect(backoffMs(3, 500, 60_000, () => 0.5)).toBe(2_000);
  expect(backoffMs(20, 500, 60_000, () => 0.999999)).toBe(59_999);
  expect(backoffMs(5_000, 500, 60_000, () => 0.5)).toBe(30_000);
  expect(backoffMs(4, 500, 60_000, () => 0)).toBe(0);
});

test("Retry-After: seconds or an HTTP-date; null when absent or unreadable", () => {
  expect(parseRetryAfter("3")).toBe(3_000);
  expect(parseRetryAfter(" 0 ")).toBe(0);
  const now = Date.parse("2026-12-07T04:00:00Z");
  expect(parseRetryAfter("Mon, 07 Dec 2026 04:00:05 GMT", now)).toBe(5_000);
  expect(parseRetryAfter("Mon, 07 Dec 2026 03:00:00 GMT", now)).toBe(0);
  expect(parseRetryAfter(null)).toBeNull();
  expect(parseRetryAfter("soon")).toBeNull();
  expect(parseRetryAfter("-1")).toBeNull();
});

test("RateLimit field and Max-Batch-Events", () => {
  expect(parseRateLimit('"key";r=0;t=3')).toEqual({ r: 0, t: 3 });
  expect(parseRateLimit('"key";r=199000;t=1')).toEqual({ r: 199_000, t: 1 });
  expect(parseRateLimit('"key";q=5')).toBeNull();
  expect(parseMaxBatchEvents("50")).toBe(50);
  expect(parseMaxBatchEvents("0")).toBeNull();
  expect(parseMaxBatchEvents("x")).toBeNull();
});

test("serverWaitMs: Retry-After first, else RateLimit's t when r=0, else nothing", () => {
  expect(serverWaitMs(new Headers({ "retry-after": "2", ratelimit: '"key";r=0;t=9' }))).toBe(2_000);
  expect(serverWaitMs(new Headers({ ratelimit: '"key";r=0;t=4' }))).toBe(4_000);
  expect(serverWaitMs(new Headers({ ratelimit: '"key";r=7;t=4' }))).toBeNull();
  expect(serverWaitMs(new Headers())).toBeNull();
});
