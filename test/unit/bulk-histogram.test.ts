// BulkHistogram (shared/metrics.ts) must expose exactly what prom-client's Histogram exposes for the
// same observations, so dashboards, recording rules and alerts on scan_event_freshness_seconds
// read it unchanged; a CounterBuffer's counts must reach its counter whenever the counter is read.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { Counter, Histogram, Registry } from "prom-client";
import { BulkHistogram, CounterBuffer } from "../../shared/metrics.ts";

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

test("CounterBuffer: every read of the counter includes what was counted, as counting on it directly would", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.constantFrom("202", "400", "503"), fc.integer({ min: 0, max: 20 })), { maxLength: 50 }),
      fc.integer({ min: 0, max: 50 }),
      async (incs, readAt) => {
        const reference = new Registry();
        const buffered = new Registry();
        const c1 = new Counter({ name: "r_total", help: "h", labelNames: ["status"], registers: [reference] });
        const buffer = new CounterBuffer<"status">();
        const c2 = new Counter({
          name: "r_total",
          help: "h",
          labelNames: ["status"],
          registers: [buffered],
          collect() {
            buffer.flushInto(this);
          },
        });
        c1.inc({ status: "202" }, 0);
        c2.inc({ status: "202" }, 0);
        for (const [i, [status, n]] of incs.entries()) {
          c1.inc({ status }, n);
          buffer.labels({ status }).inc(n);
          // A read in between: what was counted so far is there, and is not added twice later.
          if (i === readAt) expect(await buffered.metrics()).toBe(await reference.metrics());
        }
        expect(await buffered.metrics()).toBe(await reference.metrics());
        expect(await c2.get()).toEqual(await c1.get());
      },
    ),
    { numRuns: 100 },
  );
  const buffer = new CounterBuffer<"status">();
  const one = buffer.labels({ status: "202" });
  expect(buffer.labels({ status: "202" })).toBe(one);
  one.inc();
  const c = new Counter({ name: "s_total", help: "h", labelNames: ["status"], registers: [] });
  buffer.flushInto(c);
  expect((await c.get()).values).toEqual([{ value: 1, labels: { status: "202" } }]);
});
