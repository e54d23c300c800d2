// The Kafka → Postgres half side by side with its usual alternative: Kafka Connect (standalone
// worker, the stack's Kafka version, from Maven Central) running the Debezium JDBC sink in upsert
// mode on scan_events' primary key, against our worker, in one run, on the same broker, the same
// topic shape (12 partitions, keyed by qr_id), the same events and the same Postgres (each sink
// into its own fresh, migrated database; our worker through pgbouncer, Connect through pgbouncer
// and straight to Postgres). docs/benchmarks.md says how it runs and what it measured.
//   bun bench/peer/connect.ts [--rows 200000] [--tasks 1] [--connect-db pgbouncer,direct]
//                             [--connect-batch 500] [--timeout 600]
// Prints rows/s and CPU-µs per row (the sink process, Postgres, pgbouncer, the broker) for Connect,
// our worker with its scan_counts aggregate, and our worker without it (bench-only trigger).
// Both sides' counts are raw rows in scan_events; the connector maintains no aggregate.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KafkaAdmin, KafkaProducer } from "bun-rdkafka";
import postgres from "postgres";
import { type ScanRecord, timestampOf, toScanRecord } from "../../shared/event.ts";
import { type LocalStack, localStack } from "../../shared/local-stack.ts";
import { createThrowawayDatabase, spawnProcess, stopProcess } from "../../tools/harness.ts";
import { startKafka } from "../../tools/stack/kafka.ts";
import { startPgbouncer, startPostgres } from "../../tools/stack/postgres.ts";
import { freePort, run } from "../../tools/stack/processes.ts";
import { arg, numArg, printTable, saveResults } from "../lib.ts";
import { cpuWindow } from "../proc-stats.ts";
import {
  SINK_PARTITIONS,
  type SinkRun,
  makeEvents,
  produceAll,
  rowCount,
  sinkCpuGroups,
  sinkRun,
  storedState,
} from "../sink-run.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const RUNTIME_POM = `${ROOT}bench/peer/connect/pom.xml`;
const PLUGIN_POM = `${ROOT}bench/peer/connect/jdbc-sink/pom.xml`;
const CONNECTOR = "io.debezium.connector.jdbc.JdbcSinkConnector";

/** The Debezium version the plugin's POM names. */
export function debeziumVersion(): string {
  const m = /<debezium\.version>([^<]+)<\/debezium\.version>/.exec(readFileSync(PLUGIN_POM, "utf8"));
  if (!m) throw new Error(`${PLUGIN_POM} has no <debezium.version>`);
  return m[1] as string;
}

/** The Kafka version the stack runs (tools/kafka/pom.xml): Connect runs the same. */
export function stackKafkaVersion(): string {
  const pom = readFileSync(`${ROOT}tools/kafka/pom.xml`, "utf8");
  const m = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(pom);
  if (!m) throw new Error("tools/kafka/pom.xml has no <kafka.version>: cannot tell which Connect to run");
  return m[1] as string;
}

export function connectPaths(stack: LocalStack) {
  const root = join(stack.dir, "connect");
  return {
    root,
    libs: join(root, `libs-${stackKafkaVersion()}`),
    plugins: join(root, "plugins"),
    plugin: join(root, "plugins", "debezium-jdbc"),
    runs: join(root, "runs"),
  };
}

/**
 * Copies Connect's runtime and the connector's plugin from Maven Central once (cached in ~/.m2
 * too); a folder counts as fetched once Maven finished, so an interrupted copy is done again.
 */
export function ensureConnectJars(stack: LocalStack = localStack()): void {
  const p = connectPaths(stack);
  const copy = (pom: string, out: string, extra: string[] = []) => {
    const done = join(out, ".fetched");
    if (existsSync(done)) return;
    mkdirSync(out, { recursive: true });
    console.log(`connect: fetching ${out} with Maven (first run only)...`);
    run("mvn", [
      "-q",
      "-B",
      "-f",
      pom,
      ...extra,
      "dependency:copy-dependencies",
      `-DoutputDirectory=${out}`,
      "-DincludeScope=runtime",
    ]);
    writeFileSync(done, `${new Date().toISOString()}\n`);
  };
  copy(RUNTIME_POM, p.libs, [`-Dkafka.version=${stackKafkaVersion()}`]);
  copy(PLUGIN_POM, p.plugin);
}

// -------------------------------------------------------------------------------------------------
// The record format: JSON with schemas (JsonConverter, schemas.enable=true). Debezium's semantic
// types tell its PostgreSQL dialect what the strings are: io.debezium.data.Uuid binds as uuid,
// io.debezium.time.ZonedTimestamp (ISO-8601 with offset) as timestamptz, io.debezium.data.Json as
// jsonb. client_ip (inet) is a plain string: the JDBC URL's stringtype=unspecified lets Postgres
// type it. kafka_partition and kafka_offset are added by Connect's InsertField transform, so the
// row is the one our worker writes.

const field = (name: string, type: string, optional: boolean, semantic?: string) => ({
  field: name,
  type,
  optional,
  ...(semantic ? { name: semantic } : {}),
});

const VALUE_SCHEMA = JSON.stringify({
  type: "struct",
  name: "qrscan.scan_event",
  optional: false,
  fields: [
    field("event_id", "string", false, "io.debezium.data.Uuid"),
    field("scanned_at", "string", false, "io.debezium.time.ZonedTimestamp"),
    field("qr_id", "string", false),
    field("scanner_id", "string", true),
    field("lat", "double", true),
    field("lon", "double", true),
    field("accuracy_m", "double", true),
    field("user_agent", "string", true),
    field("attributes", "string", true, "io.debezium.data.Json"),
    field("client_ip", "string", true),
    field("received_at", "string", false, "io.debezium.time.ZonedTimestamp"),
    field("schema_version", "int16", false),
  ],
});

/** A scan record as Connect's JsonConverter reads it: the same field values as our format. */
export function connectValue(r: ScanRecord): string {
  const payload = {
    event_id: r.event_id,
    scanned_at: r.scanned_at,
    qr_id: r.qr_id,
    scanner_id: r.scanner_id ?? null,
    lat: r.location?.lat ?? null,
    lon: r.location?.lon ?? null,
    accuracy_m: r.location?.accuracy_m ?? null,
    user_agent: r.user_agent ?? null,
    attributes: r.attributes ? JSON.stringify(r.attributes) : null,
    client_ip: r.client_ip ?? null,
    received_at: r.received_at,
    schema_version: r.schema_version,
  };
  return `{"schema":${VALUE_SCHEMA},"payload":${JSON.stringify(payload)}}`;
}

const properties = (entries: Record<string, string | number>) =>
  `${Object.entries(entries)
    .map(([k, v]) => `${k}=${v}`)
    .join("\n")}\n`;

type Via = "pgbouncer" | "direct";

interface ConnectRun extends SinkRun {
  /** From the JVM's start to the last row, and the JVM's CPU in that whole time. */
  totalSeconds: number;
  totalCpu: number;
}

/** Kafka → rows with Connect standalone: a pre-filled topic drained into a fresh database. */
async function connectRun(
  stack: LocalStack,
  admin: KafkaAdmin,
  producer: KafkaProducer,
  values: string[],
  keys: string[],
  { tasks, via, batch, timeoutMs }: { tasks: number; via: Via; batch: number; timeoutMs: number },
): Promise<ConnectRun> {
  const p = connectPaths(stack);
  const db = await createThrowawayDatabase("qrscan_bench_connect");
  const topic = `bench-connect-${Date.now()}`;
  await admin.createTopics([{ name: topic, partitions: SINK_PARTITIONS }]);
  await produceAll(producer, topic, values, keys);
  const sql = postgres(db.directUrl, { max: 1, onnotice: () => {} });
  // The connector writes rows only: the day partitions must exist, as the worker ensures them.
  await sql`select ensure_scan_event_partitions(current_date - 1, current_date + 1)`;
  const [{ pid: pollerPid } = { pid: 0 }] = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;

  const dir = join(p.runs, topic);
  mkdirSync(dir, { recursive: true });
  const restPort = freePort();
  const name = `peer-jdbc-${topic}`;
  const jdbcUrl = `${via === "pgbouncer" ? db.url : db.directUrl}`.replace(
    /^postgres:\/\/[^@]*@/,
    "jdbc:postgresql://",
  );
  writeFileSync(
    join(dir, "worker.properties"),
    properties({
      "bootstrap.servers": stack.brokers,
      "key.converter": "org.apache.kafka.connect.storage.StringConverter",
      "value.converter": "org.apache.kafka.connect.json.JsonConverter",
      "value.converter.schemas.enable": "true",
      "offset.storage.file.filename": join(dir, "connect.offsets"),
      "offset.flush.interval.ms": 10000,
      "plugin.path": p.plugins,
      // Scan the plugin folder as the default does, without its page-long warning that Debezium's
      // transforms have no ServiceLoader manifests.
      "plugin.discovery": "only_scan",
      listeners: `http://127.0.0.1:${restPort}`,
    }),
  );
  writeFileSync(
    join(dir, "connector.properties"),
    properties({
      name,
      "connector.class": CONNECTOR,
      "tasks.max": tasks,
      topics: topic,
      // pgbouncer runs transaction pooling (1.18: no prepared statements there), so the driver
      // must not name server-side statements: prepareThreshold=0.
      "connection.url": `${jdbcUrl}?stringtype=unspecified${via === "pgbouncer" ? "&prepareThreshold=0" : ""}`,
      "connection.username": stack.user,
      "connection.password": stack.password,
      "insert.mode": "upsert",
      "primary.key.mode": "record_value",
      "primary.key.fields": "event_id,scanned_at",
      "schema.evolution": "none",
      "table.name.format": "scan_events",
      "delete.enabled": "false",
      // Rows per flush, and per poll so that a flush can fill (both 500 by default).
      "batch.size": batch,
      "consumer.override.max.poll.records": batch,
      transforms: "kafka",
      "transforms.kafka.type": "org.apache.kafka.connect.transforms.InsertField$Value",
      "transforms.kafka.partition.field": "kafka_partition",
      "transforms.kafka.offset.field": "kafka_offset",
    }),
  );
  writeFileSync(
    join(dir, "log4j.properties"),
    properties({
      "log4j.rootLogger": "WARN, stdout",
      "log4j.appender.stdout": "org.apache.log4j.ConsoleAppender",
      "log4j.appender.stdout.layout": "org.apache.log4j.PatternLayout",
      "log4j.appender.stdout.layout.ConversionPattern": "[%d] %p %m (%c)%n",
      "log4j.logger.org.apache.kafka.connect.runtime.WorkerSinkTask": "INFO",
    }),
  );
  const log = join(dir, "connect.log");
  const startedAt = performance.now();
  const jvm = spawnProcess({
    cmd: [
      "java",
      "-Xms512m",
      "-Xmx1g",
      `-Dlog4j.configuration=file:${join(dir, "log4j.properties")}`,
      "-cp",
      `${p.libs}/*`,
      "org.apache.kafka.connect.cli.ConnectStandalone",
      join(dir, "worker.properties"),
      join(dir, "connector.properties"),
    ],
    output: { file: log },
  });
  const whole = cpuWindow(() => ({ jvm: [jvm.pid] }));
  whole.start();
  const cpu = cpuWindow(sinkCpuGroups(() => [jvm.pid], [pollerPid], stack));
  const fail = (why: string) =>
    new Error(`Kafka Connect: ${why}; its log: ${log}\n${readFileSync(log, "utf8").split("\n").slice(-40).join("\n")}`);
  let startedRows = 0;
  let started = 0;
  let stored = 0;
  let lastStatus = 0;
  // Not waitFor: a dead JVM or a failed task ends the wait at once, with Connect's own error.
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      if (jvm.exitCode !== null) throw fail(`the JVM exited with ${jvm.exitCode}`);
      stored = await rowCount(sql);
      const now = performance.now();
      if (!started && stored > 0) {
        started = now;
        startedRows = stored;
        cpu.start();
      }
      if (stored >= values.length) break;
      if (now - lastStatus > 2_000) {
        lastStatus = now;
        const status = await connectorStatus(restPort, name);
        if (status.failed) throw fail(`a task failed: ${status.failed.split("\n")[0]}`);
      }
      if (Date.now() > deadline) throw fail(`${stored} of ${values.length} rows stored after ${timeoutMs} ms`);
      await Bun.sleep(100);
    }
  } catch (error) {
    await stopProcess(jvm);
    // Left for a look at what is missing (`bun run stack reset` clears them with all data).
    throw new Error(
      `${(error as Error).message}\n${await whereRowsMiss(admin, `connect-${name}`, topic, sql)}` +
        `\n(left for inspection: database ${db.name}, topic ${topic})`,
      { cause: error },
    );
  }
  const seconds = (performance.now() - started) / 1000;
  const used = cpu.stop();
  const totalSeconds = (performance.now() - startedAt) / 1000;
  const totalCpu = whole.stop().jvm ?? 0;
  await stopProcess(jvm);
  const final = await storedState(sql);
  await sql.end();
  await db.drop();
  await admin.deleteTopics([topic]);
  if (final.rows !== values.length || final.distinct_ids !== values.length) {
    throw fail(`stored ${final.rows} rows (${final.distinct_ids} distinct event ids) of ${values.length}`);
  }
  rmSync(dir, { recursive: true, force: true });
  const rows = values.length - startedRows;
  return { rowsPerSecond: rows / seconds, rows, seconds, cpu: used, stored: final, totalSeconds, totalCpu };
}

/**
 * Per partition: messages in the topic, rows stored from it and the offset Connect committed, for
 * the partitions where rows are missing (a committed offset past a missing row would be a lost row).
 */
async function whereRowsMiss(admin: KafkaAdmin, group: string, topic: string, sql: postgres.Sql): Promise<string> {
  try {
    const rows = await sql<{ partition: number; n: number }[]>`
      select kafka_partition as partition, count(*)::int as n from scan_events group by 1`;
    const stored = new Map(rows.map((r) => [r.partition, r.n]));
    const lag = admin.groupLag(group, topic);
    const messages = lag.reduce((total, p) => total + p.highWatermark, 0);
    const missing = lag
      .filter((p) => (stored.get(p.partition) ?? 0) < p.highWatermark)
      .map(
        (p) =>
          `partition ${p.partition}: ${p.highWatermark} messages, ${stored.get(p.partition) ?? 0} rows, committed offset ${p.committed}`,
      );
    return missing.length
      ? `rows missing from: ${missing.join("; ")}`
      : `every one of the topic's ${messages} messages has its row`;
  } catch (error) {
    return `(could not tell where rows are missing: ${(error as Error).message})`;
  } finally {
    await sql.end();
  }
}

/** The connector's state from Connect's REST API; `failed` holds a failed task's trace. */
async function connectorStatus(port: number, name: string): Promise<{ failed?: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/connectors/${name}/status`, {
    signal: AbortSignal.timeout(2_000),
  }).catch(() => null);
  if (!res?.ok) return {}; // still starting
  const body = (await res.json()) as {
    connector: { state: string; trace?: string };
    tasks: { id: number; state: string; trace?: string }[];
  };
  if (body.connector.state === "FAILED") return { failed: body.connector.trace ?? "connector FAILED" };
  const task = body.tasks.find((t) => t.state === "FAILED");
  return task ? { failed: task.trace ?? `task ${task.id} FAILED` } : {};
}

/** Bench only: scan_counts keeps nothing (a BEFORE INSERT trigger drops every row), so the worker's
 * statement still groups its rows but writes no aggregate. */
async function withoutAggregate(sql: postgres.Sql) {
  await sql.unsafe(`
    create function bench_skip_scan_counts() returns trigger language plpgsql as 'begin return null; end';
    create trigger bench_skip_scan_counts before insert on scan_counts
      for each row execute function bench_skip_scan_counts();`);
}

// -------------------------------------------------------------------------------------------------

export interface PeerOptions {
  rows: number;
  /** Connect's database path(s), each one run. */
  vias: Via[];
  /** Connect's tasks.max and our worker processes. */
  tasks: number;
  /** Debezium's batch.size and the task consumer's max.poll.records. */
  batch: number;
  timeoutMs: number;
  log?: (line: string) => void;
}

/**
 * One run of every sink on the same events: Connect through each of `vias`, then our worker with
 * and without its aggregate. Throws unless every sink stored exactly the events, with the same
 * content digest.
 */
export async function runConnectPeer({ rows, vias, tasks, batch, timeoutMs, log = console.log }: PeerOptions) {
  const stack = localStack();
  await Promise.all([startKafka(stack), startPostgres(stack).then(() => startPgbouncer(stack))]);
  ensureConnectJars(stack);
  const admin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
  const producer = new KafkaProducer({ config: { "bootstrap.servers": stack.brokers, "linger.ms": 5 } });
  const received = timestampOf(Date.now());
  const records = makeEvents(rows).map((e) => toScanRecord(e, received, "127.0.0.1"));
  const keys = records.map((r) => r.qr_id);
  const ours = records.map((r) => JSON.stringify(r));
  const theirs = records.map(connectValue);
  const runs: Record<string, SinkRun | ConnectRun> = {};
  try {
    for (const via of vias) {
      log(
        `Kafka Connect ${stackKafkaVersion()} + Debezium JDBC sink ${debeziumVersion()} (tasks.max=${tasks}, batch.size=${batch}, via ${via})...`,
      );
      runs[`connect_${via}`] = await connectRun(stack, admin, producer, theirs, keys, { tasks, via, batch, timeoutMs });
    }
    log(`our worker (${tasks} process(es)), with scan_counts...`);
    runs.worker = await sinkRun(tasks, admin, producer, ours, keys, { stack });
    log(`our worker (${tasks} process(es)), scan_counts writes dropped...`);
    runs.worker_no_aggregate = await sinkRun(tasks, admin, producer, ours, keys, { stack, prepare: withoutAggregate });
  } finally {
    await producer.close();
    admin.close();
  }
  // The same events, so the same rows: a sink that changed a value (a timestamp's zone, a type)
  // would show here, not only in the counts.
  const digests = new Set(Object.values(runs).map((r) => r.stored.digest));
  if (digests.size !== 1) {
    throw new Error(
      `the sinks stored different rows for the same events: ${Object.entries(runs)
        .map(([k, r]) => `${k} ${r.stored.digest}`)
        .join(", ")}`,
    );
  }
  return { rows, tasks, batch, vias, kafka: stackKafkaVersion(), debezium: debeziumVersion(), runs };
}

if (import.meta.main) {
  const rows = numArg("rows", 200_000);
  const vias = arg("connect-db", "pgbouncer,direct").split(",");
  for (const via of vias) {
    if (via !== "pgbouncer" && via !== "direct")
      throw new Error(`--connect-db lists pgbouncer and/or direct, got "${via}"`);
  }
  if (!Number.isInteger(rows) || rows < 1) throw new Error("--rows must be a positive integer");
  const result = await runConnectPeer({
    rows,
    vias: vias as Via[],
    tasks: numArg("tasks", 1),
    batch: numArg("connect-batch", 500),
    timeoutMs: numArg("timeout", 600) * 1000,
  });
  const us = (s: number | undefined, r: SinkRun) => (s === undefined ? "-" : ((s * 1e6) / r.rows).toFixed(1));
  console.log(
    `\nKafka -> scan_events rows, ${rows} events, ${SINK_PARTITIONS} partitions; timed from the first row (Connect) or the settled group (worker) to the last row; CPU-µs per row in that window:`,
  );
  printTable(
    Object.entries(result.runs).map(([name, r]) => ({
      sink: name,
      "rows/s": Math.round(r.rowsPerSecond),
      "sink µs/row": us(r.cpu.sink, r),
      "postgres µs/row": us(r.cpu.postgres, r),
      "pgbouncer µs/row": us(r.cpu.pgbouncer, r),
      "broker µs/row": us(r.cpu.kafka, r),
      "total µs/row": us(
        Object.values(r.cpu).reduce((a, b) => a + b, 0),
        r,
      ),
    })),
  );
  for (const via of vias) {
    const c = result.runs[`connect_${via}`] as ConnectRun;
    console.log(
      `Connect via ${via}, from the JVM's start to the last row: ${c.totalSeconds.toFixed(1)} s, ${c.totalCpu.toFixed(1)} ` +
        `CPU-s (${((c.totalCpu * 1e6) / rows).toFixed(1)} µs/row with start-up)`,
    );
  }
  console.log(`results: ${saveResults("connect-peer", result)}`);
}
