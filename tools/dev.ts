// One command runs the whole product: installs what is missing, starts the local stack, migrates,
// starts the edge server and the worker pool, prints the URLs and, with --demo, drives realistic
// scan traffic while a one-line status shows accepted/s, rows/s, consumer lag and p95.
// Ctrl-C stops everything it started (the stack too, unless it was already running).
// With --adversarial, the demo also mixes in events at the edge of what Postgres stores (see
// ADVERSARIAL in scan-traffic.ts) and, every 30 s, one undecodable record produced straight to
// Kafka (around the edge); on exit it checks that every acknowledged event is stored and that
// dead_letters holds exactly the records produced around the edge.
// Ports and pool size are the processes' own configuration (server/config.ts, worker/config.ts),
// resolved from this environment; the workers' base metrics port is WORKER_METRICS_PORT here,
// since METRICS_PORT is the server's.
//   bun run dev [--demo] [--rate 500] [--adversarial]
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { KafkaProducer } from "bun-rdkafka";
import postgres from "postgres";
import { loadServerConfig } from "../server/config.ts";
import { type CliSpec, MAIN, parseProcessArgs } from "../shared/cli.ts";
import { TOPICS, localStack } from "../shared/local-stack.ts";
import { histogramQuantile, sum } from "../shared/prometheus-text.ts";
import { missingEventIds } from "../sql/checks.ts";
import { migrate } from "../sql/migrate.ts";
import { loadSupervisorConfig } from "../worker/config.ts";
import { committedLag, lagField } from "./dev-status.ts";
import { scrapeIfUp } from "./harness.ts";
import { service } from "./pipeline.ts";
import { startTraffic } from "./scan-traffic.ts";
import { down, up } from "./stack.ts";
import { kafkaPid } from "./stack/kafka.ts";
import { appMetricsPorts } from "./stack/monitoring.ts";
import { waitFor } from "./wait.ts";

export const DEV_CLI: CliSpec = {
  program: "bun run dev",
  description: "The whole product on the local stack: server, worker pool, URLs; Ctrl-C stops what it started.",
  commands: {
    [MAIN]: {
      args: "",
      description: "starts everything",
      options: {
        demo: { type: "boolean", description: "drive realistic scan traffic, with a status line" },
        rate: { type: "string", value: "N", description: "the demo's events per second (default 500)" },
        adversarial: {
          type: "boolean",
          description: "the demo with edge-case events and undecodable records, checked on exit",
        },
      },
    },
  },
};

const { values } = parseProcessArgs(DEV_CLI);
const adversarial = values.adversarial === true;
const demo = adversarial || values.demo === true;
const rate = values.rate === undefined ? 500 : Number(values.rate);
const stack = localStack();
const root = new URL("..", import.meta.url).pathname;
// An explicit AUTH_DISABLED=false keeps auth on with only managed keys (`bun run keys create`).
const authDisabled = process.env.AUTH_DISABLED !== "false" && !process.env.API_KEY_SHA256 && !process.env.API_KEYS_FILE;
// The processes' JSON log lines go to files (compose.yaml's promtail ships them to Loki); the
// terminal keeps the URLs and the status line.
const LOG_LEVEL = process.env.LOG_LEVEL ?? "info";
const LOG_DIR = `${stack.dir}/logs/app`;
// The metrics ports, as the stack's Prometheus scrapes them (tools/stack/monitoring.ts).
const ports = appMetricsPorts();
// What dev sets for the processes; everything else comes from this environment (service() adds it).
const serverEnv: Record<string, string> = {
  LOG_LEVEL,
  ...(authDisabled ? { AUTH_DISABLED: "true" } : {}),
  // The key refresh on pgbouncer's pool of its own, as deployed (unless a database was chosen).
  ...(!process.env.DATABASE_URL && !process.env.API_KEYS_DATABASE_URL
    ? { API_KEYS_DATABASE_URL: stack.keysDatabaseUrl }
    : {}),
};
// METRICS_PORT is the server's: the pool gets the workers' first port (WORKER_METRICS_PORT).
const poolEnv: Record<string, string> = {
  LOG_LEVEL,
  WORKER_POOL_SIZE: String(ports.workers),
  METRICS_PORT: String(ports.firstWorker),
  // The supervisor reads the committed lag as often as the status line shows it, so the line never
  // repeats a reading taken seconds ago (the lag moves by a request's events every few ms).
  LAG_INTERVAL_MS: process.env.LAG_INTERVAL_MS ?? "1000",
};
// Resolved here the way the processes will resolve them, so a bad value stops dev before anything starts.
const serverConfig = loadServerConfig({ ...process.env, ...serverEnv });
const supervisorConfig = loadSupervisorConfig({ ...process.env, ...poolEnv });
const PORT = serverConfig.PORT;
const METRICS_PORT = ports.server;
const WORKER_METRICS_PORT = ports.firstWorker;
const SUPERVISOR_METRICS_PORT = ports.supervisor;
const WORKERS = ports.workers;
/** The status line says STALLED once a partition has had pending messages this long with no commit. */
const STALLED_AFTER_S = 15;
/** A lag read longer ago than three of the supervisor's intervals is not shown as current. */
const LAG_STALE_AFTER_S = (3 * supervisorConfig.LAG_INTERVAL_MS) / 1000;

if (!existsSync(`${root}/node_modules/hono`)) {
  console.log("dev: installing dependencies (bun install)...");
  spawnSync("bun", ["install"], { cwd: root, stdio: "inherit" });
}
const stackWasRunning = kafkaPid(stack) !== null;
await up();
const applied = await migrate(stack.directDatabaseUrl);
console.log(applied.length ? `dev: applied migrations ${applied.join(", ")}` : "dev: database schema up to date");

const server = service("server", "server/main.ts", serverEnv, `http://127.0.0.1:${PORT}/ready`, {
  file: `${LOG_DIR}/server.log`,
});
const workers = service("workers", "worker/supervisor.ts", poolEnv, undefined, { file: `${LOG_DIR}/workers.log` });
await Promise.all([server.start(), workers.start()]);

console.log(`
  edge        http://127.0.0.1:${PORT}/v1/scans   (POST; ${authDisabled ? "AUTH_DISABLED=true for this demo" : "API key required"})
  stats       http://127.0.0.1:${PORT}/v1/qr/<qr_id>/stats?interval=minute
  health      http://127.0.0.1:${PORT}/health  http://127.0.0.1:${PORT}/ready
  metrics     http://127.0.0.1:${METRICS_PORT}/metrics (server), http://127.0.0.1:${WORKER_METRICS_PORT}..${WORKER_METRICS_PORT + WORKERS - 1}/metrics (workers)
              http://127.0.0.1:${SUPERVISOR_METRICS_PORT}/metrics (supervisor: committed lag per partition, restarts)
  Postgres    ${stack.databaseUrl} (via pgbouncer, as the owner; the server connects as edge, the workers as worker)
  Prometheus  http://127.0.0.1:${stack.prometheusPort}  (alerts: http://127.0.0.1:${stack.prometheusPort}/alerts)
  Alertmanager http://127.0.0.1:${stack.alertmanagerPort}
  logs        ${LOG_DIR}/server.log, workers.log (JSON lines, LOG_LEVEL=${LOG_LEVEL}; fields: docs/operations.md "Logs")
  Ctrl-C stops everything.
`);

// A process that does not answer (starting, restarting) shows as no samples.
const scrape = async (url: string) => (await scrapeIfUp(url)) ?? [];
const scrapeWorkers = async () =>
  (
    await Promise.all(
      Array.from({ length: WORKERS }, (_, i) => scrape(`http://127.0.0.1:${WORKER_METRICS_PORT + i}/metrics`)),
    )
  ).flat();
// Demo traffic starts once the group has settled: every worker owns partitions and together they
// own all of them. A group still forming pauses consumption while it rebalances, which would read
// as a stall.
if (demo) {
  const partitions = TOPICS.scans.partitions;
  const owned = async () =>
    Promise.all(
      Array.from({ length: WORKERS }, async (_, i) =>
        sum(await scrape(`http://127.0.0.1:${WORKER_METRICS_PORT + i}/metrics`), "worker_assigned_partitions"),
      ),
    );
  await waitFor(
    `each of the ${WORKERS} workers to own partitions, ${partitions} in all`,
    owned,
    (counts) => counts.every((n) => n > 0 || WORKERS > partitions) && counts.reduce((a, b) => a + b, 0) === partitions,
    60_000,
    250,
  ).then(
    (counts) => console.log(`dev: the workers own ${counts.join(" + ")} partitions; starting the demo traffic`),
    (error: Error) => console.error(`dev: ${error.message}; starting the demo anyway`),
  );
}

const traffic = demo
  ? startTraffic({
      url: `http://127.0.0.1:${PORT}`,
      rate,
      burstEveryS: 15,
      burstForS: 3,
      burstFactor: 3,
      adversarialRatio: adversarial ? 0.05 : 0,
    })
  : null;
// Around the edge: records no edge would write, produced straight to Kafka; each must end in dead_letters.
const aroundEdge = adversarial ? new KafkaProducer({ config: { "bootstrap.servers": stack.brokers } }) : null;
let producedAroundEdge = 0;
const aroundEdgeTimer = aroundEdge
  ? setInterval(() => {
      const value = producedAroundEdge % 2 ? "{not json" : JSON.stringify({ event_id: crypto.randomUUID() });
      aroundEdge.send([{ topic: TOPICS.scans.name, key: "around-the-edge", value }]).then(
        () => producedAroundEdge++,
        (error) => console.error(`\ndev: could not produce around the edge: ${(error as Error).message}`),
      );
    }, 30_000)
  : null;
const demoStartedAt = new Date();
let ticks = 0;
let zeroRowTicks = 0;

let lastServer = await scrape(`http://127.0.0.1:${METRICS_PORT}/metrics`);
let lastWorkers = await scrapeWorkers();
let lastAt = Date.now();
const status = setInterval(async () => {
  const [s, w, sup] = await Promise.all([
    scrape(`http://127.0.0.1:${METRICS_PORT}/metrics`),
    scrapeWorkers(),
    scrapeIfUp(`http://127.0.0.1:${SUPERVISOR_METRICS_PORT}/metrics`),
  ]);
  const dt = (Date.now() - lastAt) / 1000;
  const accepted =
    (sum(s, "scan_events_total", { outcome: "accepted" }) -
      sum(lastServer, "scan_events_total", { outcome: "accepted" })) /
    dt;
  const rejected =
    (sum(s, "scan_events_total", { outcome: "rejected" }) -
      sum(lastServer, "scan_events_total", { outcome: "rejected" })) /
    dt;
  const rows = (sum(w, "worker_rows_inserted_total") - sum(lastWorkers, "worker_rows_inserted_total")) / dt;
  ticks++;
  if (rows === 0 && accepted > 0) zeroRowTicks++;
  const dups = (sum(w, "worker_rows_duplicate_total") - sum(lastWorkers, "worker_rows_duplicate_total")) / dt;
  // Committed lag, read from the broker by the supervisor: it keeps rising when a worker is stuck.
  const lag = lagField(committedLag(sup, supervisorConfig.worker.SCANS_TOPIC, Date.now() / 1000, LAG_STALE_AFTER_S));
  const stalledFor = Math.max(
    0,
    ...(sup ?? []).filter((x) => x.name === "consumer_group_stalled_seconds").map((x) => x.value),
  );
  const p95 = histogramQuantile(lastServer, s, "http_request_duration_seconds", 0.95, { route: "/v1/scans" });
  lastServer = s;
  lastWorkers = w;
  lastAt = Date.now();
  const line = `accepted ${accepted.toFixed(0).padStart(6)}/s  rejected ${rejected.toFixed(0).padStart(4)}/s  rows ${rows.toFixed(0).padStart(6)}/s  dup-skipped ${dups.toFixed(0).padStart(4)}/s  lag ${lag.field}  p95 ${Number.isNaN(p95) ? "   -  " : `${(p95 * 1000).toFixed(1).padStart(5)}ms`}${stalledFor > STALLED_AFTER_S ? `  STALLED: no commit for ${stalledFor.toFixed(0)}s with lag` : ""}${lag.note}`;
  process.stdout.write(process.stdout.isTTY ? `\r${line}` : `${line}\n`);
}, 1_000);

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  clearInterval(status);
  console.log("\ndev: stopping...");
  if (traffic) {
    const t = await traffic.stop();
    console.log(`dev: demo sent ${t.requests} requests, ${t.acknowledged.size} distinct events acknowledged`);
    console.log(`dev: rows/s was 0 while events were accepted in ${zeroRowTicks} of ${ticks} seconds`);
  }
  if (aroundEdgeTimer) clearInterval(aroundEdgeTimer);
  if (traffic && adversarial) await verifyDemo(traffic.stats.acknowledged);
  const [serverCode, workersCode] = await Promise.all([server.stop(), workers.stop()]);
  if (!stackWasRunning) await down();
  console.log(`dev: stopped (server exit ${serverCode}, workers exit ${workersCode})`);
  process.exit(serverCode === 0 && workersCode === 0 ? 0 : 1);
}
process.on("SIGINT", () => void shutdown());
process.on("SIGTERM", () => void shutdown());

/** After an adversarial demo: every acknowledged event stored, dead_letters = what went around the edge. */
async function verifyDemo(acknowledged: Set<string>) {
  await aroundEdge?.close(5_000);
  const sql = postgres(stack.directDatabaseUrl, { max: 1, onnotice: () => {} });
  let missing: string[] = [];
  const deadline = Date.now() + 60_000;
  do {
    missing = await missingEventIds(sql, [...acknowledged]);
    if (missing.length) await Bun.sleep(1_000);
  } while (missing.length && Date.now() < deadline);
  const [dl] = await sql<{ n: number; foreign: number }[]>`
    select count(*)::int as n, count(*) filter (where key <> convert_to('around-the-edge', 'UTF8'))::int as foreign
    from dead_letters where stored_at >= ${demoStartedAt}`;
  await sql.end();
  console.log(
    `dev: verify: ${acknowledged.size - missing.length} of ${acknowledged.size} acknowledged events stored` +
      ` (missing: ${missing.slice(0, 5).join(", ") || "none"}); dead letters stored during the demo: ${dl?.n},` +
      ` of which not produced around the edge: ${dl?.foreign}; produced around the edge this run: ${producedAroundEdge}`,
  );
}
