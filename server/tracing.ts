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
  }
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
export function requestLogFields(c: Context): { request_id: string; trace_id: string | undefined } {
  return {
    request_id: c.get("requestId"),
    trace_id: c.get("span")?.spanContext().traceId ?? traceIdOf(c.req.header("traceparent")),
  };
}
