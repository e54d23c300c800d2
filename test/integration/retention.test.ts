// Retention on a real database (throwaway, through the stack's Postgres and pgbouncer): raw days
// past the policy archived to Parquet, verified and dropped; minute counts rolled up and pruned;
// archive-restore; kill -9 during an archive; a late event for an archived day through a real
// worker; the stats route over archived periods. Two test hooks of `maintain` (MaintainHooks, passed
// in-process only) put a fault between archiving a day and dropping it.
//
// Mutations these tests were checked against (tools/mutations/catalog/durability.ts):
// | mutation (jobs/retention/maintain.ts)                          | what fails                                              |
// | dropDay's last re-check compares the digest with itself        | "a row arriving after": the late row is gone (0 of 1)   |
// | a freshly written archive returned without verifyArchive       | "freshly written": failed is [], the day was dropped    |
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { archiveRestore } from "../../jobs/archive-restore.ts";
import { runMaintain } from "../../jobs/maintain.ts";
import {
  ARCHIVE_COLUMNS,
  ARCHIVE_COLUMNS_BY_VERSION,
  type DayDigest,
  archivePaths,
  digestInDb,
  partitionOf,
  readArchive,
  sha256File,
  writeArchive,
} from "../../jobs/retention/archive.ts";
import { type MaintainConfig, loadMaintainConfig } from "../../jobs/retention/config.ts";
import { killProcess, spawnProcess, stopProcess } from "../../tools/harness.ts";
import {
  API_KEY,
  createDatabase,
  createProducer,
  createTestApp,
  onCleanup,
  spawnWorker,
  workerEnv,
} from "../helpers/fixtures.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { produceEvents } from "../helpers/worker.ts";

await ensureStack();

const DAYS = 40;
const RAW_DAYS = 30;
const ROWS_PER_DAY = 24;

/** YYYY-MM-DD of today (UTC) minus `n` days. */
const daysAgo = (n: number) => new Date(Date.now() - n * 86_400_000).toISOString().slice(0, 10);

function archiveDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "qrscan-archive-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A database with DAYS past days of raw rows (days 1..DAYS ago; values with tabs, backslashes,
 * NULLs, JSON) and the minute counts the workers would have kept for them; a UTC session on it.
 */
async function seeded() {
  const db = await createDatabase();
  const direct = postgres(db.directUrl, { max: 1, onnotice: () => {}, connection: { TimeZone: "UTC" } });
  onCleanup(() => direct.end({ timeout: 1 }));
  await direct`select ensure_scan_event_partitions(current_date - ${DAYS}::int, current_date - 1)`;
  await direct`
    insert into scan_events (event_id, scanned_at, qr_id, scanner_id, lat, lon, accuracy_m, user_agent,
      attributes, client_ip, received_at, schema_version, kafka_partition, kafka_offset)
    select gen_random_uuid(),
      (current_date - d)::timestamp at time zone 'UTC' + make_interval(mins => i * 59, secs => i * 1.000123),
      'qr-' || (i % 3), case when i % 4 = 0 then null else 'scanner ' || i end,
      48.1 + i / 7.0, case when i % 5 = 0 then null else -1.0 / 3 end, 1e-7 * i,
      E'Mozilla\\t"x"\\\\' || i, jsonb_build_object('n', i, 'tag', E'a\\nb'), ('10.1.2.' || i)::inet,
      now(), 1, i % 6, d * 1000 + i
    from generate_series(1, ${DAYS}::int) d, generate_series(1, ${ROWS_PER_DAY}::int) i`;
  await direct`insert into scan_counts (qr_id, bucket, count)
    select qr_id, date_trunc('minute', scanned_at), count(*) from scan_events group by 1, 2`;
  return { db, direct };
}

function config(db: { directUrl: string }, dir: string, extra: Record<string, string> = {}): MaintainConfig {
  return loadMaintainConfig({
    DATABASE_DIRECT_URL: db.directUrl,
    ARCHIVE_DIR: dir,
    RETENTION_RAW_DAYS: String(RAW_DAYS),
    ...extra,
  });
}

const quiet = () => {};

/** Every row of a relation as its columns' text, sorted: what the archive must hold. */
async function rowsOf(direct: postgres.Sql, relation: string): Promise<string[]> {
  const text = await direct.unsafe<{ r: string }[]>(
    `select concat_ws('|', ${(await columnNames(direct)).map((c) => `coalesce(${c}::text, 'NULL')`).join(", ")}) as r from "${relation}"`,
  );
  return text.map((r) => r.r).sort();
}

async function columnNames(direct: postgres.Sql): Promise<string[]> {
  const rows = await direct<{ name: string }[]>`
    select attname as name from pg_attribute
    where attrelid = 'scan_events'::regclass and attnum > 0 and not attisdropped order by attnum`;
  return rows.map((r) => r.name);
}

async function archiveRows(file: string): Promise<string[]> {
  const out: string[] = [];
  await readArchive(file, (rows) => {
    for (const r of rows) out.push(r.map((x) => x ?? "NULL").join("|"));
  });
  return out.sort();
}

async function partitionExists(direct: postgres.Sql, day: string): Promise<boolean> {
  const [r] = await direct<{ present: boolean }[]>`select to_regclass(${partitionOf(day)}) is not null as present`;
  return r?.present ?? false;
}

async function archivedFile(direct: postgres.Sql, dir: string, day: string): Promise<string> {
  const [r] = await direct<{ file: string }[]>`select file from archived_days where day = ${day}::text::date`;
  if (!r) throw new Error(`${day} has no row in archived_days`);
  return join(dir, r.file);
}

/** Files (recursively) under the archive dir, for "nothing written twice". */
function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

type Counts = Map<string, number>;
async function countsOf(direct: postgres.Sql, query: string): Promise<Counts> {
  const rows = await direct.unsafe<{ k: string; n: string }[]>(query);
  return new Map(rows.map((r) => [r.k, Number(r.n)]));
}
const rawHourly = `select qr_id || '@' || date_trunc('hour', scanned_at, 'UTC')::text as k, count(*) as n from scan_events group by 1`;
const rawDaily = `select qr_id || '@' || date_trunc('day', scanned_at, 'UTC')::text as k, count(*) as n from scan_events group by 1`;

describe("bun run maintain", () => {
  test("archives and drops the days past retention, keeps the rest, rolls counts up; a rerun is a no-op; archive-restore; stats over archived days", async () => {
    const { db, direct } = await seeded();
    const dir = archiveDir();
    const expiredDays = Array.from({ length: DAYS - RAW_DAYS }, (_, i) => daysAgo(RAW_DAYS + 1 + i)).sort();
    const keptDays = Array.from({ length: RAW_DAYS }, (_, i) => daysAgo(1 + i)).sort();
    const before = new Map<string, { rows: string[]; digest: DayDigest }>();
    for (const day of [...expiredDays, ...keptDays]) {
      before.set(day, {
        rows: await rowsOf(direct, partitionOf(day)),
        digest: await digestInDb(direct, partitionOf(day)),
      });
    }
    expect(before.get(expiredDays[0] as string)?.rows.length).toBe(ROWS_PER_DAY);
    const hourly = await countsOf(direct, rawHourly);
    const daily = await countsOf(direct, rawDaily);
    const minutesBefore = await countsOf(direct, "select qr_id || '@' || bucket::text as k, count from scan_counts");

    const c = config(db, dir);
    const summary = await runMaintain(c, quiet);
    expect(summary?.archived.map((a) => a.day)).toEqual(expiredDays);

    // Archived days: gone from Postgres, recorded, and their archives hold exactly what was there.
    for (const day of expiredDays) {
      expect(await partitionExists(direct, day)).toBe(false);
      const file = await archivedFile(direct, dir, day);
      expect(await archiveRows(file)).toEqual(before.get(day)?.rows as string[]);
    }
    // Retained days: intact.
    for (const day of keptDays) {
      expect(await rowsOf(direct, partitionOf(day))).toEqual(before.get(day)?.rows as string[]);
    }
    // Partitions ahead: today and the 3 next days.
    for (let i = 0; i <= 3; i++) expect(await partitionExists(direct, daysAgo(-i))).toBe(true);

    // Rollups equal the raw sums, archived days included; minutes past 14 days are pruned, the others untouched.
    expect(
      await countsOf(direct, "select qr_id || '@' || bucket::text as k, count as n from scan_counts_hourly"),
    ).toEqual(hourly);
    expect(
      await countsOf(direct, "select qr_id || '@' || bucket::text as k, count as n from scan_counts_daily"),
    ).toEqual(daily);
    const [{ horizon } = { horizon: "" }] = await direct<{ horizon: string }[]>`
      select minutes_pruned_before::text as horizon from rollup_state`;
    expect(horizon).toBe(`${daysAgo(14)} 00:00:00+00`);
    const minutesAfter = await countsOf(direct, "select qr_id || '@' || bucket::text as k, count from scan_counts");
    const keptMinutes = new Map([...minutesBefore].filter(([k]) => (k.split("@")[1] as string) >= horizon));
    expect(keptMinutes.size).toBeGreaterThan(0);
    expect(minutesAfter).toEqual(keptMinutes);

    // A rerun changes nothing and writes no file.
    const files = listFiles(dir);
    expect(files.length).toBe(2 * expiredDays.length); // a Parquet file and its manifest per day
    const again = await runMaintain(c, quiet);
    expect(again).toMatchObject({ archived: [], hoursFolded: 0, hoursMoved: 0, hoursRecomputed: 0, daysRecomputed: 0 });
    expect(listFiles(dir)).toEqual(files);

    // Counts written after the fact: a minute of an hour already moved out of the minute counts (a
    // redriven event 20 days late) is added to its hour and day, once; one of yesterday is
    // recomputed into its hour. Neither is counted twice by a further run.
    const hourCount = async (table: string, qr: string, bucket: string) => {
      const [r] = await direct.unsafe<{ n: string }[]>(
        `select coalesce(sum(count), 0)::text as n from ${table} where qr_id = $1 and bucket = $2::text::timestamptz`,
        [qr, bucket],
      );
      return Number(r?.n);
    };
    const lateHour = `${daysAgo(20)} 09:00:00+00`;
    const recentHour = `${daysAgo(1)} 09:00:00+00`;
    const counted = {
      late: await hourCount("scan_counts_hourly", "qr-1", lateHour),
      lateDay: await hourCount("scan_counts_daily", "qr-1", `${daysAgo(20)} 00:00:00+00`),
      recent: await hourCount("scan_counts_hourly", "qr-1", recentHour),
    };
    expect([counted.late, counted.lateDay, counted.recent].every((n) => n > 0)).toBe(true);
    await direct`insert into scan_counts (qr_id, bucket, count) values
      ('qr-1', ${`${daysAgo(20)} 09:17:00+00`}::text::timestamptz, 2), ('qr-1', ${`${daysAgo(1)} 09:17:00+00`}::text::timestamptz, 3)
      on conflict (qr_id, bucket) do update set count = scan_counts.count + excluded.count`;
    for (let run = 0; run < 2; run++) {
      await runMaintain(c, quiet);
      expect(await hourCount("scan_counts_hourly", "qr-1", lateHour)).toBe(counted.late + 2);
      expect(await hourCount("scan_counts_daily", "qr-1", `${daysAgo(20)} 00:00:00+00`)).toBe(counted.lateDay + 2);
      expect(await hourCount("scan_counts", "qr-1", `${daysAgo(20)} 09:17:00+00`)).toBe(0);
      expect(await hourCount("scan_counts_hourly", "qr-1", recentHour)).toBe(counted.recent + 3);
    }
    await direct`update scan_counts set count = count - 3 where qr_id = 'qr-1' and bucket = ${`${daysAgo(1)} 09:17:00+00`}::text::timestamptz`;
    await direct`delete from scan_counts where count = 0`;
    await direct`update scan_counts_hourly set count = count - 2 where qr_id = 'qr-1' and bucket = ${lateHour}::text::timestamptz`;
    await direct`update scan_counts_daily set count = count - 2 where qr_id = 'qr-1' and bucket = ${`${daysAgo(20)} 00:00:00+00`}::text::timestamptz`;
    await runMaintain(c, quiet);

    // The stats route answers for archived days from the rollups, and says where minutes start.
    const t = await createTestApp({}, { sql: db.sql });
    const get = async (query: string) => {
      const res = await t.app.request(`/v1/qr/qr-1/stats?${query}`, {
        headers: { authorization: `Bearer ${API_KEY}` },
      });
      expect(res.status).toBe(200);
      return (await res.json()) as {
        total: number;
        buckets: { start: string; count: number }[];
        minute_counts_from?: string;
      };
    };
    const archivedRange = `from=${expiredDays[0]}T00:00:00Z&to=${daysAgo(RAW_DAYS)}T00:00:00Z`;
    const byDay = await get(`interval=day&${archivedRange}`);
    const expectedByDay = expiredDays.map((d) => ({
      start: `${d}T00:00:00.000Z`,
      count: daily.get(`qr-1@${d} 00:00:00+00`),
    }));
    expect(byDay.buckets).toEqual(expectedByDay as { start: string; count: number }[]);
    expect(byDay.total).toBe((ROWS_PER_DAY / 3) * expiredDays.length);
    const byHour = await get(`interval=hour&${archivedRange}`);
    expect(byHour.total).toBe(byDay.total);
    // Minutes before the horizon are gone: an empty range, and the field saying where they start.
    const byMinute = await get(`interval=minute&from=${expiredDays[0]}T00:00:00Z&to=${expiredDays[0]}T12:00:00Z`);
    expect(byMinute).toMatchObject({ total: 0, buckets: [], minute_counts_from: `${daysAgo(14)}T00:00:00.000Z` });
    // Across the horizon: hours before it from the rollup, after it from the minutes, none twice.
    const across = await get(`interval=day&from=${daysAgo(20)}T00:00:00Z&to=${daysAgo(1)}T00:00:00Z`);
    expect(across.total).toBe((ROWS_PER_DAY / 3) * 19);

    // archive-restore brings a day back equal to its archive, without touching any count.
    const day = expiredDays[3] as string;
    const rollupsBefore = await countsOf(
      direct,
      "select qr_id || '@' || bucket::text as k, count as n from scan_counts_daily",
    );
    await archiveRestore(c, day, quiet);
    expect(await rowsOf(direct, partitionOf(day))).toEqual(before.get(day)?.rows as string[]);
    expect(await direct`select 1 from archived_days where day = ${day}::text::date`).toHaveLength(0);
    expect(
      await countsOf(direct, "select qr_id || '@' || bucket::text as k, count as n from scan_counts_daily"),
    ).toEqual(rollupsBefore);
    expect((await get(`interval=day&${archivedRange}`)).total).toBe(byDay.total);
    // Restoring a day that is not archived says so.
    await expect(archiveRestore(c, day, quiet)).rejects.toThrow(
      `day ${day} is not archived: its partition is in Postgres`,
    );
    // The next run archives it again, reusing the same (write-once) file: same content, same name.
    const third = await runMaintain(c, quiet);
    expect(third?.archived).toEqual([expect.objectContaining({ day, reused: true, rows: ROWS_PER_DAY })]);
    expect(listFiles(dir)).toEqual(files);

    // A damaged archive is never trusted: restore refuses it, and a run that would reuse it for a
    // day back in Postgres stops before dropping that day.
    const damage = (path: string) => {
      const bytes = readFileSync(path);
      bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] as number) ^ 0xff;
      writeFileSync(path, bytes);
    };
    const other = expiredDays[4] as string;
    const otherFile = await archivedFile(direct, dir, other);
    await archiveRestore(c, other, quiet);
    damage(otherFile);
    damage(await archivedFile(direct, dir, day));
    await expect(archiveRestore(c, day, quiet)).rejects.toThrow("differs from its manifest's");
    const damaged = await runMaintain(c, quiet);
    expect(damaged?.failed).toEqual([{ day: other, reason: expect.stringContaining("differs from its manifest's") }]);
    expect(await partitionExists(direct, other)).toBe(true);
    expect(await rowsOf(direct, partitionOf(other))).toEqual(before.get(other)?.rows as string[]);
  });

  test("refuses a policy whose raw retention is shorter than the edge's maximum event age", () => {
    expect(() =>
      loadMaintainConfig({ RETENTION_RAW_DAYS: "10", SCANNED_AT_MAX_AGE_HOURS: "193", CLOCK_SKEW_MAX_HOURS: "24" }),
    ).toThrow(
      "RETENTION_RAW_DAYS=10 (240 h) is shorter than the edge's SCANNED_AT_MAX_AGE_HOURS (193) + CLOCK_SKEW_MAX_HOURS (24) + one day = 241 h: the edge would accept scans of days already archived; raise it to at least 11",
    );
    const fits = { RETENTION_RAW_DAYS: "10", SCANNED_AT_MAX_AGE_HOURS: "192", CLOCK_SKEW_MAX_HOURS: "24" };
    expect(loadMaintainConfig(fits).RETENTION_RAW_DAYS).toBe(10);
    // The defaults agree: the edge accepts scans as old as the raw days kept allow, to the hour.
    const d = loadMaintainConfig({});
    expect(d.SCANNED_AT_MAX_AGE_HOURS + d.CLOCK_SKEW_MAX_HOURS + 24).toBe(d.RETENTION_RAW_DAYS * 24);
  });

  test("an archive written at schema version 1 (before sent_at and derived_at) is verified and restored, the new columns null", async () => {
    const { db, direct } = await seeded();
    const dir = archiveDir();
    const c = config(db, dir);
    const day = daysAgo(35);
    const partition = partitionOf(day);
    const rows = await rowsOf(direct, partition);
    // What maintain wrote before version 2: the 15 columns, its manifest saying so, the day dropped.
    const v1 = ARCHIVE_COLUMNS_BY_VERSION[1] as readonly string[];
    expect(v1).toHaveLength(ARCHIVE_COLUMNS.length - 2);
    const digest = await digestInDb(direct, partition, v1);
    const paths = archivePaths(dir, day, digest);
    await writeArchive(direct, partition, paths.file, digest, { day, schema_version: "1" }, 0, v1);
    const manifest = {
      day,
      file: paths.file.split("/").at(-1),
      file_bytes: Bun.file(paths.file).size,
      file_sha256: sha256File(paths.file),
      schema_version: 1,
      columns: v1,
      written_at: new Date().toISOString(),
      ...digest,
    };
    writeFileSync(paths.manifest, JSON.stringify(manifest));
    await direct.unsafe(`alter table scan_events detach partition ${partition}; drop table ${partition}`);
    await direct`
      insert into archived_days (day, file, row_count, file_sha256, content_checksum, event_id_checksum)
      values (${day}::text::date, ${`scan_events/day=${day}/${manifest.file}`}, ${digest.rows}, ${manifest.file_sha256},
        ${digest.content_checksum}, ${digest.event_id_checksum})`;

    await archiveRestore(c, day, quiet);
    expect(await rowsOf(direct, partition)).toEqual(rows);
    const [restored] = await direct<{ n: number; derived: number }[]>`
      select count(*)::int as n, count(derived_at)::int as derived from scan_events
      where scanned_at >= ${day}::text::date and scanned_at < ${day}::text::date + 1`;
    expect(restored).toEqual({ n: ROWS_PER_DAY, derived: 0 });
  });

  test("kill -9 while an archive is being written loses nothing and duplicates nothing; a concurrent run exits on the lock", async () => {
    const { db, direct } = await seeded();
    const dir = archiveDir();
    const first = daysAgo(DAYS);
    const digest = await digestInDb(direct, partitionOf(first));
    const rows = await rowsOf(direct, partitionOf(first));
    const env = { DATABASE_DIRECT_URL: db.directUrl, ARCHIVE_DIR: dir, RETENTION_RAW_DAYS: String(RAW_DAYS) };
    const paused = spawnProcess({
      cmd: ["bun", "jobs/maintain.ts"],
      env: { ...env, FAULT_PAUSE_AFTER_ARCHIVE_TEMP_MS: "120000" },
      output: "ignore",
    });
    onCleanup(() => killProcess(paused));
    const folder = join(dir, "scan_events", `day=${first}`);
    const temp = await waitFor(
      `maintain (pid ${paused.pid}) to pause after writing a temporary archive under ${folder}`,
      async () => (existsSync(folder) ? readdirSync(folder) : []),
      (names) => names.some((n) => n.includes(".tmp-")) || paused.exitCode !== null,
      60_000,
      100,
    );
    expect(paused.exitCode).toBeNull();
    expect(temp.filter((n) => n.endsWith(".parquet"))).toEqual([]);

    // While it holds the lock, a second run does nothing and says so.
    const second = spawnProcess({ cmd: ["bun", "jobs/maintain.ts"], env, output: "pipe" });
    onCleanup(() => killProcess(second));
    expect(await second.exited).toBe(0);
    expect(await new Response(second.stdout as ReadableStream).text()).toContain(
      "another maintain or archive-restore run holds the lock; nothing done",
    );

    await killProcess(paused); // SIGKILL, mid-archive
    expect(paused.signalCode).toBe("SIGKILL");
    expect(await partitionExists(direct, first)).toBe(true);
    expect(await direct`select 1 from archived_days`).toHaveLength(0);

    const rerun = spawnProcess({ cmd: ["bun", "jobs/maintain.ts"], env, output: "pipe" });
    onCleanup(() => stopProcess(rerun));
    const code = await rerun.exited;
    const out = await new Response(rerun.stdout as ReadableStream).text();
    expect({ code, out }).toMatchObject({ code: 0 });
    expect(out).toContain(`archive: removed ${temp.find((n) => n.includes(".tmp-"))}, left by a killed run`);
    expect(await partitionExists(direct, first)).toBe(false);
    const names = readdirSync(folder).sort();
    expect(names.filter((n) => n.endsWith(".parquet"))).toHaveLength(1);
    expect(names.filter((n) => n.includes(".tmp-"))).toEqual([]);
    const file = await archivedFile(direct, dir, first);
    expect(await archiveRows(file)).toEqual(rows);
    const [recorded] = await direct<{ row_count: string; content_checksum: string }[]>`
      select row_count::text, content_checksum from archived_days where day = ${first}::text::date`;
    expect(recorded).toEqual({ row_count: String(digest.rows), content_checksum: digest.content_checksum });
  });

  test("a row arriving after the archive is verified stops the drop: the day is kept with the row, and archived with it next run", async () => {
    const { db, direct } = await seeded();
    const dir = archiveDir();
    // Days 39 and 40 ago expire; the hook runs between day 40's verified archive and its drop.
    const c = config(db, dir, { RETENTION_RAW_DAYS: String(DAYS - 2) });
    const day = daysAgo(DAYS);
    const rowsBefore = await rowsOf(direct, partitionOf(day));
    let lateId = "";
    const summary = await runMaintain(c, quiet, {
      beforeDrop: async (d) => {
        if (d !== day) return;
        // The archive on disk is verified equal to the partition at this point: the fault lands after it.
        const [m] = await direct<{ n: number }[]>`select count(*)::int as n from ${direct(partitionOf(day))}`;
        expect(m?.n).toBe(ROWS_PER_DAY);
        const [late] = await direct<{ id: string }[]>`
          insert into scan_events (event_id, scanned_at, qr_id, received_at, schema_version, kafka_partition, kafka_offset)
          values (gen_random_uuid(), ${`${day}T23:30:00Z`}::text::timestamptz, 'qr-late', now(), 1, 0, 999999)
          returning event_id::text as id`;
        lateId = late?.id ?? "";
      },
    });
    expect(lateId).not.toBe("");
    // The late row is still stored: its day was not dropped.
    expect(await direct`select 1 from scan_events where event_id = ${lateId}::uuid`).toHaveLength(1);
    expect(summary?.skipped).toEqual([
      { day, reason: expect.stringMatching(/now holds 25 rows, .* its archive 24 rows, .*: late rows arrived$/) },
    ]);
    expect(summary?.archived.map((a) => a.day)).toEqual([daysAgo(DAYS - 1)]);
    expect(await partitionExists(direct, day)).toBe(true);
    const kept = await rowsOf(direct, partitionOf(day));
    expect(kept).toHaveLength(ROWS_PER_DAY + 1);
    expect(kept.filter((r) => r.startsWith(`${lateId}|`))).toHaveLength(1);
    expect(kept.filter((r) => !r.startsWith(`${lateId}|`))).toEqual(rowsBefore);
    expect(await direct`select 1 from archived_days where day = ${day}::text::date`).toHaveLength(0);

    // The next run archives the day as it is now, the late row included, and drops it.
    const next = await runMaintain(c, quiet);
    expect(next?.archived).toEqual([expect.objectContaining({ day, rows: ROWS_PER_DAY + 1, reused: false })]);
    expect(await partitionExists(direct, day)).toBe(false);
    expect(await archiveRows(await archivedFile(direct, dir, day))).toEqual(kept);
  });

  test("a freshly written archive that does not read back as the partition is refused: the day is kept, the run goes on", async () => {
    const { db, direct } = await seeded();
    const dir = archiveDir();
    const scratch = archiveDir();
    const c = config(db, dir, { RETENTION_RAW_DAYS: String(DAYS - 2) });
    const day = daysAgo(DAYS);
    const rowsBefore = await rowsOf(direct, partitionOf(day));
    let written = "";
    const summary = await runMaintain(c, quiet, {
      // The new file is replaced by a valid Parquet archive of the same rows with one value
      // changed: what a writer that mangles a string would leave. Its manifest is made from it.
      afterArchiveWritten: async (d, file) => {
        if (d !== day) return;
        await direct.unsafe(`create temp table tampered as select * from ${partitionOf(day)}`);
        await direct`update tampered set user_agent = 'tampered' where event_id = (select event_id from tampered order by 1 limit 1)`;
        const other = join(scratch, "tampered.parquet");
        await writeArchive(direct, "tampered", other, await digestInDb(direct, "tampered"), { day });
        await direct`drop table tampered`;
        renameSync(other, file);
        written = file;
      },
    });
    expect(written).not.toBe("");
    // The fault landed: the file on disk holds the partition's rows but one.
    const onDisk = await archiveRows(written);
    expect(onDisk).toHaveLength(ROWS_PER_DAY);
    expect(onDisk.filter((r) => !rowsBefore.includes(r))).toHaveLength(1);
    expect(summary?.failed).toEqual([
      { day, reason: expect.stringMatching(/reads back as 24 rows, content -?\d+, .*; its manifest says 24 rows, /) },
    ]);
    expect(summary?.archived.map((a) => a.day)).toEqual([daysAgo(DAYS - 1)]);
    expect(await partitionExists(direct, day)).toBe(true);
    expect(await rowsOf(direct, partitionOf(day))).toEqual(rowsBefore);
    expect(await direct`select 1 from archived_days where day = ${day}::text::date`).toHaveLength(0);
  });

  test("a late event for an archived day is dead-lettered with the way back, even for a day the worker had cached", async () => {
    const { db, direct } = await seeded();
    const dir = archiveDir();
    // A day within retention for now: the worker stores an event for it (and caches the day).
    const day = daysAgo(RAW_DAYS + 1);
    const env = await workerEnv(db.url, 2);
    spawnWorker(env);
    const producer = createProducer();
    const event = (at: string, qr = "late") => ({ event_id: crypto.randomUUID(), qr_id: qr, scanned_at: at });
    const stored = event(`${day}T12:00:00.000Z`);
    await produceEvents(producer, env.scansTopic, [stored]);
    await waitFor(
      `the worker to store event ${stored.event_id}`,
      async () => (await direct`select 1 from scan_events where event_id = ${stored.event_id}::uuid`).length,
      (n) => n === 1,
      60_000,
    );

    await runMaintain(config(db, dir), quiet);
    expect(await partitionExists(direct, day)).toBe(false);
    const counts = await countsOf(
      direct,
      "select qr_id || '@' || bucket::text as k, count as n from scan_counts_hourly",
    );
    const minutes = await countsOf(direct, "select qr_id || '@' || bucket::text as k, count from scan_counts");

    // The cached day (23514 → asked again) and a never-seen archived day, with a valid day beside them.
    const late = [event(`${day}T13:00:00.000Z`), event(`${daysAgo(DAYS)}T01:00:00.000Z`)];
    const fine = event(`${daysAgo(2)}T05:00:00.000Z`, "fine");
    await produceEvents(producer, env.scansTopic, [...late, fine]);
    const dead = await waitFor(
      "both late events in dead_letters",
      () => direct<{ error: string; payload: Buffer }[]>`select error, payload from dead_letters order by id`,
      (rows) => rows.length >= 2,
      60_000,
    );
    const reasons = dead.map((d) => d.error).sort();
    expect(reasons).toEqual(
      [daysAgo(DAYS), day]
        .sort()
        .map(
          (d) =>
            `day ${d} is archived (raw retention); to store this event: bun run archive-restore ${d}, then bun run dlq replay <id>`,
        ),
    );
    await waitFor(
      "the valid event beside them to be stored",
      async () => (await direct`select 1 from scan_events where event_id = ${fine.event_id}::uuid`).length,
      (n) => n === 1,
      60_000,
    );
    // No partition came back, no row and no count was added for the archived days.
    expect(await partitionExists(direct, day)).toBe(false);
    expect(await partitionExists(direct, daysAgo(DAYS))).toBe(false);
    const lateIds = late.map((e) => e.event_id);
    expect(
      await direct`select 1 from scan_events where event_id = any(${`{${lateIds.join(",")}}`}::text::uuid[])`,
    ).toHaveLength(0);
    await runMaintain(config(db, dir), quiet);
    const lateOnly = (m: Counts) => [...m].filter(([k]) => k.startsWith("late@"));
    const hourlyNow = await countsOf(
      direct,
      "select qr_id || '@' || bucket::text as k, count as n from scan_counts_hourly",
    );
    expect(lateOnly(hourlyNow)).toEqual(lateOnly(counts));
    expect(lateOnly(counts)).toHaveLength(1); // the one event stored before the day was archived
    const minutesNow = await countsOf(direct, "select qr_id || '@' || bucket::text as k, count from scan_counts");
    expect(lateOnly(minutesNow)).toEqual(lateOnly(minutes));
  });
});
