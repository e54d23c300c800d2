// Kafka to Postgres: committed lag per partition, rows/s, commit age and stall clock (the
// supervisor, worker/supervisor.ts), freshness against its SLO, each worker's own view, dead letters
// (worker/metrics.ts).
import {
  BY_PROCESS,
  PROCESS_LEGEND,
  newDashboard,
  quantile,
  rate,
  row,
  shareUnder,
  stat,
  timeseries,
} from "./panels.ts";

export function pipelineDashboard() {
  return newDashboard(
    "qrscan-pipeline",
    "qrscan-ingest / Pipeline",
    "From Kafka to Postgres: committed lag, rows/s, commit age and stalls, freshness (accept to row visible) against its 1 s SLO, the workers, dead letters.",
  )
    .withRow(row("Throughput and lag"))
    .withPanel(
      stat({
        title: "Committed lag",
        description:
          "Messages not yet committed by the group, all partitions (read from the broker by the supervisor; each partition once, however many supervisors report it).",
        unit: "short",
        queries: [{ expr: "sum(max by (topic, partition) (consumer_group_lag))", legend: "lag" }],
      }),
    )
    .withPanel(
      stat({
        title: "Rows inserted/s",
        description: "Rows the workers inserted into scan_events, per second.",
        unit: "rowsps",
        queries: [{ expr: `sum(${rate("worker_rows_inserted_total")})`, legend: "rows/s" }],
      }),
    )
    .withPanel(
      stat({
        title: "Longest stall (alert 60 s)",
        description:
          "The longest time any partition has had pending messages and no commit (ConsumerStalled pages above 60 s for 1 min).",
        unit: "s",
        thresholdLines: [15, 60],
        queries: [{ expr: "max(consumer_group_stalled_seconds)", legend: "stalled" }],
      }),
    )
    .withPanel(
      stat({
        title: "Freshness p95 (SLO 1 s)",
        description: "95th percentile from the edge accepting an event to its row being visible. SLO: 95% within 1 s.",
        unit: "s",
        thresholdLines: [0.5, 1],
        queries: [{ expr: quantile(0.95, "scan_event_freshness_seconds"), legend: "p95" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Events accepted/s vs rows/s",
        description:
          "What the edge accepted against what the workers stored (inserted, and skipped as duplicates of a stored event_id). Rows/s at 0 while events are accepted is a stall.",
        unit: "ops",
        queries: [
          { expr: `sum(${rate('scan_events_total{outcome="accepted"}')})`, legend: "accepted/s (edge)" },
          { expr: `sum(${rate("worker_rows_inserted_total")})`, legend: "rows inserted/s" },
          { expr: `sum(${rate("worker_rows_duplicate_total")})`, legend: "duplicates skipped/s" },
        ],
      }),
    )
    .withPanel(
      timeseries({
        title: "Committed lag per partition",
        description:
          "consumer_group_lag: high watermark minus the group's committed offset, read from the broker by the supervisor (trust it over worker_consumer_lag, which freezes with a hung worker).",
        unit: "short",
        stacked: true,
        queries: [{ expr: "max by (topic, partition) (consumer_group_lag)", legend: "{{topic}}/{{partition}}" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Commit age per partition",
        description: "Seconds since each partition's committed offset last advanced (idle partitions grow too).",
        unit: "s",
        queries: [
          {
            expr: "max by (topic, partition) (consumer_group_commit_age_seconds)",
            legend: "{{topic}}/{{partition}}",
          },
        ],
      }),
    )
    .withPanel(
      timeseries({
        title: "Stalled seconds per partition",
        description:
          "Seconds with pending messages and no commit (0 when caught up). ConsumerStalled pages above 60 s (dashed line) for 1 min.",
        unit: "s",
        thresholdLines: [60],
        queries: [
          {
            expr: "max by (topic, partition) (consumer_group_stalled_seconds)",
            legend: "{{topic}}/{{partition}}",
          },
          { expr: "time() - max(consumer_group_lag_last_success_timestamp_seconds)", legend: "age of the lag reading" },
        ],
      }),
    )
    .withRow(row("Freshness (accept to row visible)"))
    .withPanel(
      timeseries({
        title: "Freshness percentiles",
        description:
          "scan_event_freshness_seconds: per event, from its Kafka create time (set when the edge produced it) to the sink's commit. Dashed line: the 1 s SLO.",
        unit: "s",
        thresholdLines: [1],
        queries: [0.5, 0.95, 0.99].map((q) => ({
          expr: quantile(q, "scan_event_freshness_seconds"),
          legend: `p${q * 100}`,
        })),
      }),
    )
    .withPanel(
      timeseries({
        title: "Share of events visible within 1 s",
        description: "The freshness SLI: 95% of accepted events visible in Postgres within 1 s (dashed line).",
        unit: "percentunit",
        max: 1,
        thresholdLines: [0.95],
        queries: [{ expr: shareUnder("scan_event_freshness_seconds", "1"), legend: "within 1 s" }],
      }),
    )
    .withRow(row("Workers"))
    .withPanel(
      timeseries({
        title: "Batches/s per worker",
        description:
          "Batches written and committed by each worker process (its pod in Kubernetes, its address everywhere).",
        unit: "ops",
        width: 8,
        queries: [{ expr: `sum by (${BY_PROCESS}) (${rate("worker_batches_total")})`, legend: PROCESS_LEGEND }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Write duration",
        description: "The COPY + insert + count upsert transaction, per batch.",
        unit: "s",
        width: 8,
        queries: [0.5, 0.95, 0.99].map((q) => ({
          expr: quantile(q, "worker_write_duration_seconds"),
          legend: `p${q * 100}`,
        })),
      }),
    )
    .withPanel(
      timeseries({
        title: "Assigned, paused and stalled partitions per worker",
        description:
          "Partitions each worker owns, has paused while a transient failure is retried, and holds stalled (pending work, no commit for longer than STALL_TIMEOUT_MS).",
        unit: "short",
        width: 8,
        queries: [
          { expr: `sum by (${BY_PROCESS}) (worker_assigned_partitions)`, legend: `assigned, ${PROCESS_LEGEND}` },
          { expr: `sum by (${BY_PROCESS}) (worker_paused_partitions)`, legend: `paused, ${PROCESS_LEGEND}` },
          { expr: `sum by (${BY_PROCESS}) (worker_stalled_partitions)`, legend: `stalled, ${PROCESS_LEGEND}` },
        ],
      }),
    )
    .withPanel(
      timeseries({
        title: "Worker commit age per partition",
        description:
          "Each worker's own view: seconds since an owned partition was last committed (or assigned), and whether it has uncommitted work.",
        unit: "s",
        width: 8,
        queries: [
          {
            expr: `max by (${BY_PROCESS}, partition) (worker_partition_commit_age_seconds)`,
            legend: `${PROCESS_LEGEND} p{{partition}}`,
          },
        ],
      }),
    )
    .withPanel(
      timeseries({
        title: "Retries and skipped commits/s",
        description:
          "Transient database errors retried, and commits refused because the group rebalanced (the batch is replayed as a no-op).",
        unit: "ops",
        width: 8,
        queries: [
          { expr: `sum(${rate("worker_db_retries_total")})`, legend: "DB retries/s" },
          { expr: `sum(${rate("worker_commits_skipped_total")})`, legend: "commits skipped/s" },
        ],
      }),
    )
    .withPanel(
      timeseries({
        title: "Worker health and restarts",
        description:
          "Per supervisor (pod or address), 1 while all its workers answer /health (supervisor_worker_healthy; one worker per pod in Kubernetes and compose), and restarts in the interval, by reason (exit, unhealthy).",
        unit: "short",
        width: 8,
        queries: [
          // Per supervisor: 1 while all its workers answer (one per pod in Kubernetes and compose).
          { expr: `min by (${BY_PROCESS}) (supervisor_worker_healthy)`, legend: `all healthy, ${PROCESS_LEGEND}` },
          {
            expr: "sum by (reason) (increase(supervisor_worker_restarts_total[$__rate_interval]))",
            legend: "restarts ({{reason}})",
          },
        ],
      }),
    )
    .withRow(row("Dead letters"))
    .withPanel(
      stat({
        title: "Dead letters, last 15 min",
        description:
          "Messages sent to the dead-letter topic in 15 minutes (DeadLettersAppearing opens a ticket above 0).",
        unit: "short",
        thresholdLines: [1, 100],
        queries: [{ expr: "sum(increase(worker_dead_letters_total[15m]))", legend: "dead letters" }],
      }),
    )
    .withPanel(
      timeseries({
        title: "Dead letters/s",
        description:
          "Messages the workers could not store, sent to the dead-letter topic, and those written to the dead_letters table (replay them with bun run dlq).",
        unit: "ops",
        width: 18,
        queries: [
          { expr: `sum(${rate("worker_dead_letters_total")})`, legend: "sent to the DLQ topic/s" },
          { expr: `sum(${rate("worker_dead_letters_stored_total")})`, legend: "stored in dead_letters/s" },
        ],
      }),
    );
}
