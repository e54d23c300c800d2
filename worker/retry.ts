// Exponential backoff with full jitter, and a retrier for transient failures (worker/db-errors.ts
// says which database errors are transient).
import { isTransientDbError } from "../shared/db-errors.ts";

export interface BackoffOptions {
  baseMs: number;
  capMs: number;
}

/** Full jitter: a uniformly random delay in [0, min(cap, base * 2^attempt)]. */
export function backoffDelay(attempt: number, { baseMs, capMs }: BackoffOptions, random = Math.random): number {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** attempt));
}

export interface RetrierOptions extends BackoffOptions {
  /** Give up (throw) once retrying has lasted this long. */
  maxMs: number;
  /** Called before the first retry (e.g. pause fetching) and after the last attempt (resume). */
  onStartRetrying?: () => void;
  onStopRetrying?: () => void;
  onRetry?: (what: string, attempt: number, delayMs: number, error: Error) => void;
  isRetriable?: (error: unknown) => boolean;
}

export class RetriesExhaustedError extends Error {
  constructor(what: string, ms: number, cause: unknown) {
    super(`${what}: still failing after ${ms} ms of retries: ${(cause as Error).message}`, { cause });
    this.name = "RetriesExhaustedError";
  }
}

/** Runs `fn`, retrying transient failures with full-jitter backoff for at most `maxMs`. */
export function createRetrier(o: RetrierOptions) {
  const retriable = o.isRetriable ?? isTransientDbError;
  return async function withRetry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const started = Date.now();
    let attempt = 0;
    try {
      for (;;) {
        try {
          return await fn();
        } catch (error) {
          if (!retriable(error)) throw error;
          const elapsed = Date.now() - started;
          if (elapsed >= o.maxMs) throw new RetriesExhaustedError(what, elapsed, error);
          if (attempt === 0) o.onStartRetrying?.();
          const delay = backoffDelay(attempt, o);
          attempt++;
          o.onRetry?.(what, attempt, delay, error as Error);
          await Bun.sleep(delay);
        }
      }
    } finally {
      if (attempt > 0) o.onStopRetrying?.();
    }
  };
}
