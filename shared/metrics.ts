// Prometheus metrics: one registry per process, served on a port of its own (loopback by default,
// so metrics are never public by accident).
import { Registry, collectDefaultMetrics } from "prom-client";

export function createRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Serves `GET /metrics` from `registry`; returns the Bun server (stop it on shutdown). */
export function serveMetrics(registry: Registry, hostname: string, port: number) {
  return Bun.serve({
    hostname,
    port,
    async fetch(req) {
      if (new URL(req.url).pathname !== "/metrics") return new Response("not found", { status: 404 });
      return new Response(await registry.metrics(), { headers: { "content-type": registry.contentType } });
    },
  });
}
