// The edge's /ready against the producer's two Kafka states (server/app.ts): `connected` now, and
// `hasConnected` (once, ever). READY_REQUIRES_KAFKA=false keeps a server that has connected in
// rotation through an outage, but not a new one that never reached Kafka (a canary pod would take
// traffic only to answer 503). The real producer's never-connected case runs against an
// unreachable broker in test/integration/server-ingest.test.ts.
import { describe, expect, test } from "bun:test";
import type { KafkaProducer } from "bun-rdkafka";
import type { Sql } from "postgres";
import { createApp } from "../../server/app.ts";
import { loadServerConfig } from "../../server/config.ts";
import { createServerMetrics } from "../../server/metrics.ts";
import { createLogger } from "../../shared/logger.ts";
import { createRegistry } from "../../shared/metrics.ts";

/** /ready's status for a producer in the given state, with READY_REQUIRES_KAFKA as given. */
async function readyStatus(requiresKafka: "true" | "false", state: { connected: boolean; hasConnected: boolean }) {
  const config = loadServerConfig({ API_KEY_SHA256: "ab".repeat(32), READY_REQUIRES_KAFKA: requiresKafka });
  const app = createApp({
    config,
    producer: { ...state, fatalError: null } as unknown as KafkaProducer,
    sql: {} as Sql,
    metrics: createServerMetrics(createRegistry("ready-test"), () => null),
    logger: createLogger("ready-test", "silent"),
    isDraining: () => false,
  });
  const res = await app.request("/ready");
  return { status: res.status, body: await res.json() };
}

const NEVER = { connected: false, hasConnected: false };
const OUTAGE = { connected: false, hasConnected: true };
const UP = { connected: true, hasConnected: true };

describe("/ready and Kafka", () => {
  test("READY_REQUIRES_KAFKA=false: not Ready before the first connection, Ready after it, outages included", async () => {
    expect(await readyStatus("false", NEVER)).toEqual({ status: 503, body: { status: "waiting for Kafka" } });
    expect(await readyStatus("false", UP)).toEqual({ status: 200, body: { status: "ready" } });
    expect(await readyStatus("false", OUTAGE)).toEqual({ status: 200, body: { status: "ready" } });
  });

  test("READY_REQUIRES_KAFKA=true (the default): Ready only while connected", async () => {
    expect((await readyStatus("true", NEVER)).status).toBe(503);
    expect((await readyStatus("true", OUTAGE)).status).toBe(503);
    expect((await readyStatus("true", UP)).status).toBe(200);
  });
});
