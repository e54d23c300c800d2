// Device clocks and late scans, end to end (docs/api.md, "Device clocks"): events POSTed to the
// edge's real HTTP handler go through a real Kafka topic and a real worker into Postgres.
// - a device clock 2 hours fast and one 3 hours slow: every scan accepted (the window is applied to
//   derived_at), stored with the device's scanned_at and sent_at, derived_at within a bound of the
//   real scan time, and counted in derived_at's minute;
// - a retry of the same event with a new sent_at (so a new derived_at) is stored and counted once;
// - without sent_at the same fast clock is refused, as before (old clients keep their contract);
// - an offset past CLOCK_SKEW_MAX_HOURS is refused on sent_at;
// - a scan 20 days old (past the old 7-day window) is stored; one of a day retention has archived
//   is answered 202, then dead-lettered with the restore command.
import { describe, expect, test } from "bun:test";
import { countMismatches } from "../../sql/checks.ts";
import { createDatabase, createTestApp, spawnWorker, workerEnv } from "../helpers/fixtures.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { metric } from "../helpers/worker.ts";

await ensureStack();

const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

interface StoredRow {
  event_id: string;
  scanned_at: string;
  sent_at: string | null;
  derived_at: string;
}

async function pipeline() {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 2);
  const t = await createTestApp({}, { topic: env.scansTopic });
  const worker = spawnWorker(env, { LOG_LEVEL: "error" });
  const post = async (events: object[]) => {
    const res = await t.post(JSON.stringify(events));
    return { status: res.status, body: (await res.json()) as { accepted?: number; rejected?: unknown[] } };
  };
  const rows = (ids: string[]) =>
    db.sql<StoredRow[]>`
      select event_id::text, to_json(scanned_at)#>>'{}' as scanned_at, to_json(sent_at)#>>'{}' as sent_at,
        to_json(derived_at)#>>'{}' as derived_at
      from scan_events where event_id = any(${ids}::uuid[]) order by event_id`;
  return { db, env, post, rows, metricsUrl: worker.metricsUrl };
}

describe("device clocks: sent_at corrects scanned_at, retries stay one event", () => {
  test("clocks 2 hours fast and 3 hours slow: accepted, stored once, derived_at within 5 s of the real scan, counted in its minute", async () => {
    const { db, post, rows, metricsUrl } = await pipeline();
    const realScan = Date.now() - 60_000;
    const cases = [
      { name: "2 hours fast", offset: 2 * HOUR },
      { name: "3 hours slow", offset: -3 * HOUR },
    ].map((c) => ({
      ...c,
      event: {
        event_id: crypto.randomUUID(),
        qr_id: `QR-clock-${c.offset > 0 ? "fast" : "slow"}`,
        scanned_at: iso(realScan + c.offset),
        schema_version: 2,
      },
    }));
    // First attempt, stored (and counted) before the retry arrives, so the first copy takes the
    // sink's usual path; then a retry a little later: same event_id and scanned_at, a new sent_at.
    const ids = cases.map((c) => c.event.event_id);
    let stored: StoredRow[] = [];
    for (const attempt of [0, 1]) {
      const sent = cases.map((c) => ({ ...c.event, sent_at: iso(Date.now() + c.offset + attempt * 1_500) }));
      const answer = await post(sent);
      expect({ attempt, ...answer }).toEqual({
        attempt,
        status: 202,
        body: expect.objectContaining({ accepted: 2, rejected: [] }),
      });
      if (attempt === 0)
        stored = await waitFor(
          "both scans in scan_events",
          () => rows(ids),
          (r) => r.length === 2,
          30_000,
        );
    }
    await waitFor(
      "the worker to see the retry's two rows as duplicates (worker_rows_duplicate_total)",
      () => metric(metricsUrl, "worker_rows_duplicate_total"),
      (n) => n === 2,
      30_000,
    );
    expect([...(await rows(ids))]).toEqual([...stored]);
    for (const c of cases) {
      const row = stored.find((r) => r.event_id === c.event.event_id) as StoredRow;
      expect(Date.parse(row.scanned_at)).toBe(Date.parse(c.event.scanned_at));
      expect(row.sent_at).not.toBeNull();
      const error = Math.abs(Date.parse(row.derived_at) - realScan);
      expect({ case: c.name, withinBound: error < 5_000, error }).toEqual({
        case: c.name,
        withinBound: true,
        error,
      });
    }
    // Counted once each (the retry inserted nothing), in the real minute, not the device's.
    const counts = await db.sql<{ qr_id: string; bucket: string; count: string }[]>`
      select qr_id, to_json(bucket)#>>'{}' as bucket, count::text from scan_counts order by qr_id`;
    const minute = (ms: number) => `${iso(ms).slice(0, 16)}`;
    expect(counts.map((c) => ({ qr_id: c.qr_id, minute: c.bucket.slice(0, 16), count: c.count }))).toEqual(
      stored
        .map((r) => ({
          qr_id: String(cases.find((c) => c.event.event_id === r.event_id)?.event.qr_id),
          minute: minute(Date.parse(r.derived_at)),
          count: "1",
        }))
        .sort((a, b) => String(a.qr_id).localeCompare(String(b.qr_id))),
    );
    expect(await countMismatches(db.sql)).toBe(0);
  });

  test("without sent_at a clock 10 minutes fast is refused as before; with it, accepted; past CLOCK_SKEW_MAX_HOURS refused on sent_at", async () => {
    const { post } = await pipeline();
    const fast = Date.now() + 10 * 60_000;
    const event = { event_id: crypto.randomUUID(), qr_id: "QR-v1", scanned_at: iso(fast) };
    expect(await post([event])).toEqual({
      status: 400,
      body: expect.objectContaining({
        accepted: 0,
        rejected: [{ index: 0, errors: [{ path: "scanned_at", message: "is more than 5 minutes in the future" }] }],
      }),
    });
    expect((await post([{ ...event, sent_at: iso(Date.now() + 10 * 60_000), schema_version: 2 }])).status).toBe(202);
    const unset = { event_id: crypto.randomUUID(), qr_id: "QR-unset", scanned_at: iso(Date.now() - 30 * HOUR) };
    expect(await post([{ ...unset, sent_at: iso(Date.now() - 30 * HOUR) }])).toEqual({
      status: 400,
      body: expect.objectContaining({
        rejected: [
          {
            index: 0,
            errors: [
              {
                path: "sent_at",
                message:
                  "says the device clock is 30.0 hours behind the server's, more than the 24 hours the edge corrects: set the device's clock",
              },
            ],
          },
        ],
      }),
    });
  });
});

describe("late scans", () => {
  test("a scan 20 days old is stored; one of an archived day is answered 202 and dead-lettered with the restore command", async () => {
    const { db, post, rows } = await pipeline();
    const late = { event_id: crypto.randomUUID(), qr_id: "QR-late", scanned_at: iso(Date.now() - 20 * 24 * HOUR) };
    const archivedDay = iso(Date.now() - 25 * 24 * HOUR).slice(0, 10);
    await db.sql`
      insert into archived_days (day, file, row_count, file_sha256, content_checksum, event_id_checksum)
      values (${archivedDay}::date, 'scan_events_test.parquet', 0, '', '0', '0')`;
    const ofArchived = {
      event_id: crypto.randomUUID(),
      qr_id: "QR-archived",
      scanned_at: `${archivedDay}T12:00:00.000Z`,
    };
    expect((await post([late, ofArchived])).body).toEqual(expect.objectContaining({ accepted: 2, rejected: [] }));
    await waitFor(
      "the 20-day-old scan in scan_events",
      () => rows([late.event_id]),
      (r) => r.length === 1,
      30_000,
    );
    const dead = await waitFor(
      "the archived day's scan in dead_letters",
      () => db.sql<{ error: string; event_id: string }[]>`select error, event_id from dead_letters`,
      (r) => r.length === 1,
      30_000,
    );
    expect([...dead]).toEqual([
      {
        event_id: ofArchived.event_id,
        error: `day ${archivedDay} is archived (raw retention); to store this event: bun run archive-restore ${archivedDay}, then bun run dlq replay <id>`,
      },
    ]);
    expect([...(await rows([ofArchived.event_id]))]).toEqual([]);
  });
});
