// The compose stage's receiver (test/compose/capture.yaml runs it in the worker image, on compose's
// network): OTLP/HTTP JSON on :4318 under the collector's name (otel-collector, whose image is not
// in Debian), and Alertmanager's webhooks on :9095 (/pager and /ticket, the URLs the stage writes
// into Alertmanager's secret files). GET /captured on either port returns what arrived, in order.
// Self-contained (no imports): it runs from a read-only mount, not from the image's /app.
const traces: unknown[] = [];
const alerts: { receiver: string; body: unknown }[] = [];

async function handle(req: Request): Promise<Response> {
  const path = new URL(req.url).pathname;
  if (req.method === "GET" && path === "/captured") return Response.json({ traces, alerts });
  if (req.method === "POST" && path === "/v1/traces") {
    traces.push(await req.json());
    return Response.json({});
  }
  if (req.method === "POST" && (path === "/pager" || path === "/ticket")) {
    alerts.push({ receiver: path.slice(1), body: await req.json() });
    return new Response(null, { status: 204 });
  }
  return new Response("not found", { status: 404 });
}

Bun.serve({ hostname: "0.0.0.0", port: 4318, fetch: handle });
Bun.serve({ hostname: "0.0.0.0", port: 9095, fetch: handle });
console.log(JSON.stringify({ msg: "capture listening", otlp: 4318, alerts: 9095 }));
