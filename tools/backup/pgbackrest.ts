// pgBackRest for the local stack's PostgreSQL cluster: its configuration (repository in the
// stack's data dir), the archive settings the cluster starts with, the stanza, and backups. Every
// pgbackrest command runs as the cluster's OS user (`postgres` when we are root), like the server.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LocalStack } from "../../shared/local-stack.ts";
import { haPaths, pgPaths } from "../stack/pg-paths.ts";
import { asServiceUser, isRoot } from "../stack/processes.ts";

/** The stanza: pgBackRest's name for this cluster's backups and WAL archive. */
export const STANZA = "qrscan";

/**
 * Seconds after which PostgreSQL switches to a new WAL segment even if it is not full, so it gets
 * archived: the bound on the data lost when the cluster's disk is lost (the RPO), under writes.
 */
export const ARCHIVE_TIMEOUT_S = 60;

export class BackupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BackupError";
  }
}

export function backrestPaths(stack: LocalStack) {
  // PG_HA's cluster is another cluster (its own system id): its repository is its own, under pg/ha/.
  const root = stack.pgHa ? join(haPaths(stack).root, "pgbackrest") : join(pgPaths(stack).root, "pgbackrest");
  return {
    root,
    config: join(root, "pgbackrest.conf"),
    repo: join(root, "repo"),
    log: join(root, "log"),
    lock: join(root, "lock"),
    spool: join(root, "spool"),
  };
}

/** pgbackrest.conf: one repository in the stack dir, one stanza for the stack's cluster. */
export function backrestConfig(stack: LocalStack): string {
  const p = backrestPaths(stack);
  const pg = pgPaths(stack);
  return [
    "[global]",
    `repo1-path=${p.repo}`,
    // Two full backups (and the differentials and WAL that depend on them) are kept; older go.
    "repo1-retention-full=2",
    "repo1-retention-diff=7",
    "compress-type=zst",
    "compress-level=3",
    "process-max=1",
    "start-fast=y",
    // A backup waits for its last WAL segment to be archived; under load (CI) the default 60 s is short.
    "archive-timeout=300",
    `log-path=${p.log}`,
    `lock-path=${p.lock}`,
    `spool-path=${p.spool}`,
    "log-level-console=warn",
    "log-level-stderr=off",
    "log-level-file=info",
    "",
    `[${STANZA}]`,
    ...(stack.pgHa
      ? haMembers(stack)
      : [`pg1-path=${pg.data}`, `pg1-port=${stack.pgPort}`, `pg1-socket-path=${pg.run}`, "pg1-user=postgres"]),
    "",
  ].join("\n");
}

/**
 * PG_HA: both Patroni members, pg1 and pg2, whichever leads. A backup reads the files from the
 * standby (backup-standby) and only starts and stops the backup on the leader, so the leader's
 * disk does not serve the copy; WAL is archived by whichever member leads (haArchiveCommand).
 */
function haMembers(stack: LocalStack): string[] {
  return [
    ...stack.patroniMembers.flatMap((m, i) => {
      const paths = haPaths(stack).member(m.name);
      return [
        `pg${i + 1}-path=${paths.data}`,
        `pg${i + 1}-port=${m.pgPort}`,
        `pg${i + 1}-socket-path=${paths.run}`,
        `pg${i + 1}-user=postgres`,
      ];
    }),
    "backup-standby=y",
  ];
}

/** Writes the configuration and the repository's folders, owned by the cluster's user. */
export function writeBackrestConfig(stack: LocalStack): string {
  const p = backrestPaths(stack);
  for (const dir of [p.root, p.repo, p.log, p.lock, p.spool]) mkdirSync(dir, { recursive: true });
  writeFileSync(p.config, backrestConfig(stack));
  if (isRoot()) spawnSync("chown", ["-R", "postgres:postgres", p.root]);
  return p.config;
}

/** The `-c` settings the stack's PostgreSQL starts with: continuous WAL archiving to the repository. */
export function archiveSettings(stack: LocalStack): string[] {
  return archiveSettingsWith(`--config=${backrestPaths(stack).config} `);
}

/**
 * The archive settings with `configFlag` before the stanza: empty where pgbackrest.conf is in its
 * default place (compose's Postgres image, compose/postgres/pgbackrest.conf).
 */
export function archiveSettingsWith(configFlag: string): string[] {
  return [
    "wal_level=replica",
    "archive_mode=on",
    `archive_command=pgbackrest ${configFlag}--stanza=${STANZA} archive-push %p`,
    `archive_timeout=${ARCHIVE_TIMEOUT_S}`,
  ];
}

/** Runs `pgbackrest <args>` as the cluster's user with this stack's configuration; stdout, or a BackupError. */
export function pgbackrest(stack: LocalStack, args: string[], timeoutMs = 30 * 60_000): string {
  const config = backrestPaths(stack).config;
  if (!existsSync(config)) {
    throw new BackupError(`${config} does not exist: start the stack with \`bun run stack up\` (it writes it)`);
  }
  const [cmd, argv] = asServiceUser("pgbackrest", [`--config=${config}`, `--stanza=${STANZA}`, ...args]);
  const res = spawnSync(cmd, argv, { encoding: "utf8", timeout: timeoutMs, cwd: "/" });
  if (res.error) throw new BackupError(`pgbackrest ${args.join(" ")} could not run: ${res.error.message}`);
  if (res.status !== 0) {
    const out = `${res.stdout}${res.stderr}`.trim();
    throw new BackupError(
      `pgbackrest ${args.join(" ")} failed (exit ${res.status ?? res.signal}): ${out || "no output"}; log: ${backrestPaths(stack).log}`,
    );
  }
  return res.stdout;
}

/** Creates the stanza (idempotent: pgbackrest accepts an existing stanza of the same cluster). */
export function ensureStanza(stack: LocalStack): void {
  pgbackrest(stack, ["stanza-create"], 120_000);
}

export type BackupType = "full" | "diff" | "incr";

export interface BackupInfo {
  label: string;
  type: BackupType;
  /** Start and stop of the backup (pgbackrest's timestamps, seconds). */
  start: Date;
  stop: Date;
  /** Bytes of the cluster, and in the repository (compressed, only what this backup added). */
  databaseBytes: number;
  repoBytes: number;
  /** The WAL needed to make it consistent. */
  walStart: string;
  walStop: string;
}

interface InfoJson {
  name: string;
  status: { code: number; message: string };
  archive: { id: string; min: string | null; max: string | null }[];
  backup: {
    label: string;
    type: BackupType;
    timestamp: { start: number; stop: number };
    info: { size: number; repository: { delta: number } };
    archive: { start: string; stop: string };
  }[];
}

/** The stanza's backups, oldest first, and its WAL archive range. */
export function backupInfo(stack: LocalStack): { backups: BackupInfo[]; archiveMax: string | null } {
  const [info] = JSON.parse(pgbackrest(stack, ["info", "--output=json"])) as InfoJson[];
  if (!info) throw new BackupError(`pgbackrest info knows no stanza ${STANZA}`);
  return {
    backups: info.backup.map((b) => ({
      label: b.label,
      type: b.type,
      start: new Date(b.timestamp.start * 1000),
      stop: new Date(b.timestamp.stop * 1000),
      databaseBytes: b.info.size,
      repoBytes: b.info.repository.delta,
      walStart: b.archive.start,
      walStop: b.archive.stop,
    })),
    archiveMax: info.archive.at(-1)?.max ?? null,
  };
}

/**
 * Takes one backup and returns it with its measured duration. pgbackrest turns a diff or incr
 * into a full when there is no full backup yet.
 */
export function takeBackup(stack: LocalStack, type: BackupType): BackupInfo & { durationMs: number } {
  const started = performance.now();
  pgbackrest(stack, ["backup", `--type=${type}`]);
  const durationMs = performance.now() - started;
  const last = backupInfo(stack).backups.at(-1);
  if (!last) throw new BackupError("pgbackrest backup succeeded but info lists no backup");
  return { ...last, durationMs };
}
