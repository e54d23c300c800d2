// The configuration of the Kafka-facing operator jobs (`dlq`, `restore-offsets`): the worker's own
// variables for the topics, groups, batches and security (shared/pipeline-config.ts, the same
// entries worker/config.ts reads), resolved once per run. As an operator they connect as the
// database owner by default, not as the worker (which may not read dead letters).
import * as v from "valibot";
import { type DURABLE_PRODUCER, loadConfig, str } from "../shared/config.ts";
import { localStack } from "../shared/local-stack.ts";
import {
  BATCH_MAX_ROWS,
  SinkKafkaEntries,
  WRITES_IN_FLIGHT,
  pipelineKafkaSettings,
} from "../shared/pipeline-config.ts";

export const OpsConfigSchema = v.object({
  ...SinkKafkaEntries,
  DATABASE_URL: str(localStack().databaseUrl),
  BATCH_MAX_ROWS,
  WRITES_IN_FLIGHT,
});

export type OpsConfig = v.InferOutput<typeof OpsConfigSchema> & {
  /** The producer's settings (dlq replay): as the worker's, KAFKA_OPT_* and security included. */
  kafka: Record<string, string | number | boolean>;
  /** Where and how to connect, nothing else: for the admin client and the one-shot consumers. */
  kafkaClient: Record<string, string>;
  producer: typeof DURABLE_PRODUCER;
};

export function loadOpsConfig(env: Record<string, string | undefined> = process.env): OpsConfig {
  const c = loadConfig(OpsConfigSchema, env);
  const { kafka, kafkaClient, producer } = pipelineKafkaSettings(c, env);
  return { ...c, kafka, kafkaClient, producer };
}
