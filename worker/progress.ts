// Per-partition progress of the sink loop, kept outside the loop so that a loop stuck inside a
// write can still be seen: for each partition this worker owns, whether it holds polled messages
// whose offsets are not committed yet (pending work), and when its offsets were last committed.
// A partition with pending work and no commit for STALL_TIMEOUT_MS is stalled: /health fails and
// the supervisor (or Kubernetes) restarts the worker.
import type { TopicPartition, TopicPartitionOffset } from "bun-rdkafka";

interface PartitionState {
  /** Next offset after the last polled message (0: nothing polled yet). */
  polledNext: number;
  /** Next offset after the last committed message. */
  committedNext: number;
  /** When offsets were last committed, or when the partition was assigned. */
  lastCommitAt: number;
  /** When the partition last went from no pending work to pending work. */
  pendingSince: number;
}

export interface PartitionView {
  partition: number;
  pending: boolean;
  /** Seconds since the partition's offsets were last committed (or it was assigned). */
  commitAgeSeconds: number;
  /** True when pending and nothing committed for longer than the stall timeout. */
  stalled: boolean;
}

export class PartitionProgress {
  readonly #topic: string;
  readonly #stallTimeoutMs: number;
  readonly #now: () => number;
  readonly #owned = new Map<number, PartitionState>();

  constructor(topic: string, stallTimeoutMs: number, now: () => number = Date.now) {
    this.#topic = topic;
    this.#stallTimeoutMs = stallTimeoutMs;
    this.#now = now;
  }

  assigned(partitions: readonly TopicPartition[]): void {
    const now = this.#now();
    for (const p of partitions) {
      if (p.topic !== this.#topic || this.#owned.has(p.partition)) continue;
      this.#owned.set(p.partition, { polledNext: 0, committedNext: 0, lastCommitAt: now, pendingSince: now });
    }
  }

  revoked(partitions: readonly TopicPartition[]): void {
    for (const p of partitions) if (p.topic === this.#topic) this.#owned.delete(p.partition);
  }

  /** A batch was polled: `offsets` are its next offsets per partition (bun-rdkafka's nextOffsets). */
  polled(offsets: readonly TopicPartitionOffset[]): void {
    const now = this.#now();
    for (const o of offsets) {
      const s = this.#owned.get(o.partition);
      if (!s || o.topic !== this.#topic) continue;
      if (s.polledNext <= s.committedNext) s.pendingSince = now;
      if (o.offset > s.polledNext) s.polledNext = o.offset;
    }
  }

  /** A batch's offsets were committed (or its commit was refused by a rebalance: progress all the same). */
  committed(offsets: readonly TopicPartitionOffset[]): void {
    const now = this.#now();
    for (const o of offsets) {
      const s = this.#owned.get(o.partition);
      if (!s || o.topic !== this.#topic) continue;
      if (o.offset > s.committedNext) s.committedNext = o.offset;
      s.lastCommitAt = now;
    }
  }

  view(): PartitionView[] {
    const now = this.#now();
    const out: PartitionView[] = [];
    for (const [partition, s] of this.#owned) {
      const pending = s.polledNext > s.committedNext;
      const quietMs = now - Math.max(s.lastCommitAt, s.pendingSince);
      out.push({
        partition,
        pending,
        commitAgeSeconds: (now - s.lastCommitAt) / 1000,
        stalled: pending && quietMs > this.#stallTimeoutMs,
      });
    }
    return out.sort((a, b) => a.partition - b.partition);
  }

  /** Partitions with pending work and no commit for longer than the stall timeout. */
  stalled(): number[] {
    return this.view()
      .filter((p) => p.stalled)
      .map((p) => p.partition);
  }
}
