// GET /v1/qr/:qr_id/stats?from=&to=&interval=minute|hour|day — scans of one QR code per interval,
// answered from scan_counts (the per-minute aggregate the workers maintain) and, for periods whose
// minutes retention has pruned, from the hourly rollup, so users can see what was ingested without
// psql. Buckets are UTC; `from` is inclusive, `to` exclusive.
import type { Context } from "hono";
import type { Sql } from "postgres";
import * as v from "valibot";
import { classifyDbError } from "../shared/db-errors.ts";
import { QrId, RFC3339Timestamp, fieldErrors } from "../shared/event.ts";
import type { Logger } from "../shared/logger.ts";
import type { StatsAnswer } from "./answers.ts";
import { ApiError } from "./errors.ts";
import { requestLogFields } from "./tracing.ts";

const INTERVAL_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;
const MAX_BUCKETS = 10_000;

/** The query of GET /v1/qr/:qr_id/stats (also the OpenAPI document's parameters). */
export const StatsQuery = v.object({
  qr_id: QrId,
  from: v.optional(RFC3339Timestamp),
  to: v.optional(RFC3339Timestamp),
  interval: v.optional(v.picklist(["minute", "hour", "day"], "must be minute, hour or day"), "hour"),
});

/**
 * What a failed stats query means for the client, from the project's one classification of
 * database errors (shared/db-errors.ts): `parameters` (SQLSTATE class 22, a value Postgres cannot
 * represent) is a 400, `unavailable` (the connection, pgbouncer, a timeout, a restart) a 503 +
 * Retry-After, `bug` (e.g. no scan_counts table) a 500.
 */
export function classifyStatsError(error: unknown): "parameters" | "unavailable" | "bug" {
  const kind = classifyDbError(error);
  return kind === "data" ? "parameters" : kind === "transient" ? "unavailable" : "bug";
}

export function statsHandler({
  sql,
  logger,
  retryAfterSeconds,
}: { sql: Sql; logger: Logger; retryAfterSeconds: number }) {
  return async function stats(c: Context) {
    const parsed = v.safeParse(StatsQuery, { ...c.req.query(), qr_id: c.req.param("qr_id") });
    if (!parsed.success) throw new ApiError(400, "invalid query", { errors: fieldErrors(parsed.issues) });
    const { qr_id, interval } = parsed.output;
    const to = parsed.output.to ? new Date(parsed.output.to) : new Date();
    const from = parsed.output.from ? new Date(parsed.output.from) : new Date(to.getTime() - 86_400_000);
    if (from >= to) throw new ApiError(400, "`from` must be before `to`");
    const buckets = Math.ceil((to.getTime() - from.getTime()) / INTERVAL_MS[interval]);
    if (buckets > MAX_BUCKETS) {
      throw new ApiError(400, `${buckets} ${interval} buckets requested; at most ${MAX_BUCKETS}: narrow the range`);
    }
    let rows: { start: Date; count: string }[];
    let minuteCountsFrom: Date | null;
    try {
      ({ rows, minuteCountsFrom } = await countsOf(sql, qr_id, interval, from, to));
    } catch (error) {
      const kind = classifyStatsError(error);
      // A value Postgres cannot represent (SQLSTATE class 22): the client's parameters, not an outage.
      if (kind === "parameters") throw new ApiError(400, `invalid query: ${(error as Error).message}`);
      if (kind === "unavailable") {
        logger.warn({ err: error, ...requestLogFields(c) }, "stats query failed; answered 503");
        throw new ApiError(503, "statistics are unavailable; retry later", {
          headers: { "Retry-After": String(retryAfterSeconds) },
        });
      }
      throw error; // a bug or a broken deployment (e.g. no scan_counts table): app.onError, 500
    }
    const series = rows.map((r) => ({ start: r.start.toISOString(), count: Number(r.count) }));
    return c.json({
      qr_id,
      interval,
      from: from.toISOString(),
      to: to.toISOString(),
      total: series.reduce((s, b) => s + b.count, 0),
      buckets: series,
      // Once retention has pruned minute counts: where they start (docs/api.md).
      ...(minuteCountsFrom ? { minute_counts_from: minuteCountsFrom.toISOString() } : {}),
    } satisfies StatsAnswer);
  };
}

/**
 * Retention (`bun run maintain`) prunes minute counts before rollup_state.minutes_pruned_before
 * (a UTC midnight) once they are in the hourly and daily rollups. Before it, hours and days come
 * from scan_counts_hourly (one-hour resolution: a `from` inside an hour starts at the next
 * hour) and minutes are gone; from it on, everything comes from the minutes as before.
 */
async function countsOf(sql: Sql, qrId: string, interval: keyof typeof INTERVAL_MS, from: Date, to: Date) {
  const [state] = await sql<{ t: Date | null }[]>`select minutes_pruned_before as t from rollup_state`;
  const minuteCountsFrom = state?.t ?? null;
  if (!minuteCountsFrom || from >= minuteCountsFrom) {
    const rows = await sql<{ start: Date; count: string }[]>`
      select date_trunc(${interval}, bucket, 'UTC') as start, sum(count) as count
      from scan_counts
      where qr_id = ${qrId} and bucket >= ${from} and bucket < ${to}
      group by 1 order by 1`;
    return { rows, minuteCountsFrom };
  }
  if (interval === "minute") {
    // Minutes before the horizon are gone: only the part of the range from it on is answered.
    const rows = await sql<{ start: Date; count: string }[]>`
      select bucket as start, sum(count) as count
      from scan_counts
      where qr_id = ${qrId} and bucket >= ${minuteCountsFrom} and bucket >= ${from} and bucket < ${to}
      group by 1 order by 1`;
    return { rows, minuteCountsFrom };
  }
  const rows = await sql<{ start: Date; count: string }[]>`
    select date_trunc(${interval}, bucket, 'UTC') as start, sum(count) as count from (
      select bucket, count from scan_counts_hourly
      where qr_id = ${qrId} and bucket >= ${from} and bucket < ${to} and bucket < ${minuteCountsFrom}
      union all
      select bucket, count from scan_counts
      where qr_id = ${qrId} and bucket >= ${minuteCountsFrom} and bucket >= ${from} and bucket < ${to}
    ) counts
    group by 1 order by 1`;
  return { rows, minuteCountsFrom };
}
