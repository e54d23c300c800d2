// Exponential backoff with full jitter, a retrier for transient failures (shared/db-errors.ts
// says which database errors are transient), and the hooks that pause fetching while it retries.
import type { TopicPartition } from "bun-rdkafka";
import { isTransientDbError } from "../shared/db-errors.ts";
import type { Logger } from "../shared/logger.ts";

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
  /** `log` is the caller's (e.g. the batch's logger, carrying its id and offsets), when it gave one. */
  onRetry?: (what: string, attempt: number, delayMs: number, error: Error, log?: Logger) => void;
  isRetriable?: (error: unknown) => boolean;
}

/**
 * What the loops are given: retries `fn`'s transient failures; `log` carries the caller's context
 * (or makes it, called only when a retry is logged: a batch's logger is made on first use).
 */
export type WithRetry = <T>(what: string, fn: () => Promise<T>, log?: Logger | (() => Logger)) => Promise<T>;

export class RetriesExhaustedError extends Error {
  constructor(what: string, ms: number, cause: unknown) {
    super(`${what}: still failing after ${ms} ms of retries: ${(cause as Error).message}`, { cause });
    this.name = "RetriesExhaustedError";
  }
}

/** Runs `fn`, retrying transient failures with full-jitter backoff for at most `maxMs`. */
export function createRetrier(o: RetrierOptions) {
  const retriable = o.isRetriable ?? isTransientDbError;
  return async function withRetry<T>(what: string, fn: () => Promise<T>, log?: Logger | (() => Logger)): Promise<T> {
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
          o.onRetry?.(what, attempt, delay, error as Error, typeof log === "function" ? log() : log);
          await Bun.sleep(delay);
        }
      }
    } finally {
      if (attempt > 0) o.onStopRetrying?.();
    }
  };
}

/** What pauseWhileRetrying needs of a consumer. */
export interface Pausable {
  assignment(): TopicPartition[];
  pause(partitions: TopicPartition[]): void;
  resume(partitions: TopicPartition[]): void;
}

/**
 * Retrier hooks that stop fetching while anything retries, instead of buffering (librdkafka stops
 * prefetching paused partitions too). Several batches can retry at once (WRITES_IN_FLIGHT): the
 * assignment is paused when the first starts retrying and resumed after the last one stops.
 * `paused` counts the paused partitions (the worker_paused_partitions gauge).
 */
export function pauseWhileRetrying(
  consumer: Pausable,
  paused?: { inc(n: number): void; dec(n: number): void },
): Required<Pick<RetrierOptions, "onStartRetrying" | "onStopRetrying">> {
  let partitions: TopicPartition[] = [];
  let retrying = 0;
  return {
    onStartRetrying: function pauseFetching() {
      if (retrying++ > 0) return;
      partitions = consumer.assignment();
      consumer.pause(partitions);
      paused?.inc(partitions.length);
    },
    onStopRetrying: function resumeFetching() {
      if (--retrying > 0) return;
      consumer.resume(partitions);
      paused?.dec(partitions.length);
      partitions = [];
    },
  };
}
