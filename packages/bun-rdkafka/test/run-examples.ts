// Runs the examples (examples/*.ts) as a user would, from a folder where `bun-rdkafka` resolves:
// this workspace, or a throwaway project that installed the packed tarball.
import { uniqueName } from "../../../test/helpers/fixtures.ts";
import { ensureStack } from "../../../test/helpers/stack.ts";
import { runToEnd } from "../../../tools/harness.ts";

/** Runs one example to its end; a non-zero exit fails with the example's own output. */
export async function runExample(cwd: string, file: string, env: Record<string, string>): Promise<string> {
  const r = await runToEnd({ cmd: ["bun", file], cwd, env, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${file} exited with ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** produce → consume (101 messages, committed) → lag, against `topic`; returns the three outputs. */
export async function produceConsumeLag(cwd: string, topic: string) {
  const stack = await ensureStack();
  const env = { KAFKA_BROKERS: stack.brokers, KAFKA_TOPIC: topic, KAFKA_GROUP: uniqueName("example"), EXPECT: "101" };
  const produced = await runExample(cwd, "produce.ts", env);
  const consumed = await runExample(cwd, "consume.ts", env);
  const lag = await runExample(cwd, "lag.ts", env);
  return { produced, consumed, lag };
}
