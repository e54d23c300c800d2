// Quick start: a scanner queues three scans durably, sends them, and closes.
// Run against an edge: SCAN_CLIENT_ENDPOINT=http://127.0.0.1:8080 SCAN_CLIENT_API_KEY=... bun examples/quick-start.ts
import { ScanClient } from "scan-client";

const client = await ScanClient.open({
  endpoint: process.env.SCAN_CLIENT_ENDPOINT ?? "http://127.0.0.1:8080",
  apiKey: process.env.SCAN_CLIENT_API_KEY,
  queue: { path: process.env.SCAN_CLIENT_JOURNAL ?? ".scan-client/queue.journal" },
  onRefused: (refused) => {
    for (const r of refused) console.error(`refused ${r.event.event_id}: ${JSON.stringify(r.errors)}`);
  },
  onError: (error) => console.error(`retrying: ${error.code}: ${error.message}`),
});

for (const ticket of ["ticket-1", "ticket-2", "ticket-3"]) {
  // Resolves once the scan is on disk: it survives a crash from here on.
  const { event_id } = await client.scan({ qr_id: `gate-7:${ticket}`, scanner_id: "gate-7" });
  console.log(`queued ${event_id}`);
}
await client.flush({ timeoutMs: 30_000 });
console.log(JSON.stringify(client.metrics()));
await client.close();
