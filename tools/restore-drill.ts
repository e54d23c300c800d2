// The restore drill: restores the stack's pgBackRest backups into a fresh cluster on another port,
// verifies it against checksums captured at the recovery target before the restore, prints the
// measured RTO and RPO, and removes the drill cluster (also on failure or Ctrl-C).
//   bun run restore-drill [--latest] [--replay]
//       captures the checksums and a restore point now (tools/backup/checksums.ts: mark), then
//       restores the latest backup plus the archived WAL up to that restore point
//   bun run restore-drill --mark FILE
//       only captures the checksums and the recovery target time into FILE (before a risky change)
//   bun run restore-drill --target-time ISO [--expect FILE] [--replay]
//       point-in-time restore; verified against FILE (a --mark taken at that time; its time is the
//       target when --target-time is left out). Without FILE it only reports what it restored.
//   --replay: after verifying, moves a drill copy of the sink group to where the restored rows end
//       (jobs/offsets.ts), runs a worker into the drill cluster until it reached the
//       topic's end, and checks every event up to there is stored as on the live one and counted
//       once (scan_counts against a recount); what was replayed is read from Kafka and the worker.
// Configuration: BACKUP_DATABASE, DRILL_PG_PORT, DRILL_TIMEOUT_MS (tools/backup/config.ts), and
// with --replay the worker's (KAFKA_BROKERS, SCANS_TOPIC, CONSUMER_GROUP, …).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { KafkaAdmin } from "bun-rdkafka";
import postgres from "postgres";
import { commitGroupOffsets, resumePositions, rewindFor } from "../jobs/offsets.ts";
import { type CliSpec, MAIN, UsageError, parseCommand, runCli } from "../shared/cli.ts";
import { type LocalStack, localStack } from "../shared/local-stack.ts";
import { type WorkerConfig, loadWorkerConfig } from "../worker/config.ts";
import { type Checksums, type Mark, checksums, differences, mark, totalRows, writeMark } from "./backup/checksums.ts";
import { type BackupConfig, loadBackupConfig } from "./backup/config.ts";
import { type DrillCluster, type RecoveryTarget, archiveCurrentWal, restoreDrillCluster } from "./backup/drill.ts";
import { ARCHIVE_TIMEOUT_S } from "./backup/pgbackrest.ts";
import { metricValue, spawnProcess, stopProcess } from "./harness.ts";
import { freePort } from "./stack/processes.ts";
import { waitFor } from "./wait.ts";

export const RESTORE_DRILL_CLI: CliSpec = {
  program: "bun run restore-drill",
  description:
    "The local restore drill: restores the stack's backups into a fresh cluster, verifies it, prints RTO and RPO.",
  commands: {
    [MAIN]: {
      args: "",
      description: "captures a restore point now and restores the latest backup up to it (default)",
      options: {
        latest: { type: "boolean", description: "restore the latest backup (the default)" },
        replay: { type: "boolean", description: "then replay Kafka into the drill cluster and check every event" },
        mark: { type: "string", value: "FILE", description: "only capture the checksums and the time into FILE" },
        "target-time": { type: "string", value: "ISO", description: "point-in-time restore" },
        expect: { type: "string", value: "FILE", description: "verify against a --mark FILE (its time is the target)" },
      },
    },
  },
};

interface Options {
  mode: "latest" | "mark" | "time";
  markFile?: string;
  targetTime?: string;
  expectFile?: string;
  replay: boolean;
}

export function parseArgs(argv: string[]): Options {
  const { values } = parseCommand(RESTORE_DRILL_CLI, argv);
  const markFile = values.mark as string | undefined;
  const targetTime = values["target-time"] as string | undefined;
  const expectFile = values.expect as string | undefined;
  const latest = values.latest === true;
  const replay = values.replay === true;
  if (markFile) {
    if (targetTime || expectFile || latest || replay) throw new UsageError("--mark takes no other option");
    return { mode: "mark", markFile, replay };
  }
  if (targetTime || expectFile) {
    if (latest) throw new UsageError("--latest and a target time exclude each other");
    if (targetTime && Number.isNaN(Date.parse(targetTime)))
      throw new UsageError(`--target-time: not a time: ${targetTime}`);
    return { mode: "time", targetTime, expectFile, replay };
  }
  return { mode: "latest", replay };
}

const atDatabase = (url: string, database: string) => url.replace(/\/[^/]*$/, `/${database}`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function withSql<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end();
  }
}

const latestEvent = (sql: postgres.Sql) =>
  sql<{ at: Date | null }[]>`select max(ingested_at) as at from scan_events`.then((r) => r[0]?.at ?? null);

export interface ReplayResult {
  /** Where the drill group resumed, per partition: its committed offsets read back from Kafka before the replay. */
  resumedAt: { partition: number; offset: number }[];
  /** Messages the replay read: the drill group's committed offsets after the replay minus before it, from Kafka. */
  replayedMessages: number;
  /** The replay worker's own counters (its /metrics, read once it had committed up to the end). */
  worker: { inserted: number; duplicates: number; deadLettered: number };
  rows: number;
  /** sum(scan_counts.count) on the drill cluster after the replay (minute buckets still kept). */
  counted: number;
  /** Minute buckets where scan_counts differs from a recount of scan_events after the replay. */
  countMismatches: number;
  problems: string[];
}

/**
 * scan_counts against a recount of scan_events, per (qr_id, minute), for the minutes still kept
 * (from rollup_state.minutes_pruned_before: older ones were moved into the rollups): a replayed
 * event counted again, or a stored one not counted, shows as a bucket that differs.
 */
async function countsAgainstRecount(
  sql: postgres.Sql,
): Promise<{ counted: number; events: number; mismatches: number }> {
  const [r] = await sql<{ counted: number; events: number; mismatches: number }[]>`
    with kept as (select coalesce((select minutes_pruned_before from rollup_state), '-infinity') as since),
    e as (
      select qr_id, date_trunc('minute', coalesce(derived_at, scanned_at)) as bucket, count(*)::bigint as c
      from scan_events, kept
      where coalesce(derived_at, scanned_at) >= kept.since group by 1, 2),
    s as (select qr_id, bucket, count from scan_counts, kept where bucket >= kept.since)
    select (select coalesce(sum(count), 0)::int from s) as counted, (select coalesce(sum(c), 0)::int from e) as events,
      (select count(*)::int from e full join s using (qr_id, bucket) where e.c is distinct from s.count) as mismatches`;
  return r ?? { counted: -1, events: -1, mismatches: -1 };
}

/**
 * Moves a drill copy of the sink group to where the restored rows end, runs one worker into the
 * drill cluster until that group reached the topic's end as of now, and compares every row up to
 * there with the live database (whose own group must have reached it too).
 */
async function replay(
  cluster: DrillCluster,
  liveUrl: string,
  database: string,
  worker: WorkerConfig,
  timeoutMs: number,
): Promise<ReplayResult> {
  const topic = worker.SCANS_TOPIC;
  const admin = new KafkaAdmin({ config: worker.kafkaClient });
  const drillSql = postgres(cluster.url(database), { max: 1, onnotice: () => {} });
  const drillGroup = `${worker.CONSUMER_GROUP}-drill-${Date.now().toString(36)}`;
  try {
    const positions = await resumePositions(drillSql, admin, {
      group: worker.CONSUMER_GROUP,
      topic,
      rewind: rewindFor(worker.WRITES_IN_FLIGHT, worker.BATCH_MAX_ROWS),
    });
    const ends: number[] = [];
    for (const p of positions) ends[p.partition] = p.highWatermark;
    await commitGroupOffsets(
      worker.kafkaClient,
      drillGroup,
      positions.map((p) => ({ topic, partition: p.partition, offset: p.resume })),
    );
    // What Kafka holds for the drill group now (-1: none), not what was asked for.
    const committed = (group: string) =>
      admin.groupLag(group, topic).map((p) => ({ partition: p.partition, offset: Math.max(0, p.committed) }));
    const before = committed(drillGroup);
    const log = join(cluster.dir, "replay-worker.log");
    const metricsPort = freePort();
    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    const proc = spawnProcess({
      cmd: ["bun", "worker/main.ts"],
      env: {
        DATABASE_URL: cluster.appUrl(database),
        CONSUMER_GROUP: drillGroup,
        DEAD_LETTER_GROUP: `${drillGroup}-dlq`,
        // Its own metrics listener, open on loopback only, read below.
        METRICS_HOST: "127.0.0.1",
        METRICS_PORT: String(metricsPort),
        METRICS_BEARER_TOKEN_FILE: "",
        METRICS_BASIC_AUTH_FILE: "",
        WORKER_INDEX: "0",
      },
      output: { file: log },
    });
    const reached = (group: string) =>
      admin
        .groupLag(group, topic)
        .filter((p) => p.committed < (ends[p.partition] ?? 0) && (ends[p.partition] ?? 0) > 0);
    let replayedMessages = 0;
    let counters: ReplayResult["worker"];
    try {
      await waitFor(
        `the replay worker (group ${drillGroup}, log ${log}) to commit up to the topic's end ${JSON.stringify(ends)}`,
        async () => {
          if (proc.exitCode !== null) throw new Error(`the replay worker exited with code ${proc.exitCode}`);
          return reached(drillGroup).map((p) => `${p.partition}@${p.committed}`);
        },
        (behind) => behind.length === 0,
        timeoutMs,
        250,
      );
      const start = new Map(before.map((p) => [p.partition, p.offset]));
      replayedMessages = committed(drillGroup).reduce((n, p) => n + p.offset - (start.get(p.partition) ?? 0), 0);
      // The worker counts a batch right after committing it: read until its counters cover the commits.
      const read = async () => ({
        inserted: await metricValue(metricsUrl, "worker_rows_inserted_total"),
        duplicates: await metricValue(metricsUrl, "worker_rows_duplicate_total"),
        deadLettered: await metricValue(metricsUrl, "worker_dead_letters_total"),
      });
      counters = await waitFor(
        `the replay worker's counters (${metricsUrl}) to cover the ${replayedMessages} message(s) it committed`,
        read,
        (c) => c.inserted + c.duplicates + c.deadLettered >= replayedMessages,
        10_000,
        100,
      );
    } finally {
      await stopProcess(proc);
    }
    await waitFor(
      `the live group ${worker.CONSUMER_GROUP} to commit up to ${JSON.stringify(ends)} (its rows below are then complete)`,
      async () => reached(worker.CONSUMER_GROUP).map((p) => `${p.partition}@${p.committed}`),
      (behind) => behind.length === 0,
      timeoutMs,
      500,
    );
    const live = await withSql(liveUrl, (sql) => checksums(sql, ends));
    const restored = await checksums(drillSql, ends);
    const counts = await countsAgainstRecount(drillSql);
    const problems = differences(live, restored);
    if (counts.mismatches !== 0) {
      problems.push(
        `${counts.mismatches} scan_counts bucket(s) differ from a recount of scan_events after the replay ` +
          `(sum(scan_counts.count) ${counts.counted} for ${counts.events} stored events): ${counts.counted > counts.events ? "counted twice" : "not counted"}`,
      );
    }
    return {
      resumedAt: before,
      replayedMessages,
      worker: counters,
      rows: totalRows(restored),
      counted: counts.counted,
      countMismatches: counts.mismatches,
      problems,
    };
  } finally {
    await drillSql.end();
    admin.close();
  }
}

async function drill(stack: LocalStack, config: BackupConfig, options: Options): Promise<boolean> {
  const database = config.BACKUP_DATABASE;
  const liveUrl = atDatabase(stack.adminDatabaseUrl, database);
  const worker = options.replay ? loadWorkerConfig() : null;

  let expected: Checksums | null = null;
  let target: RecoveryTarget;
  let targetLabel: string;
  if (options.mode === "latest") {
    const m = await withSql(liveUrl, (sql) => mark(sql, database));
    expected = m.checksums;
    target = { type: "name", name: m.restorePoint };
    targetLabel = `restore point ${m.restorePoint} (${m.targetTime})`;
  } else {
    const m = options.expectFile ? (JSON.parse(readFileSync(options.expectFile, "utf8")) as Mark) : null;
    if (m && m.database !== database) {
      throw new Error(`${options.expectFile} was taken on database ${m.database}, BACKUP_DATABASE is ${database}`);
    }
    expected = m?.checksums ?? null;
    const time = options.targetTime ?? m?.targetTime ?? "";
    target = { type: "time", time };
    targetLabel = `time ${time}`;
  }

  const { exposureSeconds } = await archiveCurrentWal(stack.adminDatabaseUrl, config.DRILL_TIMEOUT_MS);
  const liveLatest = await withSql(liveUrl, latestEvent);

  console.log(`restore-drill: restoring database ${database} to ${targetLabel} into a fresh cluster…`);
  const started = performance.now();
  const cluster = await restoreDrillCluster(stack, target, {
    port: config.DRILL_PG_PORT,
    timeoutMs: config.DRILL_TIMEOUT_MS,
  });
  const stop = async () => {
    await cluster.remove();
    process.exit(130);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    const restoredUrl = cluster.url(database);
    const restored = await withSql(restoredUrl, (sql) => checksums(sql));
    const problems = expected ? differences(expected, restored) : [];
    const rtoMs = performance.now() - started;
    const restoredLatest = await withSql(restoredUrl, latestEvent);
    const rpoMs = liveLatest && restoredLatest ? Math.max(0, liveLatest.getTime() - restoredLatest.getTime()) : 0;
    const days = restored.scanEvents.length;
    console.log(
      `restore-drill: ${expected ? (problems.length ? "MISMATCH" : "verified") : "NOT verified (no --expect)"}: ` +
        `${totalRows(restored)} rows in ${days} day partition(s), ${restored.scanCounts.length} day(s) of scan_counts, on port ${cluster.port}`,
    );
    for (const p of problems) console.log(`  ${p}`);
    console.log(`restore-drill: RTO ${seconds(rtoMs)} (restore start → cluster promoted → checksums verified)`);
    console.log(
      `restore-drill: RPO ${seconds(rpoMs)} between the last event committed on the live database (${liveLatest?.toISOString() ?? "none"}) ` +
        `and the last restored (${restoredLatest?.toISOString() ?? "none"}); ` +
        `WAL not yet archived when the drill began: ${Number.isNaN(exposureSeconds) ? "none archived before" : seconds(exposureSeconds * 1000)} ` +
        `(bounded by archive_timeout = ${ARCHIVE_TIMEOUT_S} s under writes)`,
    );
    let replayed: ReplayResult | null = null;
    if (worker && problems.length === 0) {
      replayed = await replay(cluster, liveUrl, database, worker, config.DRILL_TIMEOUT_MS);
      console.log(
        `restore-drill: replay ${replayed.problems.length ? "MISMATCH" : "verified"}: ${replayed.replayedMessages} message(s) replayed from ${worker.SCANS_TOPIC}, ` +
          `${replayed.rows} rows up to the topic's end as on the live database, scan_counts ${replayed.countMismatches ? `off in ${replayed.countMismatches} bucket(s)` : "equal to a recount"} ` +
          `(the replay worker: ${replayed.worker.inserted} inserted, ${replayed.worker.duplicates} already stored, ${replayed.worker.deadLettered} dead-lettered)`,
      );
      for (const p of replayed.problems) console.log(`  ${p}`);
    }
    const ok = problems.length === 0 && (replayed?.problems.length ?? 0) === 0;
    console.log(
      `result ${JSON.stringify({
        ok,
        verified: expected !== null && problems.length === 0,
        rtoSeconds: rtoMs / 1000,
        rpoSeconds: rpoMs / 1000,
        unarchivedSeconds: exposureSeconds,
        rows: totalRows(restored),
        checksums: restored,
        replay: replayed,
      })}`,
    );
    return ok;
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await cluster.remove();
    console.log("restore-drill: drill cluster stopped and removed");
  }
}

async function main(argv: string[]): Promise<number> {
  const options = parseArgs(argv);
  const stack = localStack();
  const config = loadBackupConfig();
  if (options.mode === "mark" && options.markFile) {
    const m = await withSql(atDatabase(stack.adminDatabaseUrl, config.BACKUP_DATABASE), (sql) =>
      mark(sql, config.BACKUP_DATABASE),
    );
    writeMark(options.markFile, m);
    console.log(`restore-drill: marked ${m.targetTime} (${totalRows(m.checksums)} rows) in ${options.markFile}`);
    return 0;
  }
  return (await drill(stack, config, options)) ? 0 : 1;
}

if (import.meta.main) await runCli(RESTORE_DRILL_CLI, main);
