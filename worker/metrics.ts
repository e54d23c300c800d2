// A worker process's Prometheus metrics.
import { Counter, Gauge, type Registry } from "prom-client";
import { BulkHistogram } from "../shared/metrics.ts";
import type { PartitionProgress } from "./progress.ts";

export function createWorkerMetrics(registry: Registry, progress: PartitionProgress) {
  return {
    batches: new Counter({
      name: "worker_batches_total",
      help: "Batches written and committed",
      registers: [registry],
    }),
    inserted: new Counter({
      name: "worker_rows_inserted_total",
      help: "Rows inserted into scan_events",
      registers: [registry],
    }),
    duplicates: new Counter({
      name: "worker_rows_duplicate_total",
      help: "Rows skipped because their event_id was already stored (replays, client retries)",
      registers: [registry],
    }),
    // Observed once per stored event: the bulk histogram keeps that to a few ns each.
    freshness: new BulkHistogram({
      name: "scan_event_freshness_seconds",
      help: "Per event, from the edge accepting it (its Kafka create time) to its row being visible (the sink's commit); the freshness SLO's metric",
      buckets: [0.05, 0.1, 0.25, 0.4, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    // Per batch: the bulk histogram too (prom-client's observe validates and hashes labels each call).
    writeDuration: new BulkHistogram({
      name: "worker_write_duration_seconds",
      help: "COPY + insert + count upsert transaction duration",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    retries: new Counter({
      name: "worker_db_retries_total",
      help: "Transient database errors retried",
      registers: [registry],
    }),
    deadLettered: new Counter({
      name: "worker_dead_letters_total",
      help: "Messages sent to the dead-letter topic",
      registers: [registry],
    }),
    deadLettersStored: new Counter({
      name: "worker_dead_letters_stored_total",
      help: "Dead letters written to the dead_letters table",
      registers: [registry],
    }),
    lag: new Gauge({
      name: "worker_consumer_lag",
      help: "Messages behind the high watermark, per assigned partition (librdkafka statistics; only refreshed while the loop polls: the supervisor exports committed lag)",
      labelNames: ["topic", "partition"] as const,
      registers: [registry],
    }),
    paused: new Gauge({
      name: "worker_paused_partitions",
      help: "Partitions paused while a transient failure is retried (fetching stops instead of buffering)",
      registers: [registry],
    }),
    skippedCommits: new Counter({
      name: "worker_commits_skipped_total",
      help: "Commits refused because the group rebalanced (the batch is replayed, as a no-op)",
      registers: [registry],
    }),
    assigned: new Gauge({
      name: "worker_assigned_partitions",
      help: "Partitions of the scans topic currently assigned to this worker",
      registers: [registry],
    }),
    lastCommit: new Gauge({
      name: "worker_last_commit_timestamp_seconds",
      help: "When offsets were last committed",
      registers: [registry],
    }),
    // Computed at scrape time from the progress tracker, not from inside the poll loop, so a loop
    // stuck in a write still shows: pending stays 1 while the commit age grows.
    partitionPending: new Gauge({
      name: "worker_partition_pending",
      help: "1 while an owned partition has polled messages whose offsets are not committed yet",
      labelNames: ["partition"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const p of progress.view()) this.set({ partition: String(p.partition) }, p.pending ? 1 : 0);
      },
    }),
    partitionCommitAge: new Gauge({
      name: "worker_partition_commit_age_seconds",
      help: "Seconds since an owned partition's offsets were last committed (or it was assigned)",
      labelNames: ["partition"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const p of progress.view()) this.set({ partition: String(p.partition) }, p.commitAgeSeconds);
      },
    }),
    stalledPartitions: new Gauge({
      name: "worker_stalled_partitions",
      help: "Owned partitions with pending work and no commit for longer than STALL_TIMEOUT_MS",
      registers: [registry],
      collect() {
        this.set(progress.stalled().length);
      },
    }),
  };
}

export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;

interface Stats {
  topics?: Record<string, { partitions?: Record<string, { consumer_lag?: number; fetch_state?: string }> }>;
}

/** Sets the lag gauge from librdkafka's statistics JSON (only partitions this consumer fetches). */
export function recordLag(metrics: WorkerMetrics, json: string): void {
  const stats = JSON.parse(json) as Stats;
  metrics.lag.reset();
  for (const [topic, t] of Object.entries(stats.topics ?? {})) {
    for (const [partition, p] of Object.entries(t.partitions ?? {})) {
      if (partition === "-1" || p.fetch_state === "none" || p.consumer_lag === undefined || p.consumer_lag < 0)
        continue;
      metrics.lag.set({ topic, partition }, p.consumer_lag);
    }
  }
}
