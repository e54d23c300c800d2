// A scanning process for scan-client.test.ts, killed with -9 by the test: it opens the SDK on the
// journal JOURNAL, sends to ENDPOINT, scans COUNT events and prints "S <event_id> <scanned_at>"
// as soon as each scan() resolved (durably queued), then "M <sent>" every 20 ms until killed.
import { ScanClient } from "scan-client";

const journal = process.env.JOURNAL as string;
const endpoint = process.env.ENDPOINT as string;
const count = Number(process.env.COUNT);
const client = await ScanClient.open({
  endpoint,
  queue: { path: journal },
  batch: { maxEvents: 10, maxWaitMs: 0 },
  retry: { baseMs: 20, maxMs: 200 },
  onError: () => {}, // the unreachable edge is the point of the test; the parent checks the outcome
});
// Concurrent scans in waves of 10, as a busy gate would make them (grouped fsyncs).
for (let i = 0; i < count; i += 10) {
  await Promise.all(
    Array.from({ length: Math.min(10, count - i) }, async (_, j) => {
      const { event_id, scanned_at } = await client.scan({ qr_id: `QR-${(i + j) % 7}`, scanner_id: "child" });
      process.stdout.write(`S ${event_id} ${scanned_at}\n`);
    }),
  );
}
setInterval(() => process.stdout.write(`M ${client.metrics().sent}\n`), 20);
