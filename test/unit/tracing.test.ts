// shared/tracing.ts's pure parts: when tracing is on, where it exports, and reading traceparents.
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { loadConfig } from "../../shared/config.ts";
import {
  TracingConfigEntries,
  isSampledTraceparent,
  sampledLink,
  sampledSpanContext,
  traceIdOf,
  tracesUrl,
} from "../../shared/tracing.ts";

const load = (env: Record<string, string>) => loadConfig(v.object(TracingConfigEntries), env);
const bytes = (s: string) => new TextEncoder().encode(s);
const TRACE = "0af7651916cd43dd8448eb211c80319c";
const SPAN = "b7ad6b7169203331";

describe("tracing configuration (the standard OTEL_* variables)", () => {
  test("off unless an endpoint is set; OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none turn it off again", () => {
    expect(tracesUrl(load({}))).toBeNull();
    expect(tracesUrl(load({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }))).toBe(
      "http://collector:4318/v1/traces",
    );
    expect(tracesUrl(load({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/custom" }))).toBe(
      "http://c:4318/custom",
    );
    expect(tracesUrl(load({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true" }))).toBeNull();
    expect(tracesUrl(load({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_TRACES_EXPORTER: "none" }))).toBeNull();
  });

  test("bad values stop start-up, naming the variable", () => {
    expect(() => load({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318 " })).toThrow(
      'OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318 ": must be an http(s) URL',
    );
    expect(() => load({ OTEL_TRACES_SAMPLER_ARG: "2" })).toThrow(
      'OTEL_TRACES_SAMPLER_ARG="2": must be a number from 0 to 1',
    );
    expect(() => load({ OTEL_TRACES_SAMPLER: "sometimes" })).toThrow("OTEL_TRACES_SAMPLER");
    expect(load({ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.01" })).toMatchObject({
      OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
      OTEL_TRACES_SAMPLER_ARG: 0.01,
    });
  });
});

describe("traceparent", () => {
  test("traceIdOf: the trace id of a valid header, else undefined", () => {
    expect(traceIdOf(`00-${TRACE}-${SPAN}-01`)).toBe(TRACE);
    expect(traceIdOf(`00-${TRACE}-${SPAN}-00`)).toBe(TRACE);
    expect(traceIdOf(`00-${"0".repeat(32)}-${SPAN}-01`)).toBeUndefined();
    expect(traceIdOf("garbage")).toBeUndefined();
    expect(traceIdOf(undefined)).toBeUndefined();
  });

  test("sampledLink: a link for every sampled flag value, none for unsampled or malformed headers", () => {
    for (const flags of ["01", "03", "0b", "ff"]) {
      expect(sampledLink(bytes(`00-${TRACE}-${SPAN}-${flags}`))?.context).toEqual({
        traceId: TRACE,
        spanId: SPAN,
        traceFlags: 1,
        isRemote: true,
      });
    }
    for (const flags of ["00", "02", "0a", "fe"]) expect(sampledLink(bytes(`00-${TRACE}-${SPAN}-${flags}`))).toBeNull();
    expect(sampledLink(bytes(`00-${TRACE.toUpperCase()}-${SPAN}-01`))).toBeNull();
    expect(sampledLink(bytes("00-short-01"))).toBeNull();
    expect(sampledLink(undefined)).toBeNull();
  });

  test("isSampledTraceparent: the sampled flag read on the bytes", () => {
    for (const flags of ["01", "03", "0b", "ff"])
      expect(isSampledTraceparent(bytes(`00-${TRACE}-${SPAN}-${flags}`))).toBe(true);
    for (const flags of ["00", "02", "0a", "fe"])
      expect(isSampledTraceparent(bytes(`00-${TRACE}-${SPAN}-${flags}`))).toBe(false);
    expect(isSampledTraceparent(bytes(`00-${TRACE}-${SPAN}-01 `))).toBe(false);
    expect(isSampledTraceparent(undefined)).toBe(false);
    expect(isSampledTraceparent(null)).toBe(false);
  });

  test("sampledSpanContext: the remote parent of a sampled, well-formed traceparent only", () => {
    expect(sampledSpanContext(`00-${TRACE}-${SPAN}-01`)).toEqual({
      traceId: TRACE,
      spanId: SPAN,
      traceFlags: 1,
      isRemote: true,
    });
    expect(sampledSpanContext(`00-${TRACE}-${SPAN}-00`)).toBeNull();
    expect(sampledSpanContext(`00-${TRACE}-${SPAN}-02`)).toBeNull();
    expect(sampledSpanContext(`00-${"0".repeat(32)}-${SPAN}-01`)).toBeNull();
    expect(sampledSpanContext(`00-${TRACE}-${"0".repeat(16)}-01`)).toBeNull();
    expect(sampledSpanContext(`00-${TRACE.toUpperCase()}-${SPAN}-01`)).toBeNull();
  });
});
