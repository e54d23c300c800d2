// Builds the edge app in-process against the real broker, with a random topic per test.
import postgres, { type Sql } from "postgres";
import { freePort } from "../../scripts/stack/processes.ts";
import { createApp } from "../../server/app.ts";
import { sha256 } from "../../server/auth.ts";
import { loadServerConfig } from "../../server/config.ts";
import { createServerMetrics } from "../../server/metrics.ts";
import { localStack } from "../../shared/local-stack.ts";
import { type Logger, createLogger } from "../../shared/logger.ts";
import { createRegistry } from "../../shared/metrics.ts";
import { brokerConfig, createProducer, createTopic, onCleanup } from "./kafka.ts";

export const API_KEY = "test-key-123";

/** A pool for tests that never reach the read side: connects lazily, so it never connects. */
function unusedSql(): Sql {
  const sql = postgres(localStack().databaseUrl, { prepare: false, max: 1 });
  onCleanup(() => sql.end({ timeout: 1 }));
  return sql;
}

export async function createTestApp(
  env: Record<string, string> = {},
  {
    waitForKafka = true,
    sql = unusedSql(),
    onStats,
    logger = createLogger("server-test", "silent"),
    topic,
  }: {
    waitForKafka?: boolean;
    sql?: Sql;
    onStats?: (json: string) => void;
    logger?: Logger;
    /** An existing topic to send to; default: a fresh one of 3 partitions. */
    topic?: string;
  } = {},
) {
  topic ??= await createTopic(3);
  const config = loadServerConfig({
    KAFKA_BROKERS: String(brokerConfig["bootstrap.servers"]),
    SCANS_TOPIC: topic,
    API_KEY_SHA256: sha256(API_KEY).toString("hex"),
    ...env,
  });
  // The producer the server would make: from the same config (loadServerConfig(env).kafka).
  const producer = createProducer(config.kafka, { onStats });
  if (waitForKafka) await producer.waitUntilConnected(10_000);
  const registry = createRegistry("server-test");
  const metrics = createServerMetrics(registry, () => producer);
  let draining = false;
  const app = createApp({
    config,
    producer,
    sql,
    metrics,
    logger,
    isDraining: () => draining,
  });
  const post = (body: RequestInit["body"], headers: Record<string, string> = {}) =>
    app.request("/v1/scans", {
      method: "POST",
      body,
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json", ...headers },
    });
  return {
    app,
    topic,
    config,
    producer,
    registry,
    post,
    setDraining: (d: boolean) => {
      draining = d;
    },
  };
}

export function scan(overrides: Record<string, unknown> = {}) {
  return {
    event_id: crypto.randomUUID(),
    qr_id: `QR-${Math.floor(Math.random() * 1000)}`,
    scanned_at: new Date().toISOString(),
    ...overrides,
  };
}

export { freePort } from "../../scripts/stack/processes.ts";

/** Starts `bun server/main.ts` as its own process; it is killed by pid after the test. */
export async function spawnServer(env: Record<string, string>) {
  const port = freePort();
  const metricsPort = freePort();
  const proc = Bun.spawn(["bun", "server/main.ts"], {
    cwd: new URL("../..", import.meta.url).pathname,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      AUTH_DISABLED: "true",
      LOG_LEVEL: "warn",
      KAFKA_BROKERS: String(brokerConfig["bootstrap.servers"]),
      ...env,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  onCleanup(async () => {
    if (proc.exitCode === null) proc.kill("SIGKILL");
    await proc.exited;
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const ok = await fetch(`${url}/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { proc, url, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` };
    if (proc.exitCode !== null) break;
    await Bun.sleep(100);
  }
  throw new Error(`server did not become ready: ${await new Response(proc.stderr).text()}`);
}
