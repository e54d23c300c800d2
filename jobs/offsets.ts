// Kafka after a restore. The sink group's committed offsets are ahead of a restored database: the
// events stored after the recovery target are gone from Postgres but the group would not read them
// again. The group is moved back to where the restored rows end, per partition, and the workers
// replay from there (storing is idempotent: a replayed event already stored is a no-op).
import { type KafkaAdmin, type KafkaConfig, KafkaConsumer, KafkaError, type TopicPartitionOffset } from "bun-rdkafka";
import type postgres from "postgres";

export interface ResumePosition {
  partition: number;
  /** Highest offset stored in the restored rows + 1 (scan_events, and dead_letters from this topic); 0 when none. */
  storedNext: number;
  /** Where the group resumes: storedNext minus the rewind, never below 0. */
  resume: number;
  /** The group's committed offset before the reset (-1: none). */
  committed: number;
  highWatermark: number;
}

/**
 * How far behind the highest stored offset + 1 the group must resume. A worker writes up to
 * WRITES_IN_FLIGHT batches at once and their transactions may commit out of order, so at a
 * recovery target up to WRITES_IN_FLIGHT - 1 earlier batches may be missing while a later one is
 * stored. The missing messages of a partition then sit below the first message of that stored
 * batch, not below its last: between the highest stored offset and the first missing one lie all
 * these batches' messages of the partition, the stored one's included, at most WRITES_IN_FLIGHT ×
 * BATCH_MAX_ROWS. (Rewinding by WRITES_IN_FLIGHT - 1 batches, as first written, left a full
 * missing batch behind a full stored one unreplayed: test/integration/restore-drill.test.ts.) With
 * one write in flight nothing is stored out of order and the rewind is 0: the group resumes at
 * max(kafka_offset) + 1 exactly.
 */
export const rewindFor = (writesInFlight: number, batchMaxRows: number) =>
  writesInFlight > 1 ? writesInFlight * batchMaxRows : 0;

/** Per partition of `topic`: where the restored rows end and where the group should resume. */
export async function resumePositions(
  sql: postgres.Sql,
  admin: KafkaAdmin,
  { group, topic, rewind }: { group: string; topic: string; rewind: number },
): Promise<ResumePosition[]> {
  const stored = await sql<{ partition: number; next: string }[]>`
    select partition, max(next_offset)::text as next from (
      select kafka_partition as partition, max(kafka_offset) + 1 as next_offset from scan_events group by 1
      union all
      select source_partition, max(source_offset) + 1 from dead_letters where source_topic = ${topic} group by 1
    ) s group by 1`;
  const next = new Map(stored.map((r) => [r.partition, Number(r.next)]));
  return admin.groupLag(group, topic).map((p) => {
    const storedNext = next.get(p.partition) ?? 0;
    return {
      partition: p.partition,
      storedNext,
      resume: Math.max(0, storedNext - rewind),
      committed: p.committed,
      highWatermark: p.highWatermark,
    };
  });
}

/**
 * Commits `offsets` for `group` without joining it. Kafka refuses this while the group has
 * members (the error names the group): stop its workers first.
 */
export async function commitGroupOffsets(
  client: KafkaConfig,
  group: string,
  offsets: readonly TopicPartitionOffset[],
  { memberGoneWithinMs = 15_000 } = {},
): Promise<void> {
  const consumer = new KafkaConsumer({ config: { ...client, "group.id": group } });
  // A worker that stopped without leaving the group (killed, or its consumer not closed) stays a
  // member until its session times out (session.timeout.ms, 10 s): Kafka refuses the commit as
  // from an unknown member meanwhile. Retried until then; a group still held after that has a
  // running worker.
  const deadline = Date.now() + memberGoneWithinMs;
  try {
    for (;;) {
      try {
        await consumer.commit(offsets);
        return;
      } catch (error) {
        const held = error instanceof KafkaError && error.code === "REBALANCE";
        if (!held || Date.now() >= deadline) {
          throw new Error(
            `could not set the offsets of group ${group} (stop every worker of the group first): ${(error as Error).message}`,
            { cause: error },
          );
        }
        await Bun.sleep(1_000);
      }
    }
  } finally {
    await consumer.close(5_000);
  }
}

export function formatPositions(positions: readonly ResumePosition[]): string {
  const lines = ["partition  committed  high-watermark  restored-next  resume"];
  for (const p of positions) {
    lines.push(
      `${String(p.partition).padStart(9)}  ${String(p.committed).padStart(9)}  ${String(p.highWatermark).padStart(14)}  ${String(p.storedNext).padStart(13)}  ${String(p.resume).padStart(6)}`,
    );
  }
  return lines.join("\n");
}
