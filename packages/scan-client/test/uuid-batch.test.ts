// Unit tests: UUIDv7 layout and order (also within one ms and when the clock goes back), batching
// by count and bytes with sent_at on every line.
import { expect, test } from "bun:test";
import { buildBatch, gzip } from "../src/batch.ts";
import type { QueuedEvent } from "../src/queue.ts";
import { uuidv7Generator } from "../src/uuid.ts";

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("UUIDv7: version and variant bits, the ms in the first 48 bits", () => {
  const ms = Date.parse("2026-12-07T04:00:00.123Z");
  const id = uuidv7Generator(() => ms)();
  expect(id).toMatch(UUID_V7);
  expect(Number.parseInt(id.replace(/-/g, "").slice(0, 12), 16)).toBe(ms);
});

test("UUIDv7: ids sort in creation order within one ms, past 4,096 per ms, and when the clock steps back", () => {
  let t = 1_800_000_000_000;
  const clock = [0, 0, 0, -5, 1];
  let i = 0;
  const next = uuidv7Generator(() => t);
  const ids: string[] = [];
  for (let n = 0; n < 10_000; n++) {
    if (n % 2_000 === 0) t += clock[i++ % clock.length] as number;
    ids.push(next());
  }
  expect(new Set(ids).size).toBe(ids.length);
  expect([...ids].sort()).toEqual(ids);
});

const q = (seq: number, qr = `QR-${seq}`): QueuedEvent => ({
  seq,
  queuedAt: 0,
  event: { event_id: `id-${seq}`, qr_id: qr, scanned_at: "2026-12-07T04:00:00.000Z", schema_version: 2 },
});

test("buildBatch: by count, then by bytes; an oversized event goes alone; sent_at on each line", () => {
  const events = [q(1), q(2), q(3), q(4)];
  const byCount = buildBatch(events, "2026-12-07T04:00:05.000Z", 3, 1 << 20);
  expect(byCount.events.map((e) => e.seq)).toEqual([1, 2, 3]);
  const lines = new TextDecoder()
    .decode(byCount.body)
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(lines.map((l) => [l.event_id, l.sent_at, l.scanned_at])).toEqual([
    ["id-1", "2026-12-07T04:00:05.000Z", "2026-12-07T04:00:00.000Z"],
    ["id-2", "2026-12-07T04:00:05.000Z", "2026-12-07T04:00:00.000Z"],
    ["id-3", "2026-12-07T04:00:05.000Z", "2026-12-07T04:00:00.000Z"],
  ]);
  const lineBytes = byCount.body.byteLength / 3;
  expect(buildBatch(events, "2026-12-07T04:00:05.000Z", 10, lineBytes * 2).events.length).toBe(2);
  expect(buildBatch([q(1, "x".repeat(500)), q(2)], "2026-12-07T04:00:05.000Z", 10, 100).events.length).toBe(1);
  // The queued events themselves never get sent_at.
  expect(events[0]?.event.sent_at).toBeUndefined();
});

test("gzip round-trips", async () => {
  const body = new TextEncoder().encode("a".repeat(10_000));
  const z = await gzip(body);
  expect(z.byteLength).toBeLessThan(200);
  expect(new TextDecoder().decode(Bun.gunzipSync(z as Uint8Array<ArrayBuffer>))).toBe("a".repeat(10_000));
});
