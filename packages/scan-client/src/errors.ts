// Typed errors of the SDK. `code` says what happened and what to do; transient ones (the SDK
// retries by itself) reach the app through onError, the others are thrown by the call that failed.

export type ScanClientErrorCode =
  /** scan() when the queue holds maxQueued events and whenFull is "refuse". */
  | "queue_full"
  /** A call on a closed client. */
  | "closed"
  /** scan() with an input the edge would never accept (e.g. no qr_id). */
  | "invalid_scan"
  /** Another live process holds the journal's lock. */
  | "queue_locked"
  /** The journal has an unreadable record before its last line (not a torn write). */
  | "journal_corrupt"
  /** The journal could not be written or fsync'd. */
  | "journal_io"
  /** Transient, retried: the request failed before an answer (DNS, refused, reset, timeout). */
  | "network"
  /** Transient, retried: 401 (the token provider is asked again) or the token provider threw. Events are kept. */
  | "unauthorized"
  /** Transient, retried: 408 or 429 (rate limit). */
  | "rate_limited"
  /** Transient, retried: 5xx (503 backpressure, 500, 502, 504). */
  | "server_error"
  /** Transient, retried: 404/405 or a 2xx that is not the edge's answer: the endpoint does not serve POST /v1/scans. */
  | "bad_endpoint"
  /** Reported once: the edge refuses sent_at/schema_version (rolled back to contract version 1); the client sends version 1 from then on. */
  | "version_fallback"
  /** flush() did not complete within its timeoutMs. */
  | "timeout"
  /** Options that cannot work (e.g. no queue for this entry point). */
  | "config";

export class ScanClientError extends Error {
  override name = "ScanClientError";
  readonly code: ScanClientErrorCode;
  /** The HTTP status of the answer, when there was one. */
  readonly status: number | undefined;
  constructor(code: ScanClientErrorCode, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status;
  }
}

export class QueueFullError extends ScanClientError {
  override name = "QueueFullError";
  readonly maxQueued: number;
  constructor(maxQueued: number) {
    super("queue_full", `the queue holds maxQueued=${maxQueued} events; the scan was not queued (whenFull: "refuse")`);
    this.maxQueued = maxQueued;
  }
}
