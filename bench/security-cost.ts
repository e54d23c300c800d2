// What auth, rate limits and CORS cost per request in the edge's own code, feature by feature: the
// real app (server/app.ts) in-process with a producer that acknowledges at once, so neither the
// network nor Kafka blurs a few microseconds. Prints µs per single-event POST for each variant,
// three rounds; then ns per peer matched against TRUSTED_PROXIES' CIDRs (once per request behind a
// proxy). bench/server.ts measures the same over the wire, end to end.
//   bun bench/security-cost.ts
import type { KafkaProducer } from "bun-rdkafka";
import { createApp } from "../server/app.ts";
import { loadServerConfig } from "../server/config.ts";
import { createServerMetrics } from "../server/metrics.ts";
import { TrustedProxies } from "../server/trusted-proxies.ts";
import { newSecret } from "../shared/api-keys.ts";
import { createLogger } from "../shared/logger.ts";
import { createRegistry } from "../shared/metrics.ts";

const producer = {
  fatalError: null,
  connected: true,
  send: async () => {},
  queueLength: 0,
} as unknown as KafkaProducer;
const KEY = newSecret(); // a static key of the generated shape, the only one the edge accepts
const ORIGIN = "https://scanner.example";
function build(env: Record<string, string>) {
  const config = loadServerConfig({ API_KEYS_DB: "false", ...env });
  const registry = createRegistry("mb");
  return createApp({
    config,
    producer,
    metrics: createServerMetrics(registry, () => producer),
    logger: createLogger("mb", "silent"),
    sql: {} as never,
    isDraining: () => false,
  });
}
const on = build({
  AUTH_DISABLED: "false",
  API_KEY_SHA256: new Bun.CryptoHasher("sha256").update(KEY).digest("hex"),
  RATE_LIMIT_EVENTS_PER_SECOND: "1000000000",
  RATE_LIMIT_BURST: "1000000000",
  AUTH_FAILURES_PER_MINUTE: "60",
  CORS_ORIGINS: ORIGIN,
});
const off = build({ AUTH_DISABLED: "true", RATE_LIMIT_EVENTS_PER_SECOND: "0", AUTH_FAILURES_PER_MINUTE: "0" });
const body = JSON.stringify({
  event_id: "00000000-0000-4000-8000-000000000001",
  qr_id: "QR-1",
  scanned_at: new Date().toISOString(),
});
const req = (withSec: boolean) =>
  new Request("http://h/v1/scans", {
    method: "POST",
    body,
    headers: withSec
      ? { authorization: `Bearer ${KEY}`, origin: ORIGIN, "content-type": "application/json" }
      : { "content-type": "application/json" },
  });
async function time(app: ReturnType<typeof build>, sec: boolean, n: number) {
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    const r = await app.fetch(req(sec));
    if (r.status !== 202) throw new Error(`status ${r.status} ${await r.text()}`);
  }
  return ((performance.now() - t) * 1000) / n;
}
const H = new Bun.CryptoHasher("sha256").update(KEY).digest("hex");
const variants = {
  off: [off, false],
  authOnly: [
    build({
      AUTH_DISABLED: "false",
      API_KEY_SHA256: H,
      RATE_LIMIT_EVENTS_PER_SECOND: "0",
      AUTH_FAILURES_PER_MINUTE: "0",
    }),
    true,
  ],
  authIp: [
    build({
      AUTH_DISABLED: "false",
      API_KEY_SHA256: H,
      RATE_LIMIT_EVENTS_PER_SECOND: "0",
      AUTH_FAILURES_PER_MINUTE: "60",
    }),
    true,
  ],
  authKeyLimit: [
    build({
      AUTH_DISABLED: "false",
      API_KEY_SHA256: H,
      RATE_LIMIT_EVENTS_PER_SECOND: "1000000000",
      RATE_LIMIT_BURST: "1000000000",
      AUTH_FAILURES_PER_MINUTE: "0",
    }),
    true,
  ],
  authCors: [
    build({
      AUTH_DISABLED: "false",
      API_KEY_SHA256: H,
      RATE_LIMIT_EVENTS_PER_SECOND: "0",
      AUTH_FAILURES_PER_MINUTE: "0",
      CORS_ORIGINS: ORIGIN,
    }),
    true,
  ],
  on: [on, true],
} as const;
console.log("µs per single-event POST /v1/scans (in-process, Kafka acknowledged at once):");
for (let round = 0; round < 3; round++) {
  const line: string[] = [];
  for (const [name, [app, sec]] of Object.entries(variants))
    line.push(`${name} ${(await time(app, sec, 20000)).toFixed(2)}`);
  console.log(line.join("  "));
}

// A peer matched against four CIDRs (three of four peers trusted), as the edge does once per
// request when TRUSTED_PROXIES is set.
const trusted = new TrustedProxies(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]);
const peers = ["10.1.2.3", "203.0.113.9", "::ffff:192.168.1.1", "172.31.255.255"];
for (let round = 0; round < 3; round++) {
  let hits = 0;
  const n = 1_000_000;
  const started = performance.now();
  for (let i = 0; i < n; i++) if (trusted.has(peers[i & 3] as string)) hits++;
  if (hits !== n * 0.75) throw new Error(`${hits} of ${n} peers matched, expected ${n * 0.75}`);
  console.log(
    `TRUSTED_PROXIES: ${(((performance.now() - started) * 1e6) / n).toFixed(0)} ns per peer matched (4 CIDRs)`,
  );
}
