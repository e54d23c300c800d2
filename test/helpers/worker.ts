// Worker processes and scan records for worker tests: random topics and groups per test, every
// process stopped by pid afterwards.
import { type ScanEvent, toScanRecord } from "../../shared/event.ts";
import type { KafkaProducer } from "../../shared/kafka/index.ts";
import { parsePrometheusText } from "../../shared/prometheus-text.ts";
import { brokerConfig, createTopic, onCleanup, uniqueName } from "./kafka.ts";
import { freePort, scan } from "./server.ts";

export { waitFor } from "./wait.ts";

export interface WorkerEnv {
  scansTopic: string;
  deadLetterTopic: string;
  group: string;
  databaseUrl: string;
}

export async function workerEnv(databaseUrl: string, partitions = 6): Promise<WorkerEnv> {
  return {
    scansTopic: await createTopic(partitions),
    deadLetterTopic: await createTopic(2),
    group: uniqueName("sink"),
    databaseUrl,
  };
}

/** The environment of a worker process (or of the supervisor) bound to this test's topics and database. */
export function workerProcessEnv(env: WorkerEnv): Record<string, string> {
  return {
    KAFKA_BROKERS: String(brokerConfig["bootstrap.servers"]),
    SCANS_TOPIC: env.scansTopic,
    DEAD_LETTER_TOPIC: env.deadLetterTopic,
    CONSUMER_GROUP: env.group,
    DEAD_LETTER_GROUP: `${env.group}-dlq`,
    DATABASE_URL: env.databaseUrl,
    LOG_LEVEL: "warn",
    DB_RETRY_BASE_MS: "50",
    DB_RETRY_CAP_MS: "1000",
    // A supervisor started with this environment picks a free port for its own metrics.
    SUPERVISOR_METRICS_PORT: "0",
  };
}

export function spawnWorker(env: WorkerEnv, extra: Record<string, string> = {}) {
  const metricsPort = freePort();
  const proc = Bun.spawn(["bun", "worker/main.ts"], {
    cwd: new URL("../..", import.meta.url).pathname,
    env: { ...process.env, ...workerProcessEnv(env), METRICS_PORT: String(metricsPort), ...extra },
    stdout: "inherit",
    stderr: "inherit",
  });
  onCleanup(async () => {
    if (proc.exitCode === null) proc.kill("SIGKILL");
    await proc.exited;
  });
  return { proc, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` };
}

/** What the edge would write to Kafka for `event`. */
export function record(event: ScanEvent = scan() as ScanEvent) {
  return { event, value: JSON.stringify(toScanRecord(event, new Date().toISOString(), "127.0.0.1")) };
}

export async function produceEvents(producer: KafkaProducer, topic: string, events: readonly ScanEvent[]) {
  await producer.send(events.map((e) => ({ topic, key: e.qr_id, value: record(e).value })));
}

export function events(n: number, qrIds = 20): ScanEvent[] {
  return Array.from({ length: n }, (_, i) => scan({ qr_id: `QR-${i % qrIds}` }) as ScanEvent);
}

/** Polls `check` until it is true or `timeoutMs` passes; returns whether it became true. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 60_000, everyMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await Bun.sleep(everyMs);
  }
  return check();
}

/** All samples of a Prometheus endpoint (empty when it does not answer). */
export async function scrape(url: string) {
  const text = await fetch(url).then(
    (r) => r.text(),
    () => "",
  );
  return parsePrometheusText(text);
}

export async function metric(url: string, name: string): Promise<number> {
  const text = await fetch(url).then(
    (r) => r.text(),
    () => "",
  );
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line ? Number(line.split(" ").at(-1)) : Number.NaN;
}
