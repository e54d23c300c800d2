// GET /v1/qr/:qr_id/stats answered from scan_counts on a real database behind pgbouncer.
import { describe, expect, test } from "bun:test";
import postgres from "postgres";
import { classifyStatsError } from "../../server/stats.ts";
import { API_KEY, createDatabase, createTestApp, onCleanup } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

interface Stats {
  request_id?: string;
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
  return { get, db };
}

/** The error a query ends with, for classifying real errors rather than hand-made ones. */
async function failure(query: Promise<unknown>): Promise<unknown> {
  try {
    await query;
  } catch (error) {
    return error;
  }
  throw new Error("expected the query to fail");
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

  test("parameters Postgres cannot represent are a 400, never a 503", async () => {
    const { get } = await setup();
    for (const [query, field] of [
      ["to=0000-01-01T00:00:00Z", "to"],
      ["from=0000-01-01T00:00:00Z&to=0001-01-01T00:00:00Z", "from"],
      ["from=1969-12-31T00:00:00Z&to=1970-01-01T00:00:00Z&interval=day", "from"],
      ["to=2026-02-30T00:00:00Z", "to"],
      ["to=2026-01-01T00:00:00%2B16:00", "to"],
    ]) {
      const res = await get(`/v1/qr/gate-7/stats?${query}`);
      expect({ query, status: res.status, field: res.body.errors?.[0]?.path }).toEqual({ query, status: 400, field });
      expect(res.body.error).toBe("invalid query");
    }
    // The edges of what timestamps accept still answer.
    const edges = await get("/v1/qr/gate-7/stats?to=1970-01-01T00:00:00Z");
    expect(edges.status).toBe(200);
    expect(edges.body).toMatchObject({ total: 0, to: "1970-01-01T00:00:00.000Z", from: "1969-12-31T00:00:00.000Z" });
    const last = await get("/v1/qr/gate-7/stats?from=9999-12-31T00:00:00Z&to=9999-12-31T23:59:59.999999Z");
    expect(last.status).toBe(200);
    expect(last.body.to).toBe("9999-12-31T23:59:59.999Z");
  });

  test("database errors: class 22 is the client's, an unreachable database is a 503 + Retry-After, anything else a 500", async () => {
    const { db, get } = await setup();
    const outOfRange = await failure(db.sql`select '0000-01-01T00:00:00Z'::timestamptz`);
    expect((outOfRange as { code: string }).code).toBe("22008");
    expect(classifyStatsError(outOfRange)).toBe("parameters");
    expect(classifyStatsError(await failure(db.sql`select 1/0`))).toBe("parameters"); // 22012
    expect(classifyStatsError(await failure(db.sql`select * from no_such_table`))).toBe("bug"); // 42P01

    const nowhere = postgres(`postgres://qrscan:qrscan@127.0.0.1:${freePort()}/qrscan`, {
      prepare: false,
      max: 1,
      connect_timeout: 5,
    });
    onCleanup(() => nowhere.end({ timeout: 1 }));
    const refused = await failure(nowhere`select 1`);
    expect((refused as { code: string }).code).toBe("ECONNREFUSED");
    expect(classifyStatsError(refused)).toBe("unavailable");
    const down = await createTestApp({}, { sql: nowhere });
    const res = await down.app.request("/v1/qr/gate-7/stats", { headers: { authorization: `Bearer ${API_KEY}` } });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("2");
    expect(((await res.json()) as Stats).error).toBe("statistics are unavailable; retry later");

    // Through the handler: a data exception raised by the query is a 400 with Postgres' message.
    // The timestamp schema now refuses the values that used to get here (year 0 was a 503), so a
    // view that divides by zero on read stands in for them.
    await db.sql`alter table scan_counts rename to scan_counts_data`;
    await db.sql`create view scan_counts as select qr_id, bucket, count / 0 as count from scan_counts_data`;
    const dataError = await get("/v1/qr/gate-7/stats?from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z");
    expect(dataError.status).toBe(400);
    expect(dataError.body.error).toBe("invalid query: division by zero");
    // A broken deployment (no scan_counts table) is not the client's fault and retrying will not help.
    await db.sql`drop view scan_counts`;
    const broken = await get("/v1/qr/gate-7/stats");
    expect(broken.status).toBe(500);
    expect(broken.body).toEqual({ error: "internal error", request_id: broken.body.request_id } as unknown as Stats);
    expect(broken.body.request_id).toBeTruthy();
  }, 30_000);

  test("needs the same API key as ingest", async () => {
    const { get } = await setup();
    expect((await get("/v1/qr/gate-7/stats", "wrong")).status).toBe(401);
  });
});
