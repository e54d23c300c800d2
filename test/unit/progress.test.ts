// Per-partition progress (worker/progress.ts) at its edges: only the scans topic's partitions count,
// offsets never move back (a replayed poll, a late commit), a stall is pending work quiet for
// longer than the timeout (not at it) counted from when the work became pending, and the view is in
// partition order. worker-logic.test.ts has the main cases.
import { describe, expect, test } from "bun:test";
import { PartitionProgress } from "../../worker/progress.ts";

const tp = (partition: number, topic = "scans") => ({ topic, partition });
const at = (partition: number, offset: number, topic = "scans") => ({ topic, partition, offset });

describe("partition progress", () => {
  test("another topic's partitions and offsets change nothing", () => {
    let now = 0;
    const p = new PartitionProgress("scans", 5_000, () => now);
    p.assigned([tp(0), tp(0, "other")]);
    p.polled([at(0, 50, "other")]);
    expect(p.view()).toEqual([{ partition: 0, pending: false, commitAgeSeconds: 0, stalled: false }]);
    p.polled([at(0, 10)]);
    now += 1_000;
    p.committed([at(0, 10, "other")]);
    expect(p.view()).toEqual([{ partition: 0, pending: true, commitAgeSeconds: 1, stalled: false }]);
    p.revoked([tp(0, "other")]);
    expect(p.view().map((v) => v.partition)).toEqual([0]);
  });

  test("offsets never move back: a replayed poll, an older commit", () => {
    const p = new PartitionProgress("scans", 5_000, () => 0);
    p.assigned([tp(0)]);
    p.polled([at(0, 10)]);
    p.polled([at(0, 5)]);
    p.committed([at(0, 5)]);
    expect(p.view()[0]?.pending).toBe(true);
    p.committed([at(0, 10)]);
    p.committed([at(0, 5)]);
    expect(p.view()[0]?.pending).toBe(false);
  });

  test("stalled only past the timeout, counted from when the work became pending, not from each poll", () => {
    let now = 100_000;
    const p = new PartitionProgress("scans", 5_000, () => now);
    p.assigned([tp(0)]);
    p.polled([at(0, 10)]);
    now += 4_000;
    p.polled([at(0, 20)]);
    now += 1_000;
    expect(p.stalled()).toEqual([]);
    now += 1;
    expect(p.stalled()).toEqual([0]);
  });

  test("the view lists partitions in order", () => {
    const p = new PartitionProgress("scans", 5_000, () => 0);
    p.assigned([tp(3), tp(1), tp(12), tp(2)]);
    expect(p.view().map((v) => v.partition)).toEqual([1, 2, 3, 12]);
  });
});
