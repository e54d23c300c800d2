// Supervises a pool of identical worker processes (worker/main.ts) in one consumer group:
// restarts a worker that exits unexpectedly (with backoff), forwards SIGTERM/SIGINT to all of them
// and exits once they have all stopped.
//   bun run worker            (WORKER_POOL_SIZE workers; default one per CPU)
import { availableParallelism } from "node:os";
import * as v from "valibot";
import { ConfigError, int, loadConfig } from "../shared/config.ts";
import { createLogger } from "../shared/logger.ts";
import { backoffDelay } from "./retry.ts";

const logger = createLogger("supervisor");

const SupervisorConfigSchema = v.object({
  WORKER_POOL_SIZE: int(availableParallelism(), 1, 256),
  /** Worker i serves metrics on METRICS_PORT + i. */
  METRICS_PORT: int(9470, 0, 65535),
  SHUTDOWN_TIMEOUT_MS: int(15_000, 100),
});

interface Slot {
  index: number;
  proc: ReturnType<typeof Bun.spawn> | null;
  restarts: number;
  startedAt: number;
}

function main() {
  const config = loadConfig(SupervisorConfigSchema);
  const entry = new URL("./main.ts", import.meta.url).pathname;
  let stopping = false;
  const slots: Slot[] = Array.from({ length: config.WORKER_POOL_SIZE }, (_, index) => ({
    index,
    proc: null,
    restarts: 0,
    startedAt: 0,
  }));

  const start = (slot: Slot) => {
    slot.startedAt = Date.now();
    slot.proc = Bun.spawn(["bun", entry], {
      env: {
        ...process.env,
        WORKER_INDEX: String(slot.index),
        METRICS_PORT: String(config.METRICS_PORT === 0 ? 0 : config.METRICS_PORT + slot.index),
      },
      stdio: ["ignore", "inherit", "inherit"],
      onExit: (_proc, exitCode, signalCode) => {
        slot.proc = null;
        if (stopping) return;
        // A worker that ran a minute without trouble starts over with a short backoff.
        if (Date.now() - slot.startedAt > 60_000) slot.restarts = 0;
        const delay = 250 + backoffDelay(slot.restarts++, { baseMs: 500, capMs: 30_000 });
        logger.warn({ worker: slot.index, exitCode, signalCode, restartInMs: delay }, "worker exited; restarting");
        setTimeout(() => {
          if (!stopping) start(slot);
        }, delay);
      },
    });
    logger.info({ worker: slot.index, pid: slot.proc.pid }, "worker started");
  };

  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, workers: slots.filter((s) => s.proc).length }, "stopping workers");
    for (const s of slots) s.proc?.kill("SIGTERM");
    const deadline = Date.now() + config.SHUTDOWN_TIMEOUT_MS + 5_000;
    while (slots.some((s) => s.proc) && Date.now() < deadline) await Bun.sleep(50);
    const stuck = slots.filter((s) => s.proc);
    for (const s of stuck) s.proc?.kill("SIGKILL");
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
  logger.fatal(error instanceof ConfigError ? error.message : { err: error });
  process.exit(1);
}
