// Pure logic of the backup tools: comparing checksums, the resume point's rewind, the drill's
// arguments. What they do against the real cluster and Kafka: test/integration/restore-drill.test.ts.
import { describe, expect, test } from "bun:test";
import { rewindFor } from "../../jobs/offsets.ts";
import { type Checksums, differences } from "../../tools/backup/checksums.ts";
import { parseArgs } from "../../tools/restore-drill.ts";

const sums = (rows: number, ids = "42"): Checksums => ({
  scanEvents: [
    { partition: "scan_events_20261124", rows, eventIds: ids },
    { partition: "scan_events_20261125", rows: 5, eventIds: "7" },
  ],
  scanCounts: [{ day: "2026-11-24", buckets: 3, total: String(rows) }],
});

describe("differences", () => {
  test("none when equal", () => {
    expect(differences(sums(10), sums(10))).toEqual([]);
  });

  test("a day with other rows, other event_ids, a missing day and an unexpected day are each named", () => {
    expect(differences(sums(10), sums(9))).toEqual([
      'scan_events scan_events_20261124: expected {"partition":"scan_events_20261124","rows":10,"eventIds":"42"}, restored {"partition":"scan_events_20261124","rows":9,"eventIds":"42"}',
      'scan_counts 2026-11-24: expected {"day":"2026-11-24","buckets":3,"total":"10"}, restored {"day":"2026-11-24","buckets":3,"total":"9"}',
    ]);
    // Same count, one event_id swapped for another: only the checksum tells.
    expect(differences(sums(10, "42"), sums(10, "43"))).toHaveLength(1);
    const missingDay = { ...sums(10), scanEvents: sums(10).scanEvents.slice(1) };
    expect(differences(sums(10), missingDay)).toEqual([
      'scan_events scan_events_20261124: expected {"partition":"scan_events_20261124","rows":10,"eventIds":"42"}, missing after the restore',
    ]);
    expect(differences(missingDay, sums(10))).toEqual([
      'scan_events scan_events_20261124: not expected, restored {"partition":"scan_events_20261124","rows":10,"eventIds":"42"}',
    ]);
  });
});

test("the resume point is max(kafka_offset) + 1 with one write in flight, and rewinds over every batch in flight otherwise (the stored one holding the highest offset included)", () => {
  expect(rewindFor(1, 5_000)).toBe(0);
  expect(rewindFor(2, 5_000)).toBe(10_000);
  expect(rewindFor(4, 100)).toBe(400);
});

describe("restore-drill arguments", () => {
  test("modes", () => {
    expect(parseArgs([])).toEqual({ mode: "latest", replay: false });
    expect(parseArgs(["--latest", "--replay"])).toEqual({ mode: "latest", replay: true });
    expect(parseArgs(["--mark", "m.json"])).toEqual({ mode: "mark", markFile: "m.json", replay: false });
    expect(parseArgs(["--expect", "m.json"])).toMatchObject({ mode: "time", expectFile: "m.json" });
    expect(parseArgs(["--target-time", "2026-11-26 04:00:00+00"])).toMatchObject({
      mode: "time",
      targetTime: "2026-11-26 04:00:00+00",
    });
  });

  test("refusals name the problem", () => {
    expect(() => parseArgs(["--target-time", "yesterday"])).toThrow("--target-time: not a time: yesterday");
    expect(() => parseArgs(["--latest", "--target-time", "2026-11-26T04:00:00Z"])).toThrow("exclude each other");
    expect(() => parseArgs(["--mark"])).toThrow("--mark needs a value");
    expect(() => parseArgs(["--mark", "m.json", "--replay"])).toThrow("--mark takes no other option");
    expect(() => parseArgs(["--bogus"])).toThrow("unknown argument(s): --bogus");
  });
});
