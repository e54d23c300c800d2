// The committed lag on `bun run dev`'s status line, read from the supervisor's metrics
// (worker/group-lag.ts) exactly as the alerts and the dashboards read it: the largest value any
// series reports for a partition, summed over the scans topic's partitions, and only while the
// supervisor's last read from the broker is recent. A figure the supervisor could not read (it does
// not answer, or its reads fail and its gauges keep their last values) is shown as such, never as
// a number: 0 or a frozen figure would say the group is caught up, or behind, when nobody knows.
import type { Sample } from "../shared/prometheus-text.ts";

export type CommittedLag =
  | { state: "read"; lag: number; partitions: number; ageS: number }
  | { state: "unknown"; reason: string };

/**
 * The committed lag in `samples` (one scrape of the supervisor, null when it did not answer) for
 * `topic`; "unknown" when there is no series, or the last successful read is older than
 * `staleAfterS` at `nowS` (epoch seconds).
 */
export function committedLag(
  samples: readonly Sample[] | null,
  topic: string,
  nowS: number,
  staleAfterS: number,
): CommittedLag {
  if (samples === null) return { state: "unknown", reason: "the supervisor does not answer" };
  const perPartition = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== "consumer_group_lag" || s.labels.topic !== topic) continue;
    const partition = s.labels.partition ?? "";
    perPartition.set(partition, Math.max(perPartition.get(partition) ?? Number.NEGATIVE_INFINITY, s.value));
  }
  if (perPartition.size === 0) return { state: "unknown", reason: "no lag read yet" };
  const lastRead = Math.max(
    Number.NEGATIVE_INFINITY,
    ...samples.filter((s) => s.name === "consumer_group_lag_last_success_timestamp_seconds").map((s) => s.value),
  );
  if (lastRead === Number.NEGATIVE_INFINITY) return { state: "unknown", reason: "no successful read yet" };
  const ageS = nowS - lastRead;
  if (ageS > staleAfterS) return { state: "unknown", reason: `stale: last read ${ageS.toFixed(0)}s ago` };
  let lag = 0;
  for (const v of perPartition.values()) lag += v;
  return { state: "read", lag, partitions: perPartition.size, ageS };
}

/** The status line's lag field: the number, or why there is none ("lag ?" with the reason at the end). */
export function lagField(l: CommittedLag): { field: string; note: string } {
  return l.state === "read"
    ? { field: String(l.lag).padStart(6), note: "" }
    : { field: "     ?", note: `  (lag ${l.reason})` };
}
