// The real local stack the integration tests run against (Kafka, Postgres, pgbouncer), located
// from the same STACK_* variables as `bun run stack`. Importing this starts nothing: an integration
// file calls `await ensureStack()` at its top, so any file can also run alone, and unit tests
// never need the stack.
import type { KafkaConfig } from "bun-rdkafka";
import { type LocalStack, localStack } from "../../shared/local-stack.ts";
import { up } from "../../tools/stack.ts";

export const stack = localStack();
export const brokerConfig: KafkaConfig = { "bootstrap.servers": stack.brokers };

let started: Promise<void> | undefined;

/** Starts whatever of the stack is not running (idempotent; once per process) and returns where it listens. */
export async function ensureStack(): Promise<LocalStack> {
  started ??= up();
  await started;
  return stack;
}
