// The consumer group's committed lag, read from the broker (KafkaAdmin.groupLag) outside every
// worker's poll loop, so a worker stuck in a write cannot freeze the figure; exported per partition
// with its commit age and how long it has had pending messages without a commit.
// groupLag blocks (librdkafka's synchronous calls), which is fine in the supervisor: it does nothing
// latency-sensitive, and no worker's loop is involved. Nothing runs until start().
import { KafkaAdmin } from "bun-rdkafka";
import { Gauge, type Registry } from "prom-client";
import type { Logger } from "../shared/logger.ts";
import type { WorkerConfig } from "./config.ts";

/** Committed-lag bookkeeping per partition: when its committed offset last moved. */
interface PartitionLagState {
  committed: number;
  lastAdvanceAt: number;
  pendingSince: number;
}

const labelNames = ["topic", "partition"] as const;
type LagGauge = Gauge<(typeof labelNames)[number]>;

export class GroupLagExporter {
  private readonly lagGauge: LagGauge;
  private readonly committedGauge: LagGauge;
  private readonly commitAge: LagGauge;
  private readonly pendingGauge: LagGauge;
  private readonly stalledSeconds: LagGauge;
  private readonly lagReadOk: Gauge;
  private readonly lagState = new Map<number, PartitionLagState>();
  private readonly startedAt = Date.now();
  private admin: KafkaAdmin | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastLagError = "";

  constructor(
    private readonly worker: Pick<WorkerConfig, "kafkaClient" | "CONSUMER_GROUP" | "SCANS_TOPIC">,
    private readonly logger: Logger,
    registry: Registry,
  ) {
    const gauge = (name: string, help: string): LagGauge =>
      new Gauge({ name, help, labelNames, registers: [registry] });
    this.lagGauge = gauge(
      "consumer_group_lag",
      "High watermark minus the group's committed offset, read from the broker",
    );
    this.committedGauge = gauge(
      "consumer_group_committed_offset",
      "The group's committed offset (next offset to read)",
    );
    this.commitAge = gauge(
      "consumer_group_commit_age_seconds",
      "Seconds since the partition's committed offset last advanced (since the supervisor started, if it has not)",
    );
    this.pendingGauge = gauge("consumer_group_pending", "1 while the partition has uncommitted messages (lag > 0)");
    this.stalledSeconds = gauge(
      "consumer_group_stalled_seconds",
      "Seconds the partition has had pending messages without its committed offset advancing (0 when caught up)",
    );
    this.lagReadOk = new Gauge({
      name: "consumer_group_lag_last_success_timestamp_seconds",
      help: "When the committed lag was last read from the broker",
      registers: [registry],
    });
  }

  /** Connects the admin client and reads the lag every `intervalMs`. */
  start(intervalMs: number): void {
    this.admin = new KafkaAdmin({ config: this.worker.kafkaClient });
    this.timer = setInterval(() => this.read(), intervalMs);
  }

  /** Stops reading; close() releases the admin client. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  close(): void {
    this.admin?.close();
    this.admin = null;
  }

  private read(): void {
    const admin = this.admin;
    if (!admin || !this.timer) return;
    const { SCANS_TOPIC, CONSUMER_GROUP } = this.worker;
    try {
      const now = Date.now();
      const lags = admin.groupLag(CONSUMER_GROUP, SCANS_TOPIC, 2_000);
      for (const p of lags) {
        const l = { topic: SCANS_TOPIC, partition: String(p.partition) };
        let s = this.lagState.get(p.partition);
        if (!s) {
          s = { committed: p.committed, lastAdvanceAt: this.startedAt, pendingSince: now };
          this.lagState.set(p.partition, s);
        }
        if (p.committed !== s.committed) {
          s.committed = p.committed;
          s.lastAdvanceAt = now;
        }
        const pending = p.lag > 0;
        if (!pending) s.pendingSince = now;
        this.lagGauge.set(l, p.lag);
        this.committedGauge.set(l, p.committed);
        this.commitAge.set(l, (now - s.lastAdvanceAt) / 1000);
        this.pendingGauge.set(l, pending ? 1 : 0);
        this.stalledSeconds.set(l, pending ? (now - Math.max(s.lastAdvanceAt, s.pendingSince)) / 1000 : 0);
      }
      this.lagReadOk.set(now / 1000);
      this.lastLagError = "";
    } catch (error) {
      // Logged once per distinct failure, not every interval: a broker outage is one event.
      const message = (error as Error).message;
      if (message !== this.lastLagError) this.logger.warn({ err: message }, "could not read the committed lag");
      this.lastLagError = message;
    }
  }
}
