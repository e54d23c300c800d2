import { expect, test } from "bun:test";
import { histogramQuantile, parsePrometheusText, sum } from "../../shared/prometheus-text.ts";

const before = parsePrometheusText(`
# HELP x_seconds test
x_seconds_bucket{route="/a",le="0.01"} 10
x_seconds_bucket{route="/a",le="0.1"} 10
x_seconds_bucket{route="/a",le="+Inf"} 10
rows_total{service="worker",worker="0"} 5
`);
const after = parsePrometheusText(`
x_seconds_bucket{route="/a",le="0.01"} 60
x_seconds_bucket{route="/a",le="0.1"} 110
x_seconds_bucket{route="/a",le="+Inf"} 110
x_seconds_bucket{route="/b",le="0.01"} 1000
rows_total{service="worker",worker="0"} 7
rows_total{service="worker",worker="1"} 3
`);

test("sums a metric over matching series", () => {
  expect(sum(after, "rows_total")).toBe(10);
  expect(sum(after, "rows_total", { worker: "1" })).toBe(3);
  expect(sum(after, "missing")).toBe(0);
});

test("quantiles from the difference of two histogram scrapes, interpolated within a bucket", () => {
  // 100 new observations: 50 under 10 ms, 50 in (10 ms, 100 ms].
  expect(histogramQuantile(before, after, "x_seconds", 0.5, { route: "/a" })).toBeCloseTo(0.01, 6);
  expect(histogramQuantile(before, after, "x_seconds", 0.95, { route: "/a" })).toBeCloseTo(0.01 + 0.09 * 0.9, 6);
  expect(histogramQuantile(after, after, "x_seconds", 0.95, { route: "/a" })).toBeNaN();
});
