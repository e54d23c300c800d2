import { KafkaAdmin } from "bun-rdkafka";
// Supervises a pool of identical worker processes (worker/main.ts) in one consumer group:
// - restarts a worker that exits unexpectedly (with backoff);
// - probes each worker's /health (liveness: no partition with pending work and no commit for
//   STALL_TIMEOUT_MS) and restarts one that fails HEALTH_CHECK_FAILURES probes in a row, as
//   Kubernetes would: SIGTERM, then SIGKILL after SHUTDOWN_TIMEOUT_MS;
// - measures the group's committed lag from the broker (KafkaAdmin.groupLag), outside every
//   worker's poll loop, so a worker stuck in a write cannot freeze the figure, and exports it with
//   each partition's commit age on its own metrics listener;
// - forwards SIGTERM/SIGINT to all workers and exits once they have all stopped.
//   bun run worker            (WORKER_POOL_SIZE workers; default one per CPU)
import { Counter, Gauge } from "prom-client";
import { startProcess } from "../shared/logger.ts";
import { createRegistry, serveMetrics } from "../shared/metrics.ts";
import { loadSupervisorConfig } from "./config.ts";
import { backoffDelay } from "./retry.ts";

const { config, logger } = startProcess("supervisor", () => loadSupervisorConfig());
const worker = config.worker;

interface Slot {
  index: number;
  proc: ReturnType<typeof Bun.spawn> | null;
  restarts: number;
  startedAt: number;
  healthy: boolean;
  failedProbes: number;
  answeredOnce: boolean;
  /** Set when the supervisor itself stops the worker for failing its probe. */
  killedUnhealthy: boolean;
}

/** Committed-lag bookkeeping per partition: when its committed offset last moved. */
interface PartitionLagState {
  committed: number;
  lastAdvanceAt: number;
  pendingSince: number;
}

function main() {
  const entry = new URL("./main.ts", import.meta.url).pathname;
  const registry = createRegistry("supervisor");
  const restarts = new Counter({
    name: "supervisor_worker_restarts_total",
    help: "Workers restarted, by reason: exit (it died) or unhealthy (its /health failed)",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  for (const reason of ["exit", "unhealthy"]) restarts.inc({ reason }, 0);
  const labels = ["topic", "partition"] as const;
  const lagGauge = new Gauge({
    name: "consumer_group_lag",
    help: "High watermark minus the group's committed offset, read from the broker",
    labelNames: labels,
    registers: [registry],
  });
  const committedGauge = new Gauge({
    name: "consumer_group_committed_offset",
    help: "The group's committed offset (next offset to read)",
    labelNames: labels,
    registers: [registry],
  });
  const commitAge = new Gauge({
    name: "consumer_group_commit_age_seconds",
    help: "Seconds since the partition's committed offset last advanced (since the supervisor started, if it has not)",
    labelNames: labels,
    registers: [registry],
  });
  const pendingGauge = new Gauge({
    name: "consumer_group_pending",
    help: "1 while the partition has uncommitted messages (lag > 0)",
    labelNames: labels,
    registers: [registry],
  });
  const stalledSeconds = new Gauge({
    name: "consumer_group_stalled_seconds",
    help: "Seconds the partition has had pending messages without its committed offset advancing (0 when caught up)",
    labelNames: labels,
    registers: [registry],
  });
  const lagReadOk = new Gauge({
    name: "consumer_group_lag_last_success_timestamp_seconds",
    help: "When the committed lag was last read from the broker",
    registers: [registry],
  });
  const healthyGauge = new Gauge({
    name: "supervisor_worker_healthy",
    help: "1 while the worker answers its /health probe with 200",
    labelNames: ["worker"] as const,
    registers: [registry],
  });
  const metricsServer = serveMetrics(
    registry,
    worker.METRICS_HOST,
    config.SUPERVISOR_METRICS_PORT,
    { health: () => ({ ok: true, body: { status: "ok" } }) },
    worker.metricsAuth,
  );

  let stopping = false;
  const slots: Slot[] = Array.from({ length: config.WORKER_POOL_SIZE }, (_, index) => ({
    index,
    proc: null,
    restarts: 0,
    startedAt: 0,
    healthy: false,
    failedProbes: 0,
    answeredOnce: false,
    killedUnhealthy: false,
  }));

  const workerPort = (slot: Slot) => (worker.METRICS_PORT === 0 ? 0 : worker.METRICS_PORT + slot.index);

  const start = (slot: Slot) => {
    slot.startedAt = Date.now();
    slot.failedProbes = 0;
    slot.answeredOnce = false;
    slot.proc = Bun.spawn(["bun", entry], {
      env: { ...process.env, WORKER_INDEX: String(slot.index), METRICS_PORT: String(workerPort(slot)) },
      stdio: ["ignore", "inherit", "inherit"],
      onExit: (_proc, exitCode, signalCode) => {
        slot.proc = null;
        if (stopping) return;
        // A worker that ran a minute without trouble starts over with a short backoff.
        if (Date.now() - slot.startedAt > 60_000) slot.restarts = 0;
        const delay = 250 + backoffDelay(slot.restarts++, { baseMs: 500, capMs: 30_000 });
        restarts.inc({ reason: slot.killedUnhealthy ? "unhealthy" : "exit" });
        slot.killedUnhealthy = false;
        logger.warn({ worker: slot.index, exitCode, signalCode, restartInMs: delay }, "worker exited; restarting");
        setTimeout(() => {
          if (!stopping) start(slot);
        }, delay);
      },
    });
    logger.info({ worker: slot.index, pid: slot.proc.pid }, "worker started");
  };

  /** Liveness probe of one worker; after HEALTH_CHECK_FAILURES failures in a row, restart it. */
  const probe = async (slot: Slot) => {
    const proc = slot.proc;
    if (!proc || stopping) return;
    const url = `http://${worker.METRICS_HOST}:${workerPort(slot)}/health`;
    let verdict: string | null = null;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(config.HEALTH_CHECK_INTERVAL_MS) });
      if (res.ok) {
        slot.answeredOnce = true;
      } else {
        slot.answeredOnce = true;
        verdict = `${res.status}: ${await res.text()}`;
      }
    } catch (error) {
      // Not answering yet is normal while a worker starts; count it once it has answered, or after a minute.
      if (slot.answeredOnce || Date.now() - slot.startedAt > 60_000) verdict = `no answer: ${(error as Error).message}`;
    }
    if (slot.proc !== proc) return; // restarted meanwhile
    slot.healthy = verdict === null && slot.answeredOnce;
    healthyGauge.set({ worker: String(slot.index) }, slot.healthy ? 1 : 0);
    slot.failedProbes = verdict === null ? 0 : slot.failedProbes + 1;
    if (verdict === null || slot.failedProbes !== config.HEALTH_CHECK_FAILURES) return;
    logger.error(
      { worker: slot.index, workerPid: proc.pid, probe: verdict.slice(0, 500), failures: slot.failedProbes },
      "worker failed its liveness probe; restarting it",
    );
    slot.killedUnhealthy = true;
    proc.kill("SIGTERM");
    setTimeout(() => {
      if (slot.proc === proc) proc.kill("SIGKILL");
    }, worker.SHUTDOWN_TIMEOUT_MS).unref();
  };

  if (worker.METRICS_PORT === 0) {
    logger.warn("METRICS_PORT=0: workers listen on random ports, so their /health cannot be probed");
  } else {
    setInterval(() => {
      for (const s of slots) void probe(s);
    }, config.HEALTH_CHECK_INTERVAL_MS).unref();
  }

  // Committed lag, read from the broker. groupLag blocks (librdkafka's synchronous calls), which is
  // fine here: this process does nothing latency-sensitive, and no worker's loop is involved.
  const admin = new KafkaAdmin({ config: worker.kafkaClient });
  const lagState = new Map<number, PartitionLagState>();
  const started = Date.now();
  let lastLagError = "";
  const readLag = () => {
    if (stopping) return;
    try {
      const now = Date.now();
      const lags = admin.groupLag(worker.CONSUMER_GROUP, worker.SCANS_TOPIC, 2_000);
      for (const p of lags) {
        const l = { topic: worker.SCANS_TOPIC, partition: String(p.partition) };
        let s = lagState.get(p.partition);
        if (!s) {
          s = { committed: p.committed, lastAdvanceAt: started, pendingSince: now };
          lagState.set(p.partition, s);
        }
        if (p.committed !== s.committed) {
          s.committed = p.committed;
          s.lastAdvanceAt = now;
        }
        const pending = p.lag > 0;
        if (!pending) s.pendingSince = now;
        lagGauge.set(l, p.lag);
        committedGauge.set(l, p.committed);
        commitAge.set(l, (now - s.lastAdvanceAt) / 1000);
        pendingGauge.set(l, pending ? 1 : 0);
        stalledSeconds.set(l, pending ? (now - Math.max(s.lastAdvanceAt, s.pendingSince)) / 1000 : 0);
      }
      lagReadOk.set(now / 1000);
      lastLagError = "";
    } catch (error) {
      // Logged once per distinct failure, not every interval: a broker outage is one event.
      const message = (error as Error).message;
      if (message !== lastLagError) logger.warn({ err: message }, "could not read the committed lag");
      lastLagError = message;
    }
  };
  const lagTimer = setInterval(readLag, config.LAG_INTERVAL_MS);

  logger.info(
    {
      workers: config.WORKER_POOL_SIZE,
      metrics: `http://${metricsServer.hostname}:${metricsServer.port}/metrics`,
      group: worker.CONSUMER_GROUP,
    },
    "supervisor started",
  );

  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    clearInterval(lagTimer);
    logger.info({ signal, workers: slots.filter((s) => s.proc).length }, "stopping workers");
    for (const s of slots) s.proc?.kill("SIGTERM");
    const deadline = Date.now() + worker.SHUTDOWN_TIMEOUT_MS + 5_000;
    while (slots.some((s) => s.proc) && Date.now() < deadline) await Bun.sleep(50);
    const stuck = slots.filter((s) => s.proc);
    for (const s of stuck) s.proc?.kill("SIGKILL");
    admin.close();
    metricsServer.stop(true);
    logger.info({ killed: stuck.length }, "stopped");
    process.exit(stuck.length ? 1 : 0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  for (const s of slots) start(s);
}

try {
  main();
} catch (error) {
  logger.fatal({ err: error }, "supervisor failed");
  process.exit(1);
}
