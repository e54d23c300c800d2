// An offline gate: scans keep being queued while the edge is unreachable; the next run (or the
// same one, once the edge is back) sends them. A full queue refuses new scans: the gate is told.
// SCAN_CLIENT_ENDPOINT, SCAN_CLIENT_API_KEY and SCAN_CLIENT_JOURNAL as in quick-start.ts.
import { QueueFullError, ScanClient } from "scan-client";

const client = await ScanClient.open({
  endpoint: process.env.SCAN_CLIENT_ENDPOINT ?? "http://127.0.0.1:8080",
  apiKey: process.env.SCAN_CLIENT_API_KEY,
  queue: { path: process.env.SCAN_CLIENT_JOURNAL ?? ".scan-client/queue.journal" },
  maxQueued: 10_000,
  whenFull: "refuse",
  batch: { maxEvents: 100, maxWaitMs: 500 },
  onError: (error) => console.error(`will retry: ${error.code} (${error.status ?? "no answer"})`),
});

try {
  for (let i = 0; i < 25; i++) await client.scan({ qr_id: `gate-3:ticket-${i}`, attributes: { lane: i % 2 } });
} catch (error) {
  if (!(error instanceof QueueFullError)) throw error;
  console.error(`queue full (${error.maxQueued}): show the gate's "offline, full" light`);
}
const before = client.metrics();
console.log(`queued ${before.queued}, oldest ${before.oldestQueuedAgeMs} ms`);
// Waits up to 10 s for the edge; whatever is left stays in the journal for the next start.
await client.flush({ timeoutMs: 10_000 }).catch((error) => console.error(`still queued: ${error.message}`));
console.log(JSON.stringify(client.metrics()));
await client.close();
