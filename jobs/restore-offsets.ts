// After Postgres was restored to an earlier point (docs/runbooks/restore.md): moves the sink's
// consumer group back to where the restored rows end, per partition, so the workers replay the
// events acknowledged after the recovery target; and the dead-letter group to the start of its
// topic (storing a dead letter is idempotent, so the ones lost with the restore come back).
//   bun run restore-offsets [--dry-run]
// Every worker of both groups must be stopped (Kafka refuses to move a group that has members).
// Configuration: the worker's (KAFKA_BROKERS, SCANS_TOPIC, DEAD_LETTER_TOPIC, CONSUMER_GROUP,
// DEAD_LETTER_GROUP, DATABASE_URL, WRITES_IN_FLIGHT, BATCH_MAX_ROWS; docs/operations.md).
import { KafkaAdmin } from "bun-rdkafka";
import postgres from "postgres";
import { type CliSpec, MAIN, parseCommand, runCli } from "../shared/cli.ts";
import { loadOpsConfig } from "./config.ts";
import { commitGroupOffsets, formatPositions, resumePositions, rewindFor } from "./offsets.ts";

export const RESTORE_OFFSETS_CLI: CliSpec = {
  program: "bun run restore-offsets",
  description:
    "After a Postgres restore: moves the stopped sink group back to where the restored rows end, and the dead-letter group to the start.",
  commands: {
    [MAIN]: {
      args: "",
      description: "every worker of both groups must be stopped",
      options: { "dry-run": { type: "boolean", description: "print the positions, change no offset" } },
    },
  },
};

async function main(argv: string[]): Promise<number> {
  const dryRun = parseCommand(RESTORE_OFFSETS_CLI, argv).values["dry-run"] === true;
  const config = loadOpsConfig();
  const admin = new KafkaAdmin({ config: config.kafkaClient });
  const sql = postgres(config.DATABASE_URL, { max: 1, prepare: false, onnotice: () => {} });
  try {
    const rewind = rewindFor(config.WRITES_IN_FLIGHT, config.BATCH_MAX_ROWS);
    const positions = await resumePositions(sql, admin, {
      group: config.CONSUMER_GROUP,
      topic: config.SCANS_TOPIC,
      rewind,
    });
    console.log(
      `group ${config.CONSUMER_GROUP} on ${config.SCANS_TOPIC} (resume = restored-next - ${rewind}: with WRITES_IN_FLIGHT > 1, WRITES_IN_FLIGHT batches of BATCH_MAX_ROWS, a stored one and the ones before it that may be missing):`,
    );
    console.log(formatPositions(positions));
    const [dlq] = admin.describeTopics([config.DEAD_LETTER_TOPIC]);
    if (!dlq || dlq.err !== 0) throw new Error(`topic ${config.DEAD_LETTER_TOPIC} does not exist`);
    console.log(
      `group ${config.DEAD_LETTER_GROUP} on ${config.DEAD_LETTER_TOPIC}: from the start of its ${dlq.partitions.length} partition(s)`,
    );
    if (dryRun) {
      console.log("dry run: no offsets changed");
      return 0;
    }
    await commitGroupOffsets(
      config.kafkaClient,
      config.CONSUMER_GROUP,
      positions.map((p) => ({ topic: config.SCANS_TOPIC, partition: p.partition, offset: p.resume })),
    );
    // Offset 0 below the log start is out of range: the consumer starts at the earliest (auto.offset.reset).
    await commitGroupOffsets(
      config.kafkaClient,
      config.DEAD_LETTER_GROUP,
      dlq.partitions.map((p) => ({ topic: config.DEAD_LETTER_TOPIC, partition: p.id, offset: 0 })),
    );
    console.log("offsets set: start the workers to replay");
    return 0;
  } finally {
    await sql.end();
    admin.close();
  }
}

if (import.meta.main) await runCli(RESTORE_OFFSETS_CLI, main);
