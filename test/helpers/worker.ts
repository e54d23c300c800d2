// Scan records and worker metrics for worker tests. Worker processes, topics and groups come from
// ./fixtures.ts; waiting is ./wait.ts.
import type { KafkaProducer } from "bun-rdkafka";
import { type ScanEvent, toScanRecord } from "../../shared/event.ts";
import { scan } from "./server.ts";

export { metricValue as metric, scrape } from "../../tools/harness.ts";

/** What the edge would write to Kafka for `event`. */
export function record(event: ScanEvent = scan() as ScanEvent) {
  return { event, value: JSON.stringify(toScanRecord(event, new Date().toISOString(), "127.0.0.1")) };
}

export async function produceEvents(producer: KafkaProducer, topic: string, events: readonly ScanEvent[]) {
  await producer.send(events.map((e) => ({ topic, key: e.qr_id, value: record(e).value })));
}

export function events(n: number, qrIds = 20): ScanEvent[] {
  return Array.from({ length: n }, (_, i) => scan({ qr_id: `QR-${i % qrIds}` }) as ScanEvent);
}
