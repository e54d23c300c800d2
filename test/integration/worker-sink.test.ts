// The worker against real Kafka and real Postgres behind real pgbouncer.
import { expect, test } from "bun:test";
import { createAdmin, createProducer } from "../helpers/kafka.ts";
import { countMismatches, createDatabase, tally } from "../helpers/postgres.ts";
import { events, eventually, metric, produceEvents, record, spawnWorker, workerEnv } from "../helpers/worker.ts";

test("duplicates and replayed batches end as exactly the distinct events, with exact counts", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url);
  const producer = createProducer();
  const distinct = events(3_000, 37);
  await produceEvents(producer, env.scansTopic, distinct);
  // Client retries: some event_ids again; and a whole batch replayed.
  await produceEvents(
    producer,
    env.scansTopic,
    distinct.filter((_, i) => i % 7 === 0),
  );
  await produceEvents(producer, env.scansTopic, distinct.slice(0, 500));
  const { metricsUrl } = spawnWorker(env);
  expect(await eventually(async () => (await tally(db.sql)).rows === 3_000)).toBe(true);
  // Let it finish the replays too, then check nothing moved.
  expect(await eventually(async () => (await metric(metricsUrl, "worker_rows_duplicate_total")) === 429 + 500)).toBe(
    true,
  );
  expect(await tally(db.sql)).toEqual({ rows: 3_000, distinct_ids: 3_000, counted: 3_000 });
  expect(await countMismatches(db.sql)).toBe(0);
  const [row] = await db.sql<{ qr_id: string; kafka_offset: string; client_ip: string }[]>`
    select qr_id, kafka_offset, host(client_ip) as client_ip from scan_events where event_id = ${distinct[5]?.event_id as string}`;
  expect(row?.qr_id).toBe(distinct[5]?.qr_id as string);
  expect(row?.client_ip).toBe("127.0.0.1");
  expect(Number(row?.kafka_offset)).toBeGreaterThanOrEqual(0);
});

test("poison messages land in dead_letters and do not stall their partition", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  const producer = createProducer();
  const good = events(200);
  await producer.send([
    ...good.slice(0, 100).map((e) => ({ topic: env.scansTopic, key: e.qr_id, value: record(e).value })),
    { topic: env.scansTopic, key: "bad-1", value: "{not json" },
    { topic: env.scansTopic, key: "bad-2", value: JSON.stringify({ event_id: "nope", qr_id: "x" }) },
    { topic: env.scansTopic, key: "bad-3", value: new Uint8Array([0xff, 0xfe, 0x00]) },
    { topic: env.scansTopic, key: "bad-4", value: null },
    ...good.slice(100).map((e) => ({ topic: env.scansTopic, key: e.qr_id, value: record(e).value })),
  ]);
  const { metricsUrl } = spawnWorker(env);
  expect(await eventually(async () => (await tally(db.sql)).rows === 200)).toBe(true);
  expect(
    await eventually(async () => Number((await db.sql`select count(*)::int as n from dead_letters`)[0]?.n) === 4),
  ).toBe(true);
  const letters = await db.sql<{ source_offset: string; error: string; key: Buffer; source_topic: string }[]>`
    select source_topic, source_offset, error, key from dead_letters order by source_offset`;
  expect(letters.map((l) => Number(l.source_offset))).toEqual([100, 101, 102, 103]);
  expect(letters.every((l) => l.source_topic === env.scansTopic)).toBe(true);
  expect(letters[0]?.error).toMatch(/undecodable payload/);
  expect(letters[1]?.error).toMatch(/schema violation: event_id: must be a UUID/);
  expect(letters[2]?.error).toMatch(/undecodable payload/);
  expect(letters[3]?.error).toMatch(/empty message value/);
  expect(Buffer.from(letters[1]?.key ?? []).toString()).toBe("bad-2");
  expect(await metric(metricsUrl, "worker_dead_letters_total")).toBe(4);
});

test("SIGTERM: finishes, commits, leaves the group and exits 0; a restart reads nothing twice", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url);
  const producer = createProducer();
  await produceEvents(producer, env.scansTopic, events(2_000));
  const first = spawnWorker(env);
  expect(await eventually(async () => (await tally(db.sql)).rows === 2_000)).toBe(true);
  first.proc.kill("SIGTERM");
  expect(await first.proc.exited).toBe(0);
  const lag = createAdmin().groupLag(env.group, env.scansTopic);
  expect(lag.reduce((s, p) => s + p.lag, 0)).toBe(0);

  await produceEvents(producer, env.scansTopic, events(100));
  const second = spawnWorker(env);
  expect(await eventually(async () => (await tally(db.sql)).rows === 2_100)).toBe(true);
  expect(await eventually(async () => (await metric(second.metricsUrl, "worker_rows_inserted_total")) === 100)).toBe(
    true,
  );
  expect(await metric(second.metricsUrl, "worker_rows_duplicate_total")).toBe(0);
});
