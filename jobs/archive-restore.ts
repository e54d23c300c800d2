// Loads an archived raw day back into Postgres from its Parquet archive:
//   bun run archive-restore YYYY-MM-DD
// The archive is checked (sha256, rows and checksums against archived_days) before loading and
// the partition after, in one transaction: the partition is re-created, the rows copied in, and the
// day taken out of archived_days only if the loaded rows equal the archive. Counts are not
// touched (the minute, hourly and daily counts already include the day). Holds the maintenance
// lock, so no maintain run archives meanwhile; the next maintain run archives the day again
// while it is older than RETENTION_RAW_DAYS (a new file if rows were added).
// Configuration: `bun run maintain`'s (docs/operations.md).
import { join } from "node:path";
import { finished } from "node:stream/promises";
import type { Sql } from "postgres";
import { type CliSpec, MAIN, UsageError, parseCommand, runCli } from "../shared/cli.ts";
import { loadConfig } from "../shared/config.ts";
import { copyText } from "../shared/scan-events.ts";
import {
  ARCHIVE_COLUMNS_BY_VERSION,
  ArchiveError,
  type DayDigest,
  describeDigest,
  digestInDb,
  ident,
  partitionOf,
  readArchive,
  sameDigest,
  verifyArchive,
} from "./retention/archive.ts";
import { type MaintainConfig, MaintainConfigSchema } from "./retention/config.ts";
import { maintenanceSession, withMaintenanceLock } from "./retention/maintain.ts";

export class RestoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RestoreError";
  }
}

const copyLine = (row: readonly (string | null)[]) =>
  `${row.map((x) => (x === null ? "\\N" : copyText(x))).join("\t")}\n`;

async function restoreDay(sql: Sql, c: MaintainConfig, day: string): Promise<{ rows: number; file: string }> {
  const [entry] = await sql<
    { file: string; row_count: string; file_sha256: string; content_checksum: string; event_id_checksum: string }[]
  >`select file, row_count::text, file_sha256, content_checksum, event_id_checksum from archived_days where day = ${day}::text::date`;
  if (!entry) {
    const [exists] = await sql<{ present: boolean }[]>`select to_regclass(${partitionOf(day)}) is not null as present`;
    throw new RestoreError(
      exists?.present
        ? `day ${day} is not archived: its partition is in Postgres`
        : `day ${day} is not archived (no row in archived_days)`,
    );
  }
  const expected: DayDigest = {
    rows: Number(entry.row_count),
    content_checksum: entry.content_checksum,
    event_id_checksum: entry.event_id_checksum,
    first_scanned_at: null,
    last_scanned_at: null,
  };
  const file = join(c.ARCHIVE_DIR, entry.file);
  const manifest = await verifyArchive(file.replace(/\.parquet$/, ".manifest.json"), expected);
  if (manifest.file_sha256 !== entry.file_sha256) {
    throw new ArchiveError(
      `${file}: sha256 ${manifest.file_sha256} is not the one archived_days recorded (${entry.file_sha256})`,
    );
  }
  const partition = partitionOf(day);
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext('ensure_scan_event_partitions'))`;
    const [present] = await tx<{ present: boolean }[]>`select to_regclass(${partition}) is not null as present`;
    if (present?.present)
      throw new RestoreError(`${partition} exists although ${day} is archived: drop it or check who created it`);
    await tx`delete from archived_days where day = ${day}::text::date`;
    await tx`select ensure_scan_event_partition_days(array[${day}::text::date])`;
    // An archive of an older schema version has fewer columns: the others stay null.
    const columns = Object.values(ARCHIVE_COLUMNS_BY_VERSION).find((c) => c.join(",") === manifest.columns.join(","));
    if (!columns) throw new RestoreError(`${file}: its manifest's columns are no archive schema version's`);
    const copy = await tx.unsafe(`copy ${ident(partition)} (${columns.join(", ")}) from stdin`).writable();
    await readArchive(
      file,
      async (rows) => {
        let text = "";
        for (const r of rows) text += copyLine(r);
        if (!copy.write(text)) await new Promise((resolve) => copy.once("drain", resolve));
      },
      columns,
    );
    copy.end();
    await finished(copy);
    const loaded = await digestInDb(tx as unknown as Sql, partition, columns);
    if (!sameDigest(loaded, expected)) {
      throw new RestoreError(
        `${partition} holds ${describeDigest(loaded)} after loading; the archive ${describeDigest(expected)}: rolled back`,
      );
    }
  });
  return { rows: expected.rows, file };
}

export async function archiveRestore(
  c: MaintainConfig,
  day: string,
  log = (l: string) => console.log(`archive-restore: ${l}`),
) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day) || Number.isNaN(Date.parse(`${day}T00:00:00Z`))) {
    throw new RestoreError(`usage: bun run archive-restore YYYY-MM-DD (got "${day}")`);
  }
  const sql = maintenanceSession(c);
  try {
    const result = await withMaintenanceLock(sql, () => restoreDay(sql, c, day));
    if (result === null)
      throw new RestoreError(
        "a maintain or archive-restore run holds the maintenance lock; retry when it has finished",
      );
    log(
      `${day}: ${result.rows} rows loaded from ${result.file}, equal to the archive; counts unchanged. The next bun run maintain archives the day again while it is older than RETENTION_RAW_DAYS=${c.RETENTION_RAW_DAYS}.`,
    );
    return result;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export const ARCHIVE_RESTORE_CLI: CliSpec = {
  program: "bun run archive-restore",
  description: "Loads an archived raw day back into Postgres from its Parquet archive, checked before and after.",
  commands: { [MAIN]: { args: "YYYY-MM-DD", description: "the day to load back", options: {} } },
};

if (import.meta.main) {
  await runCli(ARCHIVE_RESTORE_CLI, async (argv) => {
    const [day] = parseCommand(ARCHIVE_RESTORE_CLI, argv).positionals;
    if (!day) throw new UsageError("the day to restore is needed (YYYY-MM-DD)");
    await archiveRestore(loadConfig(MaintainConfigSchema), day);
    return 0;
  });
}
