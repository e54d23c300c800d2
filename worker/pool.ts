// The supervisor's pool of identical worker processes (worker/main.ts), one slot each:
// - restarts a worker that exits unexpectedly, with backoff (reset after a minute without trouble);
// - probes each worker's /health (liveness: no partition with pending work and no commit for
//   STALL_TIMEOUT_MS) and restarts one that fails HEALTH_CHECK_FAILURES probes in a row, as
//   Kubernetes would: SIGTERM, then SIGKILL after SHUTDOWN_TIMEOUT_MS;
// - on stop, SIGTERMs every worker and SIGKILLs those still running after the grace period.
// Nothing starts until start() and startProbes() are called.
import { Counter, Gauge, type Registry } from "prom-client";
import type { Logger } from "../shared/logger.ts";
import type { SupervisorConfig } from "./config.ts";
import { backoffDelay } from "./retry.ts";

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

export class WorkerPool {
  private readonly entry = new URL("./main.ts", import.meta.url).pathname;
  private readonly slots: Slot[];
  private readonly restarts: Counter<"reason">;
  private readonly healthyGauge: Gauge<"worker">;
  private stopping = false;

  constructor(
    private readonly config: SupervisorConfig,
    private readonly logger: Logger,
    registry: Registry,
  ) {
    this.restarts = new Counter({
      name: "supervisor_worker_restarts_total",
      help: "Workers restarted, by reason: exit (it died) or unhealthy (its /health failed)",
      labelNames: ["reason"] as const,
      registers: [registry],
    });
    for (const reason of ["exit", "unhealthy"]) this.restarts.inc({ reason }, 0);
    this.healthyGauge = new Gauge({
      name: "supervisor_worker_healthy",
      help: "1 while the worker answers its /health probe with 200",
      labelNames: ["worker"] as const,
      registers: [registry],
    });
    this.slots = Array.from({ length: config.WORKER_POOL_SIZE }, (_, index) => ({
      index,
      proc: null,
      restarts: 0,
      startedAt: 0,
      healthy: false,
      failedProbes: 0,
      answeredOnce: false,
      killedUnhealthy: false,
    }));
  }

  /** Workers whose process is running. */
  get running(): number {
    return this.slots.filter((s) => s.proc).length;
  }

  /** Starts one worker per slot. */
  start(): void {
    for (const s of this.slots) this.startSlot(s);
  }

  /** Probes every worker's /health each HEALTH_CHECK_INTERVAL_MS (not possible on random ports). */
  startProbes(): void {
    if (this.config.worker.METRICS_PORT === 0) {
      this.logger.warn("METRICS_PORT=0: workers listen on random ports, so their /health cannot be probed");
      return;
    }
    setInterval(() => {
      for (const s of this.slots) void this.probe(s);
    }, this.config.HEALTH_CHECK_INTERVAL_MS).unref();
  }

  /** SIGTERMs every worker, waits for them (SHUTDOWN_TIMEOUT_MS + 5 s), SIGKILLs the rest; resolves to how many were killed. */
  async stop(): Promise<number> {
    this.stopping = true;
    for (const s of this.slots) s.proc?.kill("SIGTERM");
    const deadline = Date.now() + this.config.worker.SHUTDOWN_TIMEOUT_MS + 5_000;
    while (this.slots.some((s) => s.proc) && Date.now() < deadline) await Bun.sleep(50);
    const stuck = this.slots.filter((s) => s.proc);
    for (const s of stuck) s.proc?.kill("SIGKILL");
    return stuck.length;
  }

  private workerPort(slot: Slot): number {
    const port = this.config.worker.METRICS_PORT;
    return port === 0 ? 0 : port + slot.index;
  }

  private startSlot(slot: Slot): void {
    slot.startedAt = Date.now();
    slot.failedProbes = 0;
    slot.answeredOnce = false;
    slot.proc = Bun.spawn(["bun", this.entry], {
      env: { ...process.env, WORKER_INDEX: String(slot.index), METRICS_PORT: String(this.workerPort(slot)) },
      stdio: ["ignore", "inherit", "inherit"],
      onExit: (_proc, exitCode, signalCode) => {
        slot.proc = null;
        if (this.stopping) return;
        // A worker that ran a minute without trouble starts over with a short backoff.
        if (Date.now() - slot.startedAt > 60_000) slot.restarts = 0;
        const delay = 250 + backoffDelay(slot.restarts++, { baseMs: 500, capMs: 30_000 });
        this.restarts.inc({ reason: slot.killedUnhealthy ? "unhealthy" : "exit" });
        slot.killedUnhealthy = false;
        this.logger.warn({ worker: slot.index, exitCode, signalCode, restartInMs: delay }, "worker exited; restarting");
        setTimeout(() => {
          if (!this.stopping) this.startSlot(slot);
        }, delay);
      },
    });
    this.logger.info({ worker: slot.index, pid: slot.proc.pid }, "worker started");
  }

  /** Liveness probe of one worker; after HEALTH_CHECK_FAILURES failures in a row, restart it. */
  private async probe(slot: Slot): Promise<void> {
    const proc = slot.proc;
    if (!proc || this.stopping) return;
    const url = `http://${this.config.worker.METRICS_HOST}:${this.workerPort(slot)}/health`;
    let verdict: string | null = null;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(this.config.HEALTH_CHECK_INTERVAL_MS) });
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
    this.healthyGauge.set({ worker: String(slot.index) }, slot.healthy ? 1 : 0);
    slot.failedProbes = verdict === null ? 0 : slot.failedProbes + 1;
    if (verdict === null || slot.failedProbes !== this.config.HEALTH_CHECK_FAILURES) return;
    this.logger.error(
      { worker: slot.index, workerPid: proc.pid, probe: verdict.slice(0, 500), failures: slot.failedProbes },
      "worker failed its liveness probe; restarting it",
    );
    slot.killedUnhealthy = true;
    proc.kill("SIGTERM");
    setTimeout(() => {
      if (slot.proc === proc) proc.kill("SIGKILL");
    }, this.config.worker.SHUTDOWN_TIMEOUT_MS).unref();
  }
}
