// How a batch is best written: the sink's two paths (the optimistic COPY straight into scan_events
// with the worker's counts; the COPY into a staging table kept per connection, then INSERT … ON
// CONFLICT DO NOTHING RETURNING and the counts from it), a replayed batch (the optimistic COPY
// meets a stored row at its end, rolls back, and the staging path writes it: the fallback's worst
// case), the staging table created and dropped in every transaction (the sink before issue 11),
// and the one-statement alternatives (INSERT … SELECT FROM unnest of one array literal per
// column, or FROM json_to_recordset of one JSON text). Same rows, same fresh table, alternating
// rounds so the machine's drift hits each alike. Prints ms per batch (the client's encoding
// included), Postgres' CPU per row (all its processes, from /proc) and WAL bytes per row; with
// pg_stat_statements loaded (shared_preload_libraries), where each way's time goes per statement.
// Run it at several batch sizes (hundreds: what e2e traffic makes; thousands: saturation).
//   bun bench/sink-statement.ts [--rounds 8] [--rows 5000] [--ways optimistic,staging,replay,…]
import { finished } from "node:stream/promises";
import postgres from "postgres";
import { type ScanRecord, timestampOf, toScanRecord } from "../shared/event.ts";
import { localStack as stack } from "../shared/local-stack.ts";
import { COLUMNS, decode, isPoison } from "../shared/scan-events.ts";
import { createThrowawayDatabase } from "../tools/harness.ts";
import { childPids } from "../tools/pipeline.ts";
import { postgresPid } from "../tools/stack/postgres.ts";
import { createDb } from "../worker/db.ts";
import { STAGE, STAGE_TABLE, ScanSink } from "../worker/sink.ts";
import { arg, median, numArg } from "./lib.ts";
import { cpuTicks } from "./proc-stats.ts";
import { walNow } from "./sink-run.ts";

const rounds = numArg("rounds", 8);
const rowsPerBatch = numArg("rows", 5_000);
const TYPES = [
  "uuid",
  "timestamptz",
  "text",
  "text",
  "float8",
  "float8",
  "float8",
  "text",
  "jsonb",
  "inet",
  "timestamptz",
  "smallint",
  "integer",
  "bigint",
  "timestamptz",
  "timestamptz",
];

/** The columns' values as text, in COLUMNS order (null is NULL). */
function values(r: ScanRecord, partition: number, offset: number): (string | null)[] {
  const n = (x: number | undefined) => (x === undefined ? null : String(x));
  return [
    r.event_id,
    r.scanned_at,
    r.qr_id,
    r.scanner_id ?? null,
    n(r.location?.lat),
    n(r.location?.lon),
    n(r.location?.accuracy_m),
    r.user_agent ?? null,
    r.attributes ? JSON.stringify(r.attributes) : null,
    r.client_ip,
    r.received_at,
    String(r.schema_version),
    String(partition),
    String(offset),
    r.sent_at ?? null,
    r.derived_at ?? r.scanned_at,
  ];
}

function batch(round: number) {
  const now = timestampOf(Date.now());
  return Array.from({ length: rowsPerBatch }, (_, i) => {
    const event = {
      event_id: crypto.randomUUID(),
      qr_id: `QR-${i % 500}`,
      scanned_at: now,
      scanner_id: `gate-${i % 40}`,
      attributes: { gate: "A", lane: i % 7 },
    };
    const record = toScanRecord(event, now, "10.0.0.1");
    const value = Buffer.from(JSON.stringify(record));
    const row = decode({ topic: "b", partition: round, offset: i, key: null, value, headers: null, timestamp: 0 });
    if (isPoison(row)) throw new Error(row.error);
    return { row, record: JSON.parse(value.toString()) as ScanRecord, offset: i, partition: round };
  });
}
type Batch = ReturnType<typeof batch>;

const TAIL = `
  on conflict do nothing returning qr_id, derived_at)
  insert into scan_counts (qr_id, bucket, count) select qr_id, date_trunc('minute', derived_at), count(*) from ins
    group by 1, 2 order by 1, 2 on conflict (qr_id, bucket) do update set count = scan_counts.count + excluded.count`;
// jsonb arrives as text[] and is cast per element: Postgres 15 reads a jsonb[] literal of 5,000
// small objects 20× slower than the same text[] literal.
const UNNEST = `
  with ins as (insert into scan_events (${COLUMNS.join(", ")})
    select ${COLUMNS.map((c, i) => (TYPES[i] === "jsonb" ? `${c}::jsonb` : c)).join(", ")}
    from unnest(${TYPES.map((t, i) => `$${i + 1}::text::${t === "jsonb" ? "text" : t}[]`).join(", ")}) as r(${COLUMNS.join(", ")})
    order by 1, 2 ${TAIL}`;
const JSON_TO_RECORDSET = `
  with ins as (insert into scan_events (${COLUMNS.join(", ")})
    select ${COLUMNS.join(", ")} from json_to_recordset($1::text::json)
      as r(${COLUMNS.map((c, i) => `${c} ${TYPES[i]}`).join(", ")})
    order by 1, 2 ${TAIL}`;

const ESCAPED = /["\\]/g;
/** One column as an array literal: elements quoted, `"` and `\` escaped, NULL bare. */
function arrayLiteral(rows: (string | null)[][], column: number): string {
  let text = "{";
  for (let i = 0; i < rows.length; i++) {
    const v = (rows[i] as (string | null)[])[column] as string | null;
    text += `${i > 0 ? "," : ""}${v === null ? "NULL" : `"${v.replace(ESCAPED, "\\$&")}"`}`;
  }
  return `${text}}`;
}

const db = await createThrowawayDatabase("qrscan_bench_sinkstmt");
const direct = postgres(db.directUrl, { max: 1, onnotice: () => {} });
await direct`select ensure_scan_event_partitions(current_date - 1, current_date + 1)`;
// What keeping "one row per event_id whatever its scanned_at" would cost (issue 12): a table of
// the event_ids seen, unique on event_id alone, checked before the insert (docs/guarantees.md).
await direct`create table scan_event_ids (event_id uuid primary key, seen_at timestamptz not null default now())`;
const pool = createDb({ url: db.url, poolMax: 2, statementTimeoutMs: 60_000, deadlineMarginMs: 5_000 });
const sink = new ScanSink(pool.transaction);
const stagingSink = new ScanSink(pool.transaction, { optimistic: false });
// pg_stat_statements, if the server loads it: created in this database by the superuser.
const admin = postgres(stack().adminDatabaseUrl.replace(/\/postgres$/, `/${db.name}`), { max: 1, onnotice: () => {} });
const [loaded] = await admin<{ on: boolean }[]>`
  select 'pg_stat_statements' = any(string_to_array(current_setting('shared_preload_libraries'), ',')) as on`;
if (loaded?.on) await admin`create extension if not exists pg_stat_statements`;
/** Rows already stored: the last one of each replayed batch. */
let stored: Batch = [];

const SINK = "optimistic COPY (the sink)";
const allWays: Record<string, [string, (b: Batch) => Promise<unknown>]> = {
  optimistic: [SINK, (b) => sink.write(b.map((x) => x.row))],
  staging: ["COPY + staging kept (SINK_OPTIMISTIC_COPY=false)", (b) => stagingSink.write(b.map((x) => x.row))],
  replay: [
    "replayed: optimistic meets a stored row at its end, then staging",
    async (b) => {
      // A fresh sink (no staging turns left from the last conflict), its partitions known.
      const s = new ScanSink(pool.transaction);
      await s.ensurePartitions([b[0]?.row.day as string]);
      return s.write([...b.slice(1), ...stored.slice(0, 1)].map((x) => x.row));
    },
  ],
};
const legacyWays: Record<string, (b: Batch) => Promise<unknown>> = {
  "COPY + staging per transaction": (b) =>
    pool.transaction("per-transaction staging", async (tx) => {
      await tx`create temp table scan_stage_once (like scan_events including defaults) on commit drop`;
      const copy = await tx.unsafe(`copy scan_stage_once (${COLUMNS.join(", ")}) from stdin`).writable();
      copy.end(b.map((x) => x.row.line).join(""));
      await finished(copy);
      await tx.unsafe(`
        with ins as (insert into scan_events (${COLUMNS.join(", ")})
          select ${COLUMNS.join(", ")} from scan_stage_once order by event_id, scanned_at ${TAIL}`);
    }),
  "COPY + staging kept + event_id dedupe": (b) =>
    pool.transaction("dedupe", async (tx) => {
      await tx.unsafe(STAGE);
      const copy = await tx.unsafe(`copy ${STAGE_TABLE} (${COLUMNS.join(", ")}) from stdin`).writable();
      copy.end(b.map((x) => x.row.line).join(""));
      await finished(copy);
      await tx.unsafe(`
        with fresh as (insert into scan_event_ids (event_id)
          select event_id from ${STAGE_TABLE} order by event_id on conflict do nothing returning event_id),
        ins as (insert into scan_events (${COLUMNS.join(", ")})
          select ${COLUMNS.join(", ")} from ${STAGE_TABLE} where event_id in (select event_id from fresh)
          order by event_id, scanned_at ${TAIL}`);
    }),
  "unnest(array literals)": (b) => {
    const rows = b.map((x) => values(x.record, x.partition, x.offset));
    const params = COLUMNS.map((_, c) => arrayLiteral(rows, c));
    return pool.transaction("unnest", (tx) => tx.unsafe(UNNEST, params));
  },
  json_to_recordset: (b) => {
    const json = b.map((x) => {
      const v = values(x.record, x.partition, x.offset);
      const o: Record<string, unknown> = {};
      COLUMNS.forEach((c, i) => {
        if (v[i] !== null) o[c] = c === "attributes" ? JSON.parse(v[i] as string) : v[i];
      });
      return JSON.stringify(o);
    });
    return pool.transaction("json", (tx) => tx.unsafe(JSON_TO_RECORDSET, [`[${json.join(",")}]`]));
  },
};
const legacyKeys: Record<string, string> = {
  "COPY + staging per transaction": "per-transaction",
  "COPY + staging kept + event_id dedupe": "dedupe",
  "unnest(array literals)": "unnest",
  json_to_recordset: "json",
};
for (const [name, write] of Object.entries(legacyWays)) allWays[legacyKeys[name] as string] = [name, write];
const chosen = arg("ways", Object.keys(allWays).join(",")).split(",");
const ways: Record<string, (b: Batch) => Promise<unknown>> = {};
for (const key of chosen) {
  const way = allWays[key];
  if (!way) throw new Error(`--ways: no way "${key}"; known: ${Object.keys(allWays).join(", ")}`);
  ways[way[0]] = way[1];
}

const postgresTicks = () => {
  const pg = postgresPid(stack());
  return pg ? cpuTicks([pg, ...childPids(pg)]) : 0;
};
const times: Record<string, number[]> = Object.fromEntries(Object.keys(ways).map((k) => [k, []]));
const ticks: Record<string, number> = Object.fromEntries(Object.keys(ways).map((k) => [k, 0]));
const walBytes: Record<string, number> = Object.fromEntries(Object.keys(ways).map((k) => [k, 0]));
const statements: Record<string, Map<string, { calls: number; ms: number; wal: number }>> = Object.fromEntries(
  Object.keys(ways).map((k) => [k, new Map()]),
);
const statementsNow = async () =>
  loaded?.on
    ? await admin<{ query: string; calls: number; ms: number; wal: number }[]>`
        select left(regexp_replace(query, '\\s+', ' ', 'g'), 70) as query, calls::int, total_exec_time as ms,
               wal_bytes::float8 as wal
        from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database())`
    : [];
const warm = batch(rounds);
await sink.write(warm.map((x) => x.row));
stored = warm;
for (let r = 0; r < rounds; r++) {
  for (const [name, write] of Object.entries(ways)) {
    const b = batch(r);
    const statementsBefore = await statementsNow();
    const walBefore = (await walNow(direct)).bytes;
    const before = postgresTicks();
    const started = performance.now();
    await write(b);
    (times[name] as number[]).push(performance.now() - started);
    ticks[name] = (ticks[name] as number) + postgresTicks() - before;
    walBytes[name] = (walBytes[name] as number) + (await walNow(direct)).bytes - walBefore;
    const per = statements[name] as Map<string, { calls: number; ms: number; wal: number }>;
    const was = new Map(statementsBefore.map((s) => [s.query, s]));
    for (const s of await statementsNow()) {
      const w = was.get(s.query);
      const calls = s.calls - (w?.calls ?? 0);
      if (calls <= 0 || /regexp_replace\(query|pg_current_wal|pg_stat_wal|pg_catalog\.pg_type/.test(s.query)) continue;
      const t = per.get(s.query) ?? { calls: 0, ms: 0, wal: 0 };
      per.set(s.query, { calls: t.calls + calls, ms: t.ms + s.ms - (w?.ms ?? 0), wal: t.wal + s.wal - (w?.wal ?? 0) });
    }
  }
}
const base = median(times[SINK] as number[]);
const cpuPerRow = (name: string) => (((ticks[name] as number) / 100) * 1e6) / (rounds * rowsPerBatch);
console.log(
  `${rowsPerBatch}-row batches, ${rounds} rounds: ms per batch (median, client encoding included), Postgres CPU µs per row (all its processes):`,
);
for (const [name, xs] of Object.entries(times)) {
  console.log(
    `  ${name.padEnd(34)} ${median(xs).toFixed(1).padStart(7)} ms   ratio to the sink ${(median(xs) / base).toFixed(2)}` +
      `   Postgres ${cpuPerRow(name).toFixed(1).padStart(6)} µs/row   ratio ${(cpuPerRow(name) / cpuPerRow(SINK)).toFixed(2)}` +
      `   WAL ${Math.round((walBytes[name] as number) / (rounds * rowsPerBatch))} B/row`,
  );
}
if (loaded?.on) {
  console.log("Per statement (pg_stat_statements: server execution time per batch, WAL bytes per row):");
  for (const [name, per] of Object.entries(statements)) {
    console.log(`  ${name}`);
    for (const [query, t] of [...per].sort((a, b) => b[1].ms - a[1].ms)) {
      console.log(
        `    ${(t.ms / rounds).toFixed(2).padStart(8)} ms  ${String(Math.round(t.wal / (rounds * rowsPerBatch))).padStart(4)} B/row  ${t.calls / rounds}×  ${query}`,
      );
    }
  }
} else {
  console.log("(pg_stat_statements is not loaded: no per-statement times)");
}
await admin.end();
await direct.end();
await pool.sql.end();
await db.drop();
