// Archives of raw days: one Parquet file per day version, written once, with a manifest, and the
// checksums that tie a file to the partition it came from.
//
// Every column is stored as Postgres' own text output of the value (session TimeZone UTC), as
// nullable UTF-8 strings: lossless (float8's shortest exact digits, timestamps to the microsecond,
// jsonb canonical, inet with its mask), loaded back by COPY unchanged, and the same bytes on both
// sides of a checksum. Analytics engines read the file with a cast per column.
//
// Checksums, both order-independent (sum mod nothing: a SQL numeric / a JS bigint) of the first
// 64 bits of an md5 per row, so Postgres and this file compute them the same way:
//   content  md5 of the row's columns joined by U+001F, NULL as \N: any changed value shows;
//   event_id md5 of the event_id alone (the restore drill's per-day checksum).
// The file's sha256 (in the manifest and in archived_days) guards the bytes at rest.
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { ParquetWriter, fileWriter } from "hyparquet-writer";
import type { Sql } from "postgres";
import { SCAN_EVENTS_COLUMNS } from "../../shared/scan-events.ts";

/** Bumped when ARCHIVE_COLUMNS changes; in every manifest and file. */
export const ARCHIVE_SCHEMA_VERSION = 2;

/** scan_events' columns, in table order: archiving refuses a table whose columns differ. */
export const ARCHIVE_COLUMNS: readonly string[] = SCAN_EVENTS_COLUMNS;

/**
 * Each schema version's columns: an archive of an older version is still read and restored (its
 * missing columns stay null), and its digests are over its own columns. Version 2 added the
 * device clock's sent_at and derived_at (migration 0011).
 */
export const ARCHIVE_COLUMNS_BY_VERSION: Record<number, readonly string[]> = {
  1: ARCHIVE_COLUMNS.filter((c) => c !== "sent_at" && c !== "derived_at"),
  2: ARCHIVE_COLUMNS,
};

export interface DayDigest {
  rows: number;
  content_checksum: string;
  event_id_checksum: string;
  /** scanned_at of the first and last row (ISO), null for an empty day. */
  first_scanned_at: string | null;
  last_scanned_at: string | null;
}

export interface Manifest extends DayDigest {
  day: string;
  file: string;
  file_bytes: number;
  file_sha256: string;
  schema_version: number;
  columns: readonly string[];
  written_at: string;
}

export class ArchiveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ArchiveError";
  }
}

const SEP = "\u001f";
const rowText = (columns: readonly string[]) => columns.map((c) => `coalesce(${c}::text, '\\N')`).join(", ");

/** A relation name we generate (scan_events_YYYYMMDD, …), quoted; anything else is a bug. */
export function ident(name: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new ArchiveError(`not a relation name of ours: "${name}"`);
  return `"${name}"`;
}

/** A day's partition name: scan_events_YYYYMMDD. */
export const partitionOf = (day: string) => `scan_events_${day.replaceAll("-", "")}`;

/** Postgres' digest of a partition (or of any relation with scan_events' columns), over `columns`. */
export async function digestInDb(
  sql: Sql,
  relation: string,
  columns: readonly string[] = ARCHIVE_COLUMNS,
): Promise<DayDigest> {
  const [r] = await sql.unsafe<
    { rows: string; content: string; event_ids: string; first: string | null; last: string | null }[]
  >(`
    select count(*)::text as rows,
      coalesce(sum(('x' || left(md5(concat_ws(E'\\x1f', ${rowText(columns)})), 16))::bit(64)::bigint), 0)::text as content,
      coalesce(sum(('x' || left(md5(event_id::text), 16))::bit(64)::bigint), 0)::text as event_ids,
      min(scanned_at)::text as first, max(scanned_at)::text as last
    from ${ident(relation)}`);
  if (!r) throw new ArchiveError(`no digest for ${relation}`);
  return {
    rows: Number(r.rows),
    content_checksum: r.content,
    event_id_checksum: r.event_ids,
    first_scanned_at: r.first,
    last_scanned_at: r.last,
  };
}

const md5_64 = (s: string) => BigInt.asIntN(64, BigInt(`0x${createHash("md5").update(s).digest("hex").slice(0, 16)}`));

/** Accumulates the digest of rows given as their columns' text (null for NULL). */
export class DigestBuilder {
  rows = 0;
  #content = 0n;
  #eventIds = 0n;
  #first: string | null = null;
  #last: string | null = null;

  add(values: readonly (string | null)[]): void {
    this.rows++;
    this.#content += md5_64(values.map((x) => x ?? "\\N").join(SEP));
    this.#eventIds += md5_64(values[0] as string);
    const at = values[1] as string;
    // Same zone and format for every row (UTC text), so text order is time order.
    if (this.#first === null || at < this.#first) this.#first = at;
    if (this.#last === null || at > this.#last) this.#last = at;
  }

  digest(): DayDigest {
    return {
      rows: this.rows,
      content_checksum: String(this.#content),
      event_id_checksum: String(this.#eventIds),
      first_scanned_at: this.#first,
      last_scanned_at: this.#last,
    };
  }
}

export function sameDigest(a: DayDigest, b: DayDigest): boolean {
  return a.rows === b.rows && a.content_checksum === b.content_checksum && a.event_id_checksum === b.event_id_checksum;
}

export const describeDigest = (d: DayDigest) =>
  `${d.rows} rows, content ${d.content_checksum}, event_ids ${d.event_id_checksum}`;

/**
 * Where a day's archive lives: named by its content checksum, so a file is never overwritten by
 * other content (a day archived again after a restore and more rows gets a second file).
 */
export function archivePaths(dir: string, day: string, digest: DayDigest) {
  const stem = `scan_events_${day}_${BigInt.asUintN(64, BigInt(digest.content_checksum)).toString(16).padStart(16, "0")}_${digest.rows}`;
  const base = join(dir, "scan_events", `day=${day}`, stem);
  return { file: `${base}.parquet`, manifest: `${base}.manifest.json` };
}

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function fsyncPath(path: string, flags = "r"): void {
  const fd = openSync(path, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `data` to `path` through a temporary name: write, fsync, rename, fsync the folder. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  fsyncPath(tmp);
  renameSync(tmp, path);
  fsyncPath(dirname(path));
}

/** Temporary files a killed run left next to the archives of `day` (removed before writing). */
export function removeTemporaries(dir: string, day: string): string[] {
  const folder = join(dir, "scan_events", `day=${day}`);
  if (!existsSync(folder)) return [];
  const removed: string[] = [];
  for (const name of new Bun.Glob("*.tmp-*").scanSync(folder)) {
    rmSync(join(folder, name));
    removed.push(name);
  }
  return removed;
}

const CHUNK_ROWS = 50_000;

/**
 * Streams a partition's rows (in event_id order, one REPEATABLE READ snapshot) into a new Parquet
 * file at `path` via a temporary name; returns the digest of what was written. `pauseMs` is the
 * test hook that holds the temporary file before its rename; `columns`, an older schema version's
 * (the tests' archives from before a version change).
 */
export async function writeArchive(
  sql: Sql,
  relation: string,
  path: string,
  expected: DayDigest,
  meta: Record<string, string>,
  pauseMs = 0,
  columns: readonly string[] = ARCHIVE_COLUMNS,
): Promise<DayDigest> {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const builder = new DigestBuilder();
  const writer = new ParquetWriter({
    writer: fileWriter(tmp),
    schema: [
      { name: "root", num_children: columns.length },
      ...columns.map((name) => ({
        name,
        type: "BYTE_ARRAY" as const,
        converted_type: "UTF8" as const,
        repetition_type: "OPTIONAL" as const,
      })),
    ],
    kvMetadata: Object.entries(meta).map(([key, value]) => ({ key, value })),
    createdBy: "qrscan maintain",
  });
  const select = `select ${columns.map((c) => `${c}::text as ${c}`).join(", ")} from ${ident(relation)} order by event_id, scanned_at`;
  await sql.begin("isolation level repeatable read read only", async (tx) => {
    await tx
      .unsafe<Record<string, string | null>[]>(select)
      .values()
      .cursor(CHUNK_ROWS, async (rows) => {
        const data = columns.map(() => [] as (string | null)[]);
        for (const row of rows as unknown as (string | null)[][]) {
          builder.add(row);
          for (let i = 0; i < data.length; i++) (data[i] as (string | null)[]).push(row[i] ?? null);
        }
        await writer.write({
          columnData: columns.map((name, i) => ({ name, data: data[i] as (string | null)[] })),
          rowGroupSize: CHUNK_ROWS,
        });
      });
  });
  writer.finish();
  fsyncPath(tmp);
  if (pauseMs > 0) {
    console.log(`maintain: paused after writing ${tmp} (FAULT_PAUSE_AFTER_ARCHIVE_TEMP_MS)`);
    await Bun.sleep(pauseMs);
  }
  const written = builder.digest();
  if (!sameDigest(written, expected)) {
    rmSync(tmp);
    throw new ArchiveError(
      `${relation} changed while being archived (${describeDigest(expected)} before, ${describeDigest(written)} read): late rows arrived; the next run archives the day as it is then`,
    );
  }
  if (existsSync(path)) throw new ArchiveError(`${path} appeared while writing it: archives are never overwritten`);
  renameSync(tmp, path);
  fsyncPath(dirname(path));
  return written;
}

/**
 * Reads an archive back and computes its digest; `onRows` sees each chunk (archive-restore loads
 * them), each row in the file's columns (its manifest's `columns`: an older version has fewer).
 */
export async function readArchive(
  path: string,
  onRows: (rows: (string | null)[][]) => Promise<void> | void = () => {},
  /** The columns the caller expects (its manifest's): a file with others is refused. */
  expected?: readonly string[],
): Promise<DayDigest> {
  const file = await asyncBufferFromFile(path);
  const metadata = await parquetMetadataAsync(file);
  const names = metadata.schema.slice(1).map((s) => s.name);
  const columns = Object.values(ARCHIVE_COLUMNS_BY_VERSION).find((c) => c.join(",") === names.join(","));
  if (!columns) {
    throw new ArchiveError(
      `${path}: columns ${names.join(",")} are no archive schema version's (1 to ${ARCHIVE_SCHEMA_VERSION})`,
    );
  }
  if (expected && expected.join(",") !== columns.join(",")) {
    throw new ArchiveError(`${path}: columns ${names.join(",")}, its manifest says ${expected.join(",")}`);
  }
  const total = Number(metadata.num_rows);
  const builder = new DigestBuilder();
  for (let start = 0; start < total; start += CHUNK_ROWS) {
    const objects = await parquetReadObjects({
      file,
      metadata,
      rowStart: start,
      rowEnd: Math.min(total, start + CHUNK_ROWS),
    });
    const rows = objects.map((o) => columns.map((c) => (o[c] ?? null) as string | null));
    for (const r of rows) builder.add(r);
    await onRows(rows);
  }
  return builder.digest();
}

export function readManifest(path: string): Manifest {
  return JSON.parse(readFileSync(path, "utf8")) as Manifest;
}

/**
 * Checks an archive against its manifest (bytes' sha256) and reads it back (rows and checksums);
 * returns the manifest, or throws naming what differs.
 */
export async function verifyArchive(manifestPath: string, expected?: DayDigest): Promise<Manifest> {
  const manifest = readManifest(manifestPath);
  const file = join(dirname(manifestPath), manifest.file);
  if (!existsSync(file)) throw new ArchiveError(`${manifestPath} names ${file}, which is missing`);
  const sha = sha256File(file);
  if (sha !== manifest.file_sha256) {
    throw new ArchiveError(
      `${file}: sha256 ${sha} differs from its manifest's ${manifest.file_sha256}: the file changed or is corrupt`,
    );
  }
  const read = await readArchive(file);
  if (!sameDigest(read, manifest)) {
    throw new ArchiveError(
      `${file} reads back as ${describeDigest(read)}; its manifest says ${describeDigest(manifest)}`,
    );
  }
  if (expected && !sameDigest(read, expected)) {
    throw new ArchiveError(`${file} holds ${describeDigest(read)}; expected ${describeDigest(expected)}`);
  }
  return manifest;
}
