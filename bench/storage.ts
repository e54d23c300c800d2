// Storage per event, measured (docs/cost.md): Postgres (the day partition's table + indexes, and
// the counts), Kafka (the scans records as the edge produces them, lz4, on the broker's disk) and
// the Parquet archive. Rows go through the worker's own decoder and sink (COPY, the counts upsert),
// into a throwaway database; the records through a producer with the edge's settings to a private
// topic of the local stack, deleted afterwards.
//   bun bench/storage.ts [--rows 1000000] [--qr-codes 5000] [--kafka-rows 100000] [--batch 5000] [--kafka-only]
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KafkaAdmin, KafkaProducer } from "bun-rdkafka";
import postgres from "postgres";
import { runMaintain } from "../jobs/maintain.ts";
import { digestInDb, partitionOf, writeArchive } from "../jobs/retention/archive.ts";
import { loadMaintainConfig } from "../jobs/retention/config.ts";
import { loadServerConfig } from "../server/config.ts";
import { type ScanEvent, timestampOf, toScanRecord } from "../shared/event.ts";
import { TOPICS, localStack } from "../shared/local-stack.ts";
import { decode, isPoison } from "../shared/scan-events.ts";
import { createThrowawayDatabase } from "../tools/harness.ts";
import { createDb } from "../worker/db.ts";
import { ScanSink } from "../worker/sink.ts";
import { numArg, printTable, saveResults } from "./lib.ts";

const rows = numArg("rows", 1_000_000);
const qrCodes = numArg("qr-codes", 5_000);
const kafkaRows = numArg("kafka-rows", Math.round(rows / 10));
const batchRows = numArg("batch", 5_000);
/** Only the Kafka part (its figures do not depend on the database's). */
const kafkaOnly = process.argv.includes("--kafka-only");
const stack = localStack();

const USER_AGENTS = [
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 15; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
  "qrscan-gate/2.4.1 (embedded; armv7l)",
];

// Yesterday (UTC), so every hour is closed and rolled up; one day, spread evenly.
const dayStart = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() - 1);
const day = new Date(dayStart).toISOString().slice(0, 10);

/** Event i: a QR code drawn from a skewed popularity (a few posters get most scans), a phone's fields. */
function event(i: number): ScanEvent {
  const qr = Math.floor(qrCodes * Math.random() ** 2);
  const e: ScanEvent = {
    event_id: crypto.randomUUID(),
    qr_id: `venue-${qr % 97}:poster-${qr}`,
    scanned_at: timestampOf(dayStart + Math.floor((i * 86_400_000) / rows)),
    scanner_id: i % 5 === 0 ? `gate-${i % 40}` : undefined,
    location: { lat: 48.1 + Math.random() / 10, lon: 11.5 + Math.random() / 10, accuracy_m: 5 + (i % 50) },
    user_agent: USER_AGENTS[i % USER_AGENTS.length],
    attributes: { campaign: "spring-2026", lang: i % 3 ? "de" : "en" },
  } as ScanEvent;
  return e;
}

function recordOf(i: number): { event: ScanEvent; value: string } {
  const e = event(i);
  const receivedAt = timestampOf(dayStart + Math.floor((i * 86_400_000) / rows) + 150);
  return { event: e, value: JSON.stringify(toScanRecord(e, receivedAt, `203.0.113.${i % 250}`)) };
}

// ---------------------------------------------------------------------------------------------
// Postgres

/** Produces `count` records with the edge's producer settings to a private topic; bytes as sent and on disk. */
async function kafkaBytes(count: number, partitions: number, sendSize: number, partitionKey = "none") {
  const topic = `bench-storage-${Date.now()}`;
  const admin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
  await admin.createTopics([{ name: topic, partitions }], { ignoreExisting: false });
  try {
    const config = loadServerConfig({
      AUTH_DISABLED: "true",
      KAFKA_BROKERS: stack.brokers,
      SCANS_TOPIC: topic,
      KAFKA_PARTITION_KEY: partitionKey,
    });
    const producer = new KafkaProducer({ config: config.kafka });
    // Keyed as the edge keys them (KAFKA_PARTITION_KEY; default none: librdkafka's sticky partitioner).
    const keyOf = (e: ScanEvent) =>
      config.KAFKA_PARTITION_KEY === "qr_id"
        ? e.qr_id
        : config.KAFKA_PARTITION_KEY === "scanner_id"
          ? e.scanner_id
          : undefined;
    let valueBytes = 0;
    for (let from = 0; from < count; from += sendSize) {
      const records = [];
      for (let i = from; i < Math.min(count, from + sendSize); i++) {
        const { event, value } = recordOf(i);
        const key = keyOf(event);
        valueBytes += value.length + (key?.length ?? 0);
        records.push({ topic, key, value });
      }
      await producer.send(records);
    }
    await producer.close(5_000);
    const dataDir = join(stack.dir, "kafka", "data");
    let logBytes = 0;
    for (const dir of readdirSync(dataDir).filter((d) => d.startsWith(`${topic}-`))) {
      for (const f of readdirSync(join(dataDir, dir)).filter((f) => f.endsWith(".log"))) {
        logBytes += statSync(join(dataDir, dir, f)).size;
      }
    }
    if (logBytes === 0) throw new Error(`no log segments of ${topic} under ${dataDir}`);
    return {
      records: count,
      key: config.KAFKA_PARTITION_KEY,
      linger: config.KAFKA_LINGER_MS,
      partitions,
      sendSize,
      compression: String(config.kafka["compression.type"]),
      valueBytes,
      logBytes,
    };
  } finally {
    await admin.deleteTopics([topic]);
    admin.close();
  }
}

const db = await createThrowawayDatabase("qrscan_bench_storage");
const results: Record<string, unknown> = { rows, qrCodes, kafkaRows, day };
const archiveDir = mkdtempSync(join(tmpdir(), "qrscan-bench-archive-"));
try {
  if (!kafkaOnly) {
    const pool = createDb({ url: db.url, poolMax: 2, statementTimeoutMs: 120_000, deadlineMarginMs: 5_000 });
    const sink = new ScanSink(pool.transaction);
    const started = performance.now();
    for (let from = 0; from < rows; from += batchRows) {
      const batch = [];
      for (let i = from; i < Math.min(rows, from + batchRows); i++) {
        const { event, value } = recordOf(i);
        const row = decode({
          topic: "scans",
          partition: i % 12,
          offset: Math.floor(i / 12),
          key: Buffer.from(event.qr_id),
          value: Buffer.from(value),
          headers: null,
          timestamp: 0,
        });
        if (isPoison(row)) throw new Error(row.error);
        batch.push(row);
      }
      await sink.write(batch);
    }
    await pool.sql.end();
    console.log(
      `storage: ${rows} rows written through the sink in ${((performance.now() - started) / 1000).toFixed(0)} s`,
    );

    const direct = postgres(db.directUrl, { max: 1, onnotice: () => {}, connection: { TimeZone: "UTC" } });
    await direct`vacuum analyze`;
    const sizeOf = async (relation: string) => {
      const [r] = await direct<{ heap: string; indexes: string; total: string }[]>`
      select pg_table_size(${relation}::regclass)::text as heap, pg_indexes_size(${relation}::regclass)::text as indexes,
        pg_total_relation_size(${relation}::regclass)::text as total`;
      const [c] = await direct.unsafe<{ n: string }[]>(`select count(*)::text as n from "${relation}"`);
      return { heap: Number(r?.heap), indexes: Number(r?.indexes), total: Number(r?.total), rows: Number(c?.n) };
    };
    const partition = await sizeOf(partitionOf(day));
    const minutes = await sizeOf("scan_counts");
    await runMaintain(loadMaintainConfig({ DATABASE_DIRECT_URL: db.directUrl, ARCHIVE_DIR: archiveDir }), () => {});
    const hourly = await sizeOf("scan_counts_hourly");
    const daily = await sizeOf("scan_counts_daily");
    const digest = await digestInDb(direct, partitionOf(day));
    const file = join(archiveDir, "bench.parquet");
    const archiveStarted = performance.now();
    await writeArchive(direct, partitionOf(day), file, digest, { day });
    const archiveSeconds = (performance.now() - archiveStarted) / 1000;
    const archiveBytes = statSync(file).size;
    await direct.end();
    Object.assign(results, { partition, minutes, hourly, daily, archiveBytes, archiveSeconds });
  }
  // Kafka: large batches (sends of 1,000 to 3 partitions: what the edge's linger makes of heavy
  // traffic) and small ones (10-event requests one after another, to the scans topic's partition
  // count: light traffic, where lz4 finds less to share), unkeyed as the edge sends by default
  // and keyed by QR code (KAFKA_PARTITION_KEY=qr_id: about one record per partition batch).
  results.kafka = await kafkaBytes(kafkaRows, 3, 1_000);
  const small = Math.max(1_000, Math.round(kafkaRows / 5));
  results.kafkaSmall = await kafkaBytes(small, TOPICS.scans.partitions, 10);
  results.kafkaSmallKeyed = await kafkaBytes(small, TOPICS.scans.partitions, 10, "qr_id");
} finally {
  rmSync(archiveDir, { recursive: true, force: true });
  await db.drop();
}

const per = (bytes: number, n = rows) => (bytes / n).toFixed(1);
type Kafka = {
  key: string;
  linger: number;
  records: number;
  partitions: number;
  sendSize: number;
  compression: string;
  valueBytes: number;
  logBytes: number;
};
const r = results as {
  partition?: { heap: number; indexes: number; total: number };
  minutes: { total: number; rows: number };
  hourly: { total: number; rows: number };
  daily: { total: number; rows: number };
  archiveBytes: number;
  archiveSeconds: number;
  kafka: Kafka;
  kafkaSmall: Kafka;
  kafkaSmallKeyed: Kafka;
};
const kafkaRowsOf = (k: Kafka) => [
  { where: "Kafka record (JSON value + key)", bytes: k.valueBytes, "bytes/event": per(k.valueBytes, k.records) },
  {
    where: `Kafka log on disk (${k.compression}, linger ${k.linger} ms, key ${k.key}, sends of ${k.sendSize}, ${k.partitions} partitions)`,
    bytes: k.logBytes,
    "bytes/event": per(k.logBytes, k.records),
  },
];
printTable([
  ...(r.partition
    ? [
        { where: "Postgres scan_events: heap (+TOAST)", bytes: r.partition.heap, "bytes/event": per(r.partition.heap) },
        { where: "Postgres scan_events: indexes", bytes: r.partition.indexes, "bytes/event": per(r.partition.indexes) },
        { where: "Postgres scan_counts (minutes)", bytes: r.minutes.total, "bytes/event": per(r.minutes.total) },
        { where: "Postgres scan_counts_hourly", bytes: r.hourly.total, "bytes/event": per(r.hourly.total) },
        { where: "Postgres scan_counts_daily", bytes: r.daily.total, "bytes/event": per(r.daily.total) },
        { where: "Parquet archive", bytes: r.archiveBytes, "bytes/event": per(r.archiveBytes) },
      ]
    : []),
  ...kafkaRowsOf(r.kafka),
  ...kafkaRowsOf(r.kafkaSmall).slice(1),
  ...kafkaRowsOf(r.kafkaSmallKeyed).slice(1),
]);
if (r.partition) {
  console.log(
    `rows: scan_counts ${r.minutes.rows}, hourly ${r.hourly.rows}, daily ${r.daily.rows} for ${rows} events over one day and ${qrCodes} QR codes; archive written in ${r.archiveSeconds.toFixed(0)} s`,
  );
}
console.log(`saved ${saveResults("storage", results)}`);
