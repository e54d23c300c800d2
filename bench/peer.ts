// Side by side: our Bun server (Hono + bun:ffi librdkafka binding) and a Node.js 20 peer with the
// same edge contract (@hono/node-server + @confluentinc/kafka-javascript, bench/peer/), against
// the same broker and topic, one at a time, measured by the same load generator in one run.
//   bun bench/peer.ts [--duration 10]
// Prints req/s and events/s (closed loop) and p99 at a common open-loop rate, with ratios.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { KafkaAdmin } from "bun-rdkafka";
import { localStack } from "../shared/local-stack.ts";
import { spawnUntilReady, stopProcess } from "../tools/harness.ts";
import { startKafka } from "../tools/stack/kafka.ts";
import { freePort } from "../tools/stack/processes.ts";
import { numArg, printTable, saveResults } from "./lib.ts";
import type { LoadResult } from "./load.ts";

const duration = numArg("duration", 10);
const root = new URL("..", import.meta.url).pathname;
const peerDir = `${root}bench/peer`;
const stack = localStack();

function ensurePeerInstalled() {
  if (!existsSync(`${peerDir}/node_modules/@confluentinc/kafka-javascript`)) {
    console.log("peer: installing @confluentinc/kafka-javascript (compiles against the system librdkafka)...");
    const res = spawnSync("npm", ["install", "--no-audit", "--no-fund"], {
      cwd: peerDir,
      stdio: "inherit",
      env: { ...process.env, CKJS_LINKING: "dynamic", npm_config_nodedir: "/usr" },
    });
    if (res.status !== 0) {
      throw new Error(
        "peer install failed: it needs Debian's libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsasl2-dev librdkafka-dev",
      );
    }
  }
  // The peer validates with the shared schema, bundled for Node.
  const build = spawnSync(
    "bun",
    [
      "build",
      "bench/peer/event-entry.ts",
      "--target",
      "node",
      "--format",
      "esm",
      "--outfile",
      "bench/peer/dist/event.mjs",
    ],
    { cwd: root, stdio: "ignore" },
  );
  if (build.status !== 0) throw new Error("could not bundle shared/event.ts for the peer");
}

/** A contender on `port`, once it answers /ready (its logs go to this terminal). */
const startServer = (name: string, cmd: string[], env: Record<string, string>, port: number) =>
  spawnUntilReady({ name, cmd, env, readyUrl: `http://127.0.0.1:${port}/ready` });

async function load(url: string, args: string[]): Promise<LoadResult> {
  const proc = Bun.spawn(["bun", "bench/load.ts", "--url", url, "--duration", String(duration), ...args], {
    cwd: root,
    stdout: "pipe",
    stderr: "inherit",
  });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  return JSON.parse(out.trim().split("\n").at(-1) as string) as LoadResult;
}

ensurePeerInstalled();
await startKafka(stack);
const topic = `bench-peer-${Date.now()}`;
const admin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
await admin.createTopics([{ name: topic, partitions: 12 }]);

const contenders = {
  bun: (port: number) =>
    startServer(
      "bun server",
      ["bun", "server/main.ts"],
      {
        PORT: String(port),
        METRICS_PORT: String(freePort()),
        AUTH_DISABLED: "true",
        LOG_LEVEL: "warn",
        SCANS_TOPIC: topic,
        KAFKA_BROKERS: stack.brokers,
      },
      port,
    ),
  node: (port: number) =>
    startServer(
      "node peer",
      ["node", "bench/peer/server.mjs"],
      { PORT: String(port), SCANS_TOPIC: topic, KAFKA_BROKERS: stack.brokers },
      port,
    ),
};

const results: Record<string, Record<string, LoadResult>> = {};
for (const [name, start] of Object.entries(contenders)) {
  const port = freePort();
  const proc = await start(port);
  const url = `http://127.0.0.1:${port}`;
  try {
    await load(url, ["--duration", "3"]); // warm-up
    results[name] = {
      single: await load(url, ["--scenario", "single", "--concurrency", "64"]),
      batch_100: await load(url, ["--scenario", "batch", "--batch", "100", "--concurrency", "64"]),
    };
  } finally {
    await stopProcess(proc);
  }
}
// p99 at one common offered rate: half of the slower contender's single-event maximum.
const commonRate = Math.max(1, Math.round(Math.min(results.bun?.single?.rps ?? 0, results.node?.single?.rps ?? 0) / 2));
for (const [name, start] of Object.entries(contenders)) {
  const port = freePort();
  const proc = await start(port);
  try {
    await load(`http://127.0.0.1:${port}`, ["--duration", "3"]);
    (results[name] as Record<string, LoadResult>).open = await load(`http://127.0.0.1:${port}`, [
      "--scenario",
      "single",
      "--rate",
      String(commonRate),
    ]);
  } finally {
    await stopProcess(proc);
  }
}
await admin.deleteTopics([topic]);
admin.close();

const b = results.bun as Record<string, LoadResult>;
const n = results.node as Record<string, LoadResult>;
const rows = [
  {
    metric: "single-event req/s (closed, 64 conns)",
    bun: b.single?.rps ?? 0,
    node: n.single?.rps ?? 0,
    "bun/node": ((b.single?.rps ?? 0) / (n.single?.rps ?? 1)).toFixed(2),
  },
  {
    metric: "single-event p99 ms (closed)",
    bun: b.single?.latency_ms.p99 ?? 0,
    node: n.single?.latency_ms.p99 ?? 0,
    "bun/node": ((b.single?.latency_ms.p99 ?? 0) / (n.single?.latency_ms.p99 ?? 1)).toFixed(2),
  },
  {
    metric: "100-event batches: events/s",
    bun: b.batch_100?.events_per_s ?? 0,
    node: n.batch_100?.events_per_s ?? 0,
    "bun/node": ((b.batch_100?.events_per_s ?? 0) / (n.batch_100?.events_per_s ?? 1)).toFixed(2),
  },
  {
    metric: `p99 ms, open loop at ${commonRate} req/s`,
    bun: b.open?.latency_ms.p99 ?? 0,
    node: n.open?.latency_ms.p99 ?? 0,
    "bun/node": ((b.open?.latency_ms.p99 ?? 0) / (n.open?.latency_ms.p99 ?? 1)).toFixed(2),
  },
  {
    metric: "errors (all runs)",
    bun: [b.single, b.batch_100, b.open].reduce((s, r) => s + (r?.error_rate ?? 0), 0),
    node: [n.single, n.batch_100, n.open].reduce((s, r) => s + (r?.error_rate ?? 0), 0),
    "bun/node": "",
  },
];
console.log(
  "\nBun server vs Node.js peer (@hono/node-server + @confluentinc/kafka-javascript), same broker and topic:",
);
printTable(rows);
console.log(`results: ${saveResults("peer", { duration, commonRate, results })}`);
