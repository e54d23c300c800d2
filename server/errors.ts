// The edge's one error path. Handlers and middleware throw an ApiError for an answer the client is
// meant to get (4xx, 503, a known 500); app.onError (errorHandler) turns it, and anything
// unexpected, into the one error body:
//   {"error": "<what went wrong and what to do>", "errors": [<per-field problems>]?, "request_id": "<id>"}
// Only unexpected errors are logged, once, here; an ApiError was either the client's doing or was
// logged where it arose.
import { KafkaError } from "bun-rdkafka";
import type { Context, ErrorHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger } from "../shared/logger.ts";
import type { ErrorAnswer } from "./answers.ts";
import { requestLogFields } from "./tracing.ts";

export interface ApiErrorOptions {
  /** Per-field problems, e.g. [{path, message}]. */
  errors?: readonly unknown[];
  /** Response headers, e.g. Retry-After or Allow. */
  headers?: Record<string, string>;
}

export class ApiError extends HTTPException {
  readonly errors: readonly unknown[] | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(status: ContentfulStatusCode, message: string, { errors, headers }: ApiErrorOptions = {}) {
    super(status, { message });
    this.name = "ApiError";
    this.errors = errors;
    this.headers = headers;
  }
}

/** The error body for `error` (with the request id the client is given) as a response. */
export function errorResponse(c: Context, error: ApiError): Response {
  // server/answers.ts's ErrorAnswer, the OpenAPI document's; `errors` holds FieldErrors (not checked here).
  const body: Omit<ErrorAnswer, "errors"> & { errors?: readonly unknown[] } = {
    error: error.message,
    request_id: c.get("requestId"),
  };
  if (error.errors) body.errors = error.errors;
  return c.json(body, error.status, error.headers);
}

/** app.onError: every thrown error becomes the one error body; only the unexpected are logged. */
export function errorHandler({ logger }: { logger: Logger }): ErrorHandler {
  return function onError(error, c) {
    if (error instanceof ApiError) return errorResponse(c, error);
    // Hono's own (e.g. a malformed request it refuses): the client's doing, not logged.
    if (error instanceof HTTPException && error.status < 500) {
      return errorResponse(c, new ApiError(error.status, error.message || "bad request"));
    }
    logger.error({ err: error, ...requestLogFields(c), path: c.req.path }, "request failed");
    const message =
      error instanceof KafkaError
        ? `events not stored: Kafka refused them (${error.code}: ${error.message}); retrying will not help until the server is fixed`
        : "internal error";
    return errorResponse(c, new ApiError(500, message));
  };
}
