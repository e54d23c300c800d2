// The worker tier's entry point (`bun run worker`, the image's CMD): one consumer group served by
// a pool of WORKER_POOL_SIZE identical workers (default one per CPU):
// - worker/pool.ts starts them, restarts one that exits or fails its /health probe;
// - worker/group-lag.ts exports the group's committed lag, read from the broker, with each
//   partition's commit age, on the supervisor's own metrics listener;
// - SIGTERM/SIGINT go to all workers; the supervisor exits once they have all stopped.
// Nothing runs at import: main() runs only when this file is the entry point.
import { type Logger, startProcess } from "../shared/logger.ts";
import { createRegistry, serveMetrics } from "../shared/metrics.ts";
import { type SupervisorConfig, loadSupervisorConfig } from "./config.ts";
import { GroupLagExporter } from "./group-lag.ts";
import { WorkerPool } from "./pool.ts";

export function main(config: SupervisorConfig, logger: Logger): void {
  const worker = config.worker;
  const registry = createRegistry("supervisor");
  const pool = new WorkerPool(config, logger, registry);
  const lag = new GroupLagExporter(worker, logger, registry);
  const metricsServer = serveMetrics(
    registry,
    worker.METRICS_HOST,
    config.SUPERVISOR_METRICS_PORT,
    { health: () => ({ ok: true, body: { status: "ok" } }) },
    worker.metricsAuth,
  );
  pool.startProbes();
  lag.start(config.LAG_INTERVAL_MS);

  logger.info(
    {
      workers: config.WORKER_POOL_SIZE,
      metrics: `http://${metricsServer.hostname}:${metricsServer.port}/metrics`,
      group: worker.CONSUMER_GROUP,
    },
    "supervisor started",
  );

  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    lag.stop();
    logger.info({ signal, workers: pool.running }, "stopping workers");
    const killed = await pool.stop();
    lag.close();
    metricsServer.stop(true);
    logger.info({ killed }, "stopped");
    process.exit(killed ? 1 : 0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  pool.start();
}

if (import.meta.main) {
  const { config, logger } = startProcess("supervisor", () => loadSupervisorConfig());
  try {
    main(config, logger);
  } catch (error) {
    logger.fatal({ err: error }, "supervisor failed");
    process.exit(1);
  }
}
