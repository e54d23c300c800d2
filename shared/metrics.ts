// Prometheus metrics: one registry per process, served on a port of its own (loopback by default,
// so metrics are never public by accident).
import { Counter, Gauge, Registry } from "prom-client";

/**
 * Process metrics that cost microseconds per scrape. prom-client's default collectors are not used:
 * under Bun their heap-space statistics walk the whole heap, blocking the event loop for 100 ms and
 * more per scrape once the heap is large (measured: 110 ms with 2 M live objects).
 */
function registerProcessMetrics(registry: Registry): void {
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes",
    registers: [registry],
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  let last = { user: 0, system: 0 }; // counted from process start
  const cpu = new Counter({
    name: "process_cpu_seconds_total",
    help: "User and system CPU time spent, in seconds",
    labelNames: ["mode"] as const,
    registers: [registry],
    collect() {
      const now = process.cpuUsage();
      cpu.inc({ mode: "user" }, (now.user - last.user) / 1e6);
      cpu.inc({ mode: "system" }, (now.system - last.system) / 1e6);
      last = now;
    },
  });
  new Gauge({ name: "process_start_time_seconds", help: "Start time of the process", registers: [registry] }).set(
    Math.round(Date.now() / 1000 - process.uptime()),
  );
}

export function createRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  registerProcessMetrics(registry);
  return registry;
}

/** A probe's verdict: 200 with `body` when ok, else 503. */
export interface ProbeResult {
  ok: boolean;
  body: Record<string, unknown>;
}

/**
 * Serves `GET /metrics` from `registry`, and `GET /health` from `health` when given (the process's
 * liveness: answered from state kept outside its main loop); returns the Bun server.
 */
export function serveMetrics(registry: Registry, hostname: string, port: number, health?: () => ProbeResult) {
  return Bun.serve({
    hostname,
    port,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/metrics") {
        return new Response(await registry.metrics(), { headers: { "content-type": registry.contentType } });
      }
      if (path === "/health" && health) {
        const { ok, body } = health();
        return Response.json(body, { status: ok ? 200 : 503 });
      }
      return new Response("not found", { status: 404 });
    },
  });
}
