// The edge's and the worker's own code per event, in-process, without the network, Kafka or
// Postgres blurring a microsecond: CPU µs per event of the real app (server/app.ts through
// app.fetch, a producer that acknowledges at once) for 10-event JSON and NDJSON batches and single
// events, and of the worker's decode (shared/scan-events.ts) per message. With --rev, the same for
// an earlier revision (checked out beside this one for the run), alternating, in one run.
//   bun bench/hotpath.ts [--rev d49cec8] [--rounds 5] [--requests 20000]
// bench/e2e.ts measures the processes whole (HTTP, FFI, librdkafka's threads included).
import { checkoutOf } from "../tools/tree-copies.ts";
import { arg, median, numArg, printTable } from "./lib.ts";

const rev = arg("rev", "");
const rounds = numArg("rounds", 5);
const requests = numArg("requests", 20_000);
const root = new URL("..", import.meta.url).pathname;

interface Code {
  name: string;
  dir: string;
}

/** An earlier revision beside this checkout (with its own packages/), removed at the end. */
function checkout(r: string): Code & { remove: () => void } {
  return { name: r, ...checkoutOf(r, "hotpath") };
}

const producer = { fatalError: null, connected: true, hasConnected: true, queueLength: 0, send: async () => {} };

async function edgeOf(dir: string) {
  const { createApp } = await import(`${dir}server/app.ts`);
  const { loadServerConfig } = await import(`${dir}server/config.ts`);
  const { createServerMetrics } = await import(`${dir}server/metrics.ts`);
  const { createLogger } = await import(`${dir}shared/logger.ts`);
  const { createRegistry } = await import(`${dir}shared/metrics.ts`);
  // As bench/e2e.ts runs it: AUTH_DISABLED, the default limits.
  const config = loadServerConfig({ AUTH_DISABLED: "true", API_KEYS_DB: "false" });
  const app = createApp({
    config,
    producer,
    metrics: createServerMetrics(createRegistry("bench"), () => producer),
    logger: createLogger("bench", "silent"),
    sql: {} as never,
    isDraining: () => false,
  });
  return app as { fetch: (r: Request) => Promise<Response> | Response };
}

let counter = 0;
/** What scanners send (and bench/load.ts makes): a millisecond UTC scanned_at. */
function event(scannedAt: string): string {
  const n = counter++;
  const id = `00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
  return `{"event_id":"${id}","qr_id":"QR-${n % 5000}","scanned_at":"${scannedAt}","scanner_id":"bench"}`;
}

const SCENARIOS = { batch: 10, ndjson: 10, single: 1 } as const;
type Scenario = keyof typeof SCENARIOS;

function bodies(scenario: Scenario): { body: string; type: string }[] {
  const at = new Date().toISOString();
  return Array.from({ length: 200 }, () => {
    const events = Array.from({ length: SCENARIOS[scenario] }, () => event(at));
    if (scenario === "single") return { body: events[0] as string, type: "application/json" };
    if (scenario === "ndjson") return { body: events.join("\n"), type: "application/x-ndjson" };
    return { body: `[${events.join(",")}]`, type: "application/json" };
  });
}

const cpuMicros = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

async function edgeMicrosPerEvent(app: Awaited<ReturnType<typeof edgeOf>>, scenario: Scenario): Promise<number> {
  const prepared = bodies(scenario);
  const n = scenario === "single" ? requests : requests / 10;
  const started = cpuMicros();
  for (let i = 0; i < n; i++) {
    const { body, type } = prepared[i % prepared.length] as { body: string; type: string };
    const res = await app.fetch(
      new Request("http://bench/v1/scans", { method: "POST", body, headers: { "content-type": type } }),
    );
    if (res.status !== 202) throw new Error(`${scenario}: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  }
  return (cpuMicros() - started) / (n * SCENARIOS[scenario]);
}

async function decoderOf(dir: string) {
  const { decode, isPoison } = await import(`${dir}shared/scan-events.ts`);
  const { toScanRecord, timestampOf } = await import(`${dir}shared/event.ts`);
  const now = Date.now();
  const messages = Array.from({ length: 20_000 }, (_, i) => ({
    topic: "scans",
    partition: i % 12,
    offset: i,
    key: null,
    headers: null,
    timestamp: now,
    value: Buffer.from(
      JSON.stringify(toScanRecord(JSON.parse(event(timestampOf(now - i))), timestampOf(now), "10.0.0.1")),
    ),
  }));
  return () => {
    const started = cpuMicros();
    for (const m of messages) if (isPoison(decode(m))) throw new Error("a valid record was taken for poison");
    return (cpuMicros() - started) / messages.length;
  };
}

const codes: (Code & { remove?: () => void })[] = [{ name: "this checkout", dir: root }];
if (rev) codes.unshift(checkout(rev));
try {
  const edges = await Promise.all(codes.map((c) => edgeOf(c.dir)));
  const decoders = await Promise.all(codes.map((c) => decoderOf(c.dir)));
  const samples = new Map<string, number[]>();
  const add = (key: string, v: number) => samples.set(key, [...(samples.get(key) ?? []), v]);
  // Round 0 warms the JIT and is not counted; the order alternates between rounds.
  for (let round = 0; round <= rounds; round++) {
    const order = round % 2 ? [...codes.keys()].reverse() : [...codes.keys()];
    for (const i of order) {
      const name = (codes[i] as Code).name;
      for (const scenario of Object.keys(SCENARIOS) as Scenario[]) {
        const v = await edgeMicrosPerEvent(edges[i] as Awaited<ReturnType<typeof edgeOf>>, scenario);
        if (round > 0) add(`${name}\u0000edge, ${scenario}`, v);
      }
      const v = (decoders[i] as () => number)();
      if (round > 0) add(`${name}\u0000worker decode`, v);
    }
  }
  const rows = [...samples].map(([key, values]) => {
    const [code = "", what = ""] = key.split("\u0000");
    return { code, what, "µs CPU per event (median)": median(values).toFixed(2), rounds: values.length };
  });
  printTable(rows.sort((a, b) => a.what.localeCompare(b.what)));
} finally {
  for (const c of codes) c.remove?.();
}
