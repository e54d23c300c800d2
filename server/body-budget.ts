// A process-wide budget for request bodies being received, so many slow uploads cannot grow the
// server's memory without bound: MAX_BODY_BYTES bounds one body, this bounds their sum.
//
// A request reserves its Content-Length (or MAX_BODY_BYTES when the length is unknown, e.g.
// chunked) before its body is read, and releases it when its answer is ready. Past the budget it
// is answered 503 + Retry-After at once, without reading the body: Bun then discards the body
// bytes as they arrive instead of buffering them (Bun does buffer the body of a request the app
// has neither answered nor started reading; see docs/operations.md "Memory under slow uploads").
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";

export interface BodyBudgetOptions {
  /** Bytes of bodies admitted at once (MAX_BODY_BYTES_IN_FLIGHT). */
  limitBytes: number;
  /** The largest body one request may have (MAX_BODY_BYTES): the reservation when the length is unknown. */
  maxBodyBytes: number;
  retryAfterSeconds: number;
}

export interface BodyBudget {
  /** Middleware for routes that read a body; put it after authentication. */
  readonly middleware: MiddlewareHandler;
  /** Bytes reserved by requests in progress. */
  readonly inFlight: number;
}

const DIGITS = /^\d+$/;

/** What a request reserves: its declared length, capped at the per-body limit (a larger one is refused with 413 anyway). */
export function reservation(contentLength: string | undefined, maxBodyBytes: number): number {
  if (contentLength === undefined || !DIGITS.test(contentLength)) return maxBodyBytes;
  return Math.min(Number(contentLength), maxBodyBytes);
}

export function bodyBudget({ limitBytes, maxBodyBytes, retryAfterSeconds }: BodyBudgetOptions): BodyBudget {
  let inFlight = 0;
  const retryAfter = String(retryAfterSeconds);
  const middleware: MiddlewareHandler = async function bodyBudget(c, next) {
    const reserved = reservation(c.req.header("content-length"), maxBodyBytes);
    if (inFlight + reserved > limitBytes) {
      throw new ApiError(
        503,
        `the server is already receiving ${inFlight} bytes of request bodies (limit ${limitBytes}); retry later`,
        { headers: { "Retry-After": retryAfter } },
      );
    }
    inFlight += reserved;
    try {
      await next();
    } finally {
      inFlight -= reserved;
    }
  };
  return {
    middleware,
    get inFlight() {
      return inFlight;
    },
  };
}
