// GET /v1/qr/:qr_id/stats answered from scan_counts on a real database behind pgbouncer.
import { describe, expect, test } from "bun:test";
import { createDatabase } from "../helpers/postgres.ts";
import { API_KEY, createTestApp } from "../helpers/server.ts";

interface Stats {
  qr_id: string;
  interval: string;
  total: number;
  from: string;
  to: string;
  buckets: { start: string; count: number }[];
  error?: string;
  errors?: { path: string }[];
}

async function setup() {
  const db = await createDatabase();
  await db.sql`insert into scan_counts (qr_id, bucket, count) values
    ('gate-7', '2026-11-20T10:00:00Z', 3), ('gate-7', '2026-11-20T10:01:00Z', 2),
    ('gate-7', '2026-11-20T11:59:00Z', 5), ('gate-7', '2026-11-21T00:00:00Z', 7),
    ('other', '2026-11-20T10:00:00Z', 100)`;
  const t = await createTestApp({}, { sql: db.sql });
  const get = async (path: string, key = API_KEY) => {
    const res = await t.app.request(path, { headers: { authorization: `Bearer ${key}` } });
    return { status: res.status, body: (await res.json()) as Stats };
  };
  return { get };
}

describe("GET /v1/qr/:qr_id/stats", () => {
  test("per hour, per minute and per day, UTC buckets, from inclusive and to exclusive", async () => {
    const { get } = await setup();
    const range = "from=2026-11-20T10:00:00Z&to=2026-11-21T00:00:00Z";
    const hour = await get(`/v1/qr/gate-7/stats?${range}&interval=hour`);
    expect(hour.status).toBe(200);
    expect(hour.body.total).toBe(10);
    expect(hour.body.buckets).toEqual([
      { start: "2026-11-20T10:00:00.000Z", count: 5 },
      { start: "2026-11-20T11:00:00.000Z", count: 5 },
    ]);
    const minute = await get(`/v1/qr/gate-7/stats?${range}&interval=minute`);
    expect(minute.body.buckets.map((b) => b.count)).toEqual([3, 2, 5]);
    const day = await get("/v1/qr/gate-7/stats?from=2026-11-19T00:00:00Z&to=2026-11-22T00:00:00Z&interval=day");
    expect(day.body.buckets).toEqual([
      { start: "2026-11-20T00:00:00.000Z", count: 10 },
      { start: "2026-11-21T00:00:00.000Z", count: 7 },
    ]);
    // Offsets in the query are honoured: 12:00+02:00 is 10:00Z.
    const offset = await get(
      "/v1/qr/gate-7/stats?from=2026-11-20T12:01:00%2B02:00&to=2026-11-20T12:00:00Z&interval=minute",
    );
    expect(offset.body.total).toBe(2 + 5);
  });

  test("an unknown QR code has an empty series; bad parameters are a 400 naming the field", async () => {
    const { get } = await setup();
    const none = await get("/v1/qr/never-seen/stats?from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z");
    expect(none.status).toBe(200);
    expect(none.body).toMatchObject({ total: 0, buckets: [] });
    const badInterval = await get("/v1/qr/gate-7/stats?interval=week");
    expect(badInterval.status).toBe(400);
    expect(badInterval.body.errors?.[0]?.path).toBe("interval");
    const badFrom = await get("/v1/qr/gate-7/stats?from=yesterday");
    expect(badFrom.status).toBe(400);
    expect(badFrom.body.errors?.[0]?.path).toBe("from");
    expect((await get("/v1/qr/bad%20id/stats")).status).toBe(400);
    expect((await get("/v1/qr/gate-7/stats?from=2026-11-21T00:00:00Z&to=2026-11-20T00:00:00Z")).status).toBe(400);
    const tooMany = await get("/v1/qr/gate-7/stats?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&interval=minute");
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error).toMatch(/narrow the range/);
  });

  test("needs the same API key as ingest", async () => {
    const { get } = await setup();
    expect((await get("/v1/qr/gate-7/stats", "wrong")).status).toBe(401);
  });
});
