// Kafka's own perf tools (kafka-producer-perf-test = ProducerPerformance, kafka-consumer-perf-test
// = ConsumerPerformance), run with `java` from the stack's jars: the reference the Kafka benches
// compare the JS-side clients with. Used by kafka-producer.ts and kafka-clients.ts.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LocalStack } from "../shared/local-stack.ts";
import { javaClasspath } from "../tools/stack/kafka.ts";

export interface PerfTestResult {
  recordsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

function java(stack: LocalStack, mainClass: string, args: string[], timeoutMs: number) {
  const res = spawnSync("java", ["-Xmx512m", "-cp", javaClasspath(stack), mainClass, ...args], {
    encoding: "utf8",
    timeout: timeoutMs,
  });
  if (res.error || res.status !== 0) {
    throw new Error(
      `${mainClass} failed (${res.error?.message ?? `exit ${res.status}`}):\n${res.stdout}\n${res.stderr}`,
    );
  }
  return res.stdout;
}

/**
 * kafka-producer-perf-test: `records` records of `payload` (written to a payload file, so the Java
 * tool sends the very bytes the JS clients send) at `throughput` records/s (-1: as fast as it can).
 */
export function producerPerfTest(
  stack: LocalStack,
  opts: {
    topic: string;
    records: number;
    payload?: Buffer;
    size?: number;
    throughput?: number;
    props: Record<string, string>;
  },
): PerfTestResult {
  const dir = mkdtempSync(join(tmpdir(), "perf-test-"));
  try {
    const payloadArgs: string[] = [];
    if (opts.payload) {
      writeFileSync(join(dir, "payload"), opts.payload);
      payloadArgs.push("--payload-file", join(dir, "payload"));
    } else payloadArgs.push("--record-size", String(opts.size ?? 100));
    const props = Object.entries({ "bootstrap.servers": stack.brokers, ...opts.props }).map(([k, v]) => `${k}=${v}`);
    const out = java(
      stack,
      "org.apache.kafka.tools.ProducerPerformance",
      [
        "--topic",
        opts.topic,
        "--num-records",
        String(opts.records),
        ...payloadArgs,
        "--throughput",
        String(opts.throughput ?? -1),
        "--producer-props",
        ...props,
      ],
      600_000,
    );
    const last = out.trim().split("\n").at(-1) ?? "";
    const m = last.match(/records sent, ([\d.]+) records\/sec .*?, (\d+) ms 50th, \d+ ms 95th, (\d+) ms 99th/);
    if (!m) throw new Error(`kafka-producer-perf-test gave no result:\n${out}`);
    return { recordsPerSec: Number(m[1]), p50Ms: Number(m[2]), p99Ms: Number(m[3]) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * kafka-consumer-perf-test: reads `messages` from the start of `topic` in a new group; messages/s
 * over the fetch time (group join excluded). The tool cannot commit every N messages: it uses the
 * consumer's auto-commit (`props`).
 */
export function consumerPerfTest(
  stack: LocalStack,
  opts: { topic: string; messages: number; group: string; props: Record<string, string> },
): number {
  const dir = mkdtempSync(join(tmpdir(), "perf-test-"));
  try {
    const config = join(dir, "consumer.properties");
    writeFileSync(
      config,
      `${Object.entries(opts.props)
        .map(([k, v]) => `${k}=${v}`)
        .join("\n")}\n`,
    );
    const out = java(
      stack,
      "org.apache.kafka.tools.ConsumerPerformance",
      [
        "--bootstrap-server",
        stack.brokers,
        "--topic",
        opts.topic,
        "--messages",
        String(opts.messages),
        "--group",
        opts.group,
        "--timeout",
        "60000",
        "--consumer.config",
        config,
      ],
      600_000,
    );
    // Header: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    // rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    const lines = out.trim().split("\n");
    const header = lines.findIndex((l) => l.includes("fetch.nMsg.sec"));
    const row = lines[header + 1]?.split(",").map((s) => s.trim());
    const cols = lines[header]?.split(",").map((s) => s.trim()) ?? [];
    const consumed = Number(row?.[cols.indexOf("data.consumed.in.nMsg")]);
    const rate = Number(row?.[cols.indexOf("fetch.nMsg.sec")]);
    if (header < 0 || !Number.isFinite(rate) || consumed < opts.messages) {
      throw new Error(`kafka-consumer-perf-test gave no result for ${opts.messages} messages:\n${out}`);
    }
    return rate;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
