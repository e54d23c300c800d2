// Stored rows against committed offsets, for worker tests that stop a worker mid-stream: what
// Postgres holds per Kafka partition and what the consumer group has committed there.
import type { KafkaAdmin } from "bun-rdkafka";
import type postgres from "postgres";

export interface PartitionState {
  partition: number;
  /** The group's committed offset (next to read); 0 when it has committed nothing. */
  committed: number;
  highWatermark: number;
  /** Rows in scan_events from this partition, and the highest stored offset + 1 (0 when none). */
  rows: number;
  storedNext: number;
}

/**
 * Per partition of `topic`: rows stored and the group's committed offset. The database is read
 * first, then the committed offsets: stored rows never disappear, so a partition whose stored
 * offsets reach past its committed offset was in the window between the DB commit and the offset
 * commit at the second read.
 */
export async function storedVsCommitted(
  sql: postgres.Sql,
  admin: KafkaAdmin,
  group: string,
  topic: string,
): Promise<PartitionState[]> {
  const stored = await sql<{ partition: number; rows: number; next: string }[]>`
    select kafka_partition as partition, count(*)::int as rows, max(kafka_offset) + 1 as next
    from scan_events group by 1`;
  const byPartition = new Map(stored.map((r) => [r.partition, r]));
  return admin.groupLag(group, topic).map((p) => ({
    partition: p.partition,
    committed: Math.max(p.committed, 0),
    highWatermark: p.highWatermark,
    rows: byPartition.get(p.partition)?.rows ?? 0,
    storedNext: Number(byPartition.get(p.partition)?.next ?? 0),
  }));
}

export const totals = (ps: readonly PartitionState[]) => ({
  rows: ps.reduce((s, p) => s + p.rows, 0),
  committed: ps.reduce((s, p) => s + p.committed, 0),
  produced: ps.reduce((s, p) => s + p.highWatermark, 0),
  /** Partitions holding stored rows past their committed offset. */
  inWindow: ps.filter((p) => p.storedNext > p.committed).map((p) => p.partition),
});
