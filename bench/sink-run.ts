// The sink's measured run, shared by bench/worker.ts and bench/peer/connect.ts: scan events made as
// the edge makes them, produced to a fresh topic, drained by real worker processes into a fresh
// database, timed from the moment the group has settled to the last committed row, with the CPU
// that the workers, Postgres, pgbouncer and the broker used in that window.
import type { KafkaAdmin, KafkaProducer } from "bun-rdkafka";
import postgres from "postgres";
import { type ScanEvent, timestampOf } from "../shared/event.ts";
import { type LocalStack, localStack } from "../shared/local-stack.ts";
import { sum } from "../shared/prometheus-text.ts";
import { createThrowawayDatabase, scrapeIfUp } from "../tools/harness.ts";
import { childPids } from "../tools/pipeline.ts";
import { kafkaPid } from "../tools/stack/kafka.ts";
import { pgbouncerPid, postgresPid } from "../tools/stack/postgres.ts";
import { freePort } from "../tools/stack/processes.ts";
import { cpuWindow } from "./proc-stats.ts";

const root = new URL("..", import.meta.url).pathname;
/** As the `scans` topic (shared/local-stack.ts TOPICS). */
export const SINK_PARTITIONS = 12;

export function makeEvents(n: number): ScanEvent[] {
  // What the edge writes: timestamps in canonical UTC form.
  const now = timestampOf(Date.now());
  return Array.from({ length: n }, (_, i) => ({
    event_id: crypto.randomUUID(),
    qr_id: `QR-${(i * 7919) % 5000}`,
    scanned_at: now,
    scanner_id: "bench",
  }));
}

export async function produceAll(producer: KafkaProducer, topic: string, values: string[], keys: string[]) {
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < values.length; i += 1_000) {
    const batch = [];
    for (let j = i; j < Math.min(values.length, i + 1_000); j++)
      batch.push({ topic, key: keys[j], value: values[j] as string });
    inflight.push(producer.send(batch));
    if (inflight.length >= 50) await inflight.shift();
  }
  await Promise.all(inflight);
}

export function spawnWorkers(n: number, env: Record<string, string>) {
  return Array.from({ length: n }, (_, i) => {
    const metricsPort = freePort();
    const proc = Bun.spawn(["bun", "worker/main.ts"], {
      cwd: root,
      env: { ...process.env, ...env, WORKER_INDEX: String(i), METRICS_PORT: String(metricsPort), LOG_LEVEL: "warn" },
      stdout: "inherit",
      stderr: "inherit",
    });
    return Object.assign(proc, { metricsPort });
  });
}

/**
 * Rows inserted and committed (DB and Kafka offsets) so far, and partitions assigned, summed over
 * the workers' metrics. Cheap to ask often, unlike count(*) on the growing table, which would
 * compete for the database's CPU and slow down what is being measured.
 */
async function workerProgress(procs: { metricsPort: number }[]) {
  let rows = 0;
  let partitions = 0;
  let allAssigned = true;
  for (const p of procs) {
    // A worker still starting has no metrics yet: it counts as nothing stored and nothing assigned.
    const samples = (await scrapeIfUp(`http://127.0.0.1:${p.metricsPort}/metrics`)) ?? [];
    const assigned = sum(samples, "worker_assigned_partitions");
    rows += sum(samples, "worker_rows_inserted_total");
    partitions += assigned;
    allAssigned &&= assigned > 0;
  }
  return { rows, partitions, allAssigned };
}

export async function stopWorkers(procs: ReturnType<typeof Bun.spawn>[]) {
  for (const p of procs) p.kill("SIGTERM");
  // As the supervisor does: a worker that does not stop in time is killed (and reported).
  const timer = setTimeout(() => {
    for (const p of procs.filter((p) => p.exitCode === null)) {
      console.warn(`  worker ${p.pid} did not stop within 20 s of SIGTERM; killing it`);
      p.kill("SIGKILL");
    }
  }, 20_000);
  await Promise.all(procs.map((p) => p.exited));
  clearTimeout(timer);
}

export async function rowCount(sql: postgres.Sql): Promise<number> {
  const [r] = await sql<{ n: number }[]>`select count(*)::int as n from scan_events`;
  return r?.n ?? 0;
}

export interface StoredState {
  rows: number;
  distinct_ids: number;
  /** The sum of scan_counts. */
  counted: number;
  /** contentDigest. */
  digest: string;
}

/** What a sink stored: rows, distinct event ids, the aggregate's sum and the rows' digest. */
export async function storedState(sql: postgres.Sql): Promise<StoredState> {
  const [r] = await sql<Omit<StoredState, "digest">[]>`
    select (select count(*)::int from scan_events) as rows,
           (select count(distinct event_id)::int from scan_events) as distinct_ids,
           (select coalesce(sum(count), 0)::int from scan_counts) as counted`;
  return { ...(r as Omit<StoredState, "digest">), digest: await contentDigest(sql) };
}

/**
 * A digest of every stored row's content, in event_id order: the event's fields as Postgres typed
 * them and the Kafka partition, not the offset (it depends on how the producer batched) nor
 * ingested_at. Two sinks fed the same events store the same digest, or one of them changed a value.
 */
export async function contentDigest(sql: postgres.Sql): Promise<string> {
  const [r] = await sql<{ digest: string }[]>`
    select md5(coalesce(string_agg(row(event_id, scanned_at, qr_id, scanner_id, lat, lon, accuracy_m, user_agent,
      attributes, client_ip, received_at, schema_version, kafka_partition)::text, E'\\n' order by event_id), '')) as digest
    from scan_events`;
  return r?.digest ?? "";
}

/**
 * The pids whose CPU a sink run costs: the sink's own processes, the stack's Postgres (postmaster
 * and every child: backends, WAL writer, checkpointer) less `notPostgres` (a bench's own poller),
 * pgbouncer and the broker.
 */
export function sinkCpuGroups(sinkPids: () => number[], notPostgres: number[] = [], stack: LocalStack = localStack()) {
  return () => {
    const pg = postgresPid(stack);
    return {
      sink: sinkPids(),
      postgres: pg ? [pg, ...childPids(pg)].filter((p) => !notPostgres.includes(p)) : [],
      pgbouncer: [pgbouncerPid(stack) ?? 0].filter(Boolean),
      kafka: [kafkaPid(stack) ?? 0].filter(Boolean),
    };
  };
}

/** What Postgres wrote to its WAL in a window: bytes (from the insert position), records, full-page images, syncs. */
export interface WalUse {
  bytes: number;
  records: number;
  fpi: number;
  /** WAL flushes to disk (pg_stat_wal.wal_sync): one per commit that found its WAL not yet flushed. */
  syncs: number;
}

/**
 * The cluster's WAL counters, to subtract two readings: the insert position's bytes (exact) and
 * pg_stat_wal's records, full-page images and syncs (reported by each backend within a second or
 * at its exit, so read them after the writers are gone).
 */
export async function walNow(sql: postgres.Sql): Promise<WalUse> {
  const [r] = await sql<{ bytes: string; records: string; fpi: string; syncs: string }[]>`
    select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::text as bytes, wal_records::text as records,
           wal_fpi::text as fpi, wal_sync::text as syncs from pg_stat_wal`;
  return { bytes: Number(r?.bytes), records: Number(r?.records), fpi: Number(r?.fpi), syncs: Number(r?.syncs) };
}

export const walSince = (before: WalUse, after: WalUse): WalUse => ({
  bytes: after.bytes - before.bytes,
  records: after.records - before.records,
  fpi: after.fpi - before.fpi,
  syncs: after.syncs - before.syncs,
});

export interface SinkRun {
  /** Rows stored after the timing started, per second of the timed window. */
  rowsPerSecond: number;
  /** Rows in the timed window and its length. */
  rows: number;
  seconds: number;
  /** CPU seconds in the timed window, per group of sinkCpuGroups. */
  cpu: Record<string, number>;
  /** What the database held at the end. */
  stored: StoredState;
  /** WAL written in the timed window (records, full-page images and syncs up to the workers' exit); sinkRun's own. */
  wal?: WalUse;
}

/**
 * Kafka → committed rows with `n` workers: a pre-filled topic drained into a fresh database.
 * `prepare` runs on the fresh database before the workers start (a bench-only change of schema);
 * `env` is added to the workers' environment (a variant's settings).
 */
export async function sinkRun(
  n: number,
  admin: KafkaAdmin,
  producer: KafkaProducer,
  values: string[],
  keys: string[],
  {
    prepare,
    env = {},
    stack = localStack(),
  }: { prepare?: (sql: postgres.Sql) => Promise<unknown>; env?: Record<string, string>; stack?: LocalStack } = {},
): Promise<SinkRun> {
  const db = await createThrowawayDatabase(`qrscan_bench_w${n}`);
  const topic = `bench-sink-${n}-${Date.now()}`;
  const dlq = `${topic}-dlq`;
  await admin.createTopics([
    { name: topic, partitions: SINK_PARTITIONS },
    { name: dlq, partitions: 1 },
  ]);
  await produceAll(producer, topic, values, keys);
  const sql = postgres(db.directUrl, { max: 1, onnotice: () => {} });
  if (prepare) await prepare(sql);
  const procs = spawnWorkers(n, {
    KAFKA_BROKERS: stack.brokers,
    SCANS_TOPIC: topic,
    DEAD_LETTER_TOPIC: dlq,
    CONSUMER_GROUP: `bench-${topic}`,
    DEAD_LETTER_GROUP: `bench-${topic}-dlq`,
    DATABASE_URL: db.url,
    ...env,
  });
  const cpu = cpuWindow(sinkCpuGroups(() => procs.map((p) => p.pid), [], stack));
  // Steady state: timed from the moment every worker holds partitions (the group has settled)
  // to the last row, so joining the group is not counted.
  let startedRows = 0;
  let started = 0;
  let walBefore: WalUse | null = null;
  let walBytesAfter = 0;
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    const { rows, partitions, allAssigned } = await workerProgress(procs);
    if (!started && allAssigned && partitions === SINK_PARTITIONS) {
      started = performance.now();
      startedRows = rows;
      cpu.start();
      walBefore = await walNow(sql);
    }
    if (rows >= values.length) {
      walBytesAfter = (await walNow(sql)).bytes;
      break;
    }
    const exited = procs.find((p) => p.exitCode !== null);
    if (exited || Date.now() > deadline) {
      await stopWorkers(procs);
      const why = exited ? `worker ${exited.pid} exited with ${exited.exitCode}` : "10 minutes passed";
      throw new Error(`${n} worker(s): ${rows} of ${values.length} rows committed when ${why}`);
    }
    await Bun.sleep(50);
  }
  if (!started || !walBefore)
    throw new Error(`${n} worker(s): every row was stored before the group settled; use more --rows`);
  const seconds = (performance.now() - started) / 1000;
  const used = cpu.stop();
  if (values.length - startedRows < values.length / 2) {
    console.warn(`  (${n} workers: only ${values.length - startedRows} rows after the group settled; use more --rows)`);
  }
  await stopWorkers(procs);
  const wal = walSince(walBefore, { ...(await walNow(sql)), bytes: walBytesAfter });
  const stored = await storedState(sql);
  if (stored.rows !== values.length) throw new Error(`${n} worker(s) stored ${stored.rows} of ${values.length} rows`);
  await sql.end();
  await db.drop();
  await admin.deleteTopics([topic, dlq]);
  const rows = values.length - startedRows;
  return { rowsPerSecond: rows / seconds, rows, seconds, cpu: used, stored, wal };
}
