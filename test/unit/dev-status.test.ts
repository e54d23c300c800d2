// The dev status line's committed lag (tools/dev-status.ts), from supervisor scrapes written as
// the supervisor writes them (worker/group-lag.ts's series). The line once summed every
// consumer_group_lag sample it got, read 0 when the supervisor did not answer, and kept showing a
// frozen figure when the supervisor's reads failed: each case below fails on that code
// (`sum(samples, "consumer_group_lag")`, checked by putting it back in committedLag).
import { describe, expect, test } from "bun:test";
import { parsePrometheusText } from "../../shared/prometheus-text.ts";
import { committedLag, lagField } from "../../tools/dev-status.ts";

const NOW = 1_800_000_000;

/** A supervisor scrape: lag per partition of `topic`, and when the lag was last read. */
function scrape(lags: number[], { topic = "scans", readAt = NOW - 1, extra = "" } = {}) {
  return parsePrometheusText(
    [
      "# HELP consumer_group_lag High watermark minus the group's committed offset, read from the broker",
      "# TYPE consumer_group_lag gauge",
      ...lags.map((lag, p) => `consumer_group_lag{topic="${topic}",partition="${p}"} ${lag}`),
      "# TYPE consumer_group_lag_last_success_timestamp_seconds gauge",
      `consumer_group_lag_last_success_timestamp_seconds ${readAt}`,
      extra,
    ].join("\n"),
  );
}

describe("committedLag", () => {
  test("the sum over the topic's partitions of the supervisor's last read", () => {
    expect(committedLag(scrape([0, 0, 59, 0]), "scans", NOW, 3)).toEqual({
      state: "read",
      lag: 59,
      partitions: 4,
      ageS: 1,
    });
    expect(lagField(committedLag(scrape([0, 0, 0]), "scans", NOW, 3))).toEqual({ field: "     0", note: "" });
  });

  test("a partition reported twice counts once (the largest), as the alerts count it", () => {
    const twice = scrape([0, 40], {
      extra: 'consumer_group_lag{topic="scans",partition="1",instance="other"} 40',
    });
    expect(committedLag(twice, "scans", NOW, 3)).toMatchObject({ state: "read", lag: 40, partitions: 2 });
  });

  test("another topic's series is not this topic's lag", () => {
    const mixed = scrape([0, 0], { extra: 'consumer_group_lag{topic="scans-old",partition="0"} 60' });
    expect(committedLag(mixed, "scans", NOW, 3)).toMatchObject({ state: "read", lag: 0 });
  });

  test("a figure the supervisor could not read is unknown, never a number", () => {
    // Its reads have failed for a minute: the gauges keep their last values.
    expect(committedLag(scrape([0, 59], { readAt: NOW - 60 }), "scans", NOW, 3)).toEqual({
      state: "unknown",
      reason: "stale: last read 60s ago",
    });
    expect(committedLag(null, "scans", NOW, 3)).toEqual({ state: "unknown", reason: "the supervisor does not answer" });
    expect(committedLag(scrape([]), "scans", NOW, 3)).toEqual({ state: "unknown", reason: "no lag read yet" });
    // Started, but no read has succeeded yet: no timestamp series.
    const neverRead = parsePrometheusText('consumer_group_lag{topic="scans",partition="0"} 5\n');
    expect(committedLag(neverRead, "scans", NOW, 3)).toEqual({ state: "unknown", reason: "no successful read yet" });
    expect(lagField(committedLag(null, "scans", NOW, 3))).toEqual({
      field: "     ?",
      note: "  (lag the supervisor does not answer)",
    });
  });
});
