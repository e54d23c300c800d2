// The end-to-end latency observer of bench/e2e.ts and bench/e2e-hosts.ts: a row is "visible" when
// first seen (polled every 20 ms), and its end-to-end latency is seen − received_at. It watches a
// fixed 1% sample of QR codes through the (qr_id, scanned_at) index: scanning all recent rows 50
// times a second would load the very database whose latency it measures. It only looks 30 s back,
// so an event that took longer is never seen: the benches check the sample is complete.
import type { Sql } from "postgres";

/** The QR codes observed: every hundredth of the load generator's. */
export const SAMPLE_QR_IDS = Array.from({ length: 50 }, (_, i) => `QR-${i * 100}`);

export function startE2eObserver(sql: Sql) {
  const e2e: { at: number; ms: number }[] = [];
  const seen = new Set<string>();
  let observing = true;
  const loop = (async () => {
    while (observing) {
      const rows = await sql<{ event_id: string; received_at: Date }[]>`
        select event_id::text, received_at from scan_events
        where qr_id = any(${SAMPLE_QR_IDS}) and scanned_at > now() - interval '30 seconds'`;
      const now = Date.now();
      for (const r of rows) {
        if (seen.has(r.event_id)) continue;
        seen.add(r.event_id);
        e2e.push({ at: now, ms: now - r.received_at.getTime() });
      }
      await Bun.sleep(20);
    }
  })();
  return {
    /** Each sampled event's latency, with when it was seen. */
    e2e,
    /** The sampled events seen so far. */
    seen,
    async stop(): Promise<void> {
      observing = false;
      await loop;
    },
  };
}
