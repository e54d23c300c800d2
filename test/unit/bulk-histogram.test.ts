// BulkHistogram (shared/metrics.ts) must expose exactly what prom-client's Histogram exposes for the
// same observations, so dashboards, recording rules and alerts on scan_event_freshness_seconds
// read it unchanged.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { Histogram, Registry } from "prom-client";
import { BulkHistogram } from "../../shared/metrics.ts";

const BUCKETS = [0.05, 0.1, 0.25, 0.4, 0.5, 1, 2, 5, 10, 30, 60, 300];

test("the same exposition as prom-client's Histogram, bucket bounds and default labels included", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.oneof(fc.constantFrom(...BUCKETS, 0), fc.double({ min: 0, max: 1_000, noNaN: true })), {
        maxLength: 200,
      }),
      async (values) => {
        const reference = new Registry();
        const bulk = new Registry();
        for (const r of [reference, bulk]) r.setDefaultLabels({ service: "worker" });
        const h1 = new Histogram({ name: "x_seconds", help: "help", buckets: BUCKETS, registers: [reference] });
        const h2 = new BulkHistogram({ name: "x_seconds", help: "help", buckets: BUCKETS, registers: [bulk] });
        for (const v of values) {
          h1.observe(v);
          h2.observe(v);
        }
        expect(await bulk.metrics()).toBe(await reference.metrics());
      },
    ),
    { numRuns: 200 },
  );
});

test("reset() empties it", async () => {
  const r = new Registry();
  const h = new BulkHistogram({ name: "y_seconds", help: "help", buckets: [1], registers: [r] });
  h.observe(0.5);
  h.observe(5);
  expect(await r.metrics()).toContain('y_seconds_bucket{le="+Inf"} 2');
  r.resetMetrics();
  expect(await r.metrics()).toContain("y_seconds_count 0");
});

test("with labels: the same exposition and get() as prom-client's, zeroed series and first-observed order included", async () => {
  const routes = ["/v1/scans", "/v1/qr/:qr_id/stats", "unmatched", 'a"b\\c'];
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.constantFrom(...routes), fc.double({ min: 0, max: 20, noNaN: true })), { maxLength: 100 }),
      fc.subarray(routes),
      async (observations, zeroed) => {
        const reference = new Registry();
        const bulk = new Registry();
        for (const r of [reference, bulk]) r.setDefaultLabels({ service: "server" });
        const h1 = new Histogram({
          name: "d_seconds",
          help: "help",
          labelNames: ["route"],
          buckets: [0.001, 0.04, 0.4, 10],
          registers: [reference],
        });
        const h2 = new BulkHistogram({
          name: "d_seconds",
          help: "help",
          labelNames: ["route"],
          buckets: [0.001, 0.04, 0.4, 10],
          registers: [bulk],
        });
        for (const route of zeroed) {
          h1.zero({ route });
          h2.zero({ route });
        }
        for (const [route, v] of observations) {
          h1.labels({ route }).observe(v);
          h2.labels({ route }).observe(v);
        }
        expect(await bulk.metrics()).toBe(await reference.metrics());
        // prom-client's values also carry an empty exemplar (null or undefined): no content.
        const { values, ...rest } = (await h1.get()) as unknown as { values: { exemplar?: unknown }[] };
        expect(h2.get() as unknown).toEqual({ ...rest, values: values.map(({ exemplar: _, ...v }) => v) });
        // zero() sets an existing series back to 0, as prom-client's does.
        for (const route of zeroed) {
          h1.zero({ route });
          h2.zero({ route });
        }
        expect(await bulk.metrics()).toBe(await reference.metrics());
        bulk.resetMetrics();
        reference.resetMetrics();
        expect(await bulk.metrics()).toBe(await reference.metrics());
      },
    ),
    { numRuns: 200 },
  );
});

test("a histogram with labels refuses an unlabelled observation and an unknown label", () => {
  const h = new BulkHistogram({ name: "z_seconds", help: "help", buckets: [1], labelNames: ["route"], registers: [] });
  expect(() => h.observe(1)).toThrow("z_seconds has labels (route): use labels()");
  expect(() => h.labels({ rout: "x" })).toThrow('z_seconds has no label "rout"');
});
