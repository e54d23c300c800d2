// Starting the real edge server (`bun server/main.ts`) as its own process, for tests and benches:
// free ports, the local stack's broker, no authentication, warnings only and no drain delay (no
// balancer in front to wait for) unless `env` says otherwise; resolves once it answers /ready. The caller stops it (stopProcess or killProcess).
import type { Subprocess } from "bun";
import { localStack } from "../shared/local-stack.ts";
import { type SpawnOptions, spawnUntilReady } from "./harness.ts";
import { freePort } from "./stack/processes.ts";

export interface EdgeServerOptions {
  /** On top of the defaults (HOST, PORT, METRICS_PORT, AUTH_DISABLED, LOG_LEVEL, KAFKA_BROKERS, DRAIN_DELAY_MS). */
  env?: Record<string, string>;
  /** Its API port; default a free one. */
  port?: number;
  /** Its metrics port; default a free one. */
  metricsPort?: number;
  output?: SpawnOptions["output"];
  readyTimeoutMs?: number;
}

export interface EdgeServer {
  proc: Subprocess;
  port: number;
  url: string;
  metricsPort: number;
  metricsUrl: string;
}

export async function startEdgeServer({
  env = {},
  port = freePort(),
  metricsPort = freePort(),
  output = "pipe",
  readyTimeoutMs = 30_000,
}: EdgeServerOptions = {}): Promise<EdgeServer> {
  const proc = await spawnUntilReady({
    name: "server",
    cmd: ["bun", "server/main.ts"],
    env: {
      HOST: "127.0.0.1",
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      AUTH_DISABLED: "true",
      LOG_LEVEL: "warn",
      KAFKA_BROKERS: localStack().brokers,
      DRAIN_DELAY_MS: "0",
      ...env,
    },
    output,
    readyUrl: `http://127.0.0.1:${port}/ready`,
    readyTimeoutMs,
  });
  return {
    proc,
    port,
    url: `http://127.0.0.1:${port}`,
    metricsPort,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
  };
}
