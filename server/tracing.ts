// Request tracing and log correlation for the edge. traceRequests (registered only when tracing
// is on) opens the SERVER span of each request; requestLogFields gives every log line about a
// request its request_id and trace_id, with tracing on or off.
import { type Span, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import type { Context, MiddlewareHandler } from "hono";
import { type Tracing, traceIdOf } from "../shared/tracing.ts";
import { routeOf } from "./metrics.ts";

declare module "hono" {
  interface ContextVariableMap {
    /** The request's SERVER span, when tracing is on. */
    span?: Span;
    /** The server's id for this request (requestIds): X-Request-Id, the bodies' and logs' request_id. */
    requestId: string;
    /** The X-Request-Id the client sent, sanitized (requestIds); logged as client_request_id. */
    clientRequestId?: string;
  }
}

/** Longest client X-Request-Id kept for the logs; the rest is cut. */
export const CLIENT_REQUEST_ID_MAX = 128;

/** A client's X-Request-Id as a log field may hold it: at most 128 characters, [A-Za-z0-9._:=+/-], others as "_". */
export function sanitizeClientRequestId(value: string): string {
  return value.slice(0, CLIENT_REQUEST_ID_MAX).replace(/[^\w.:=+/-]/g, "_");
}

/**
 * Every request gets the server's own id (a UUID), in X-Request-Id, the JSON bodies and every log
 * and audit line about it. A client's X-Request-Id is never that id (anyone could then make their
 * requests' audit lines look like another's): it is kept beside it, as client_request_id.
 */
export function requestIds(): MiddlewareHandler {
  return async function requestIds(c, next) {
    const id = crypto.randomUUID();
    c.set("requestId", id);
    const theirs = c.req.header("x-request-id");
    if (theirs) c.set("clientRequestId", sanitizeClientRequestId(theirs));
    c.header("X-Request-Id", id);
    await next();
  };
}

/** One SERVER span per request, child of the client's traceparent; named "<METHOD> <route>". */
export function traceRequests(tracing: Tracing): MiddlewareHandler {
  return async function traceRequests(c, next) {
    const parent = tracing.extract({
      traceparent: c.req.header("traceparent"),
      tracestate: c.req.header("tracestate"),
    });
    const span = tracing.tracer.startSpan(
      c.req.method,
      { kind: SpanKind.SERVER, attributes: { "http.request.method": c.req.method, "url.path": c.req.path } },
      parent,
    );
    c.set("span", span);
    try {
      await next();
    } finally {
      const route = routeOf(c);
      const status = c.res.status;
      span.updateName(`${c.req.method} ${route}`);
      span.setAttribute("http.route", route);
      span.setAttribute("http.response.status_code", status);
      if (status >= 500) {
        if (c.error) span.recordException(c.error);
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
    }
  };
}

/** The fields every log line about a request carries (docs/operations.md "Logs"). */
export function requestLogFields(c: Context): {
  request_id: string;
  trace_id: string | undefined;
  client_request_id?: string;
} {
  const fields = {
    request_id: c.get("requestId"),
    trace_id: c.get("span")?.spanContext().traceId ?? traceIdOf(c.req.header("traceparent")),
  };
  const theirs = c.get("clientRequestId");
  return theirs === undefined ? fields : { ...fields, client_request_id: theirs };
}
