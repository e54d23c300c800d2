// Hand-made mutations of the pipeline's core promises (202 after the ack, durability settings,
// exact counts, bisection, retries, stall detection, tenancy, bounded statements): see
// tools/mutations/types.ts.
import type { Mutation } from "../types.ts";

export const mutations: Mutation[] = [
  {
    id: "ingest-202-before-ack",
    promise: "a 202 only after Kafka acknowledged every event of the request",
    file: "server/ingest.ts",
    find: "await o.producer.send(messages);",
    replace: "void o.producer.send(messages);",
    killers: ["test/integration/server-ingest.test.ts"],
    testNamePattern: "202 only after Kafka has the events",
    observed: "the topic's high watermarks right after the 202: expected 2, received 0",
  },
  {
    id: "producer-acks-1",
    promise:
      "the producer is idempotent with acks=all: a broker killed with requests in flight loses and duplicates nothing",
    file: "packages/bun-rdkafka/src/producer.ts",
    find: '  "enable.idempotence": true,\n  acks: "all",',
    replace: '  "enable.idempotence": false,\n  acks: 1,',
    killers: ["test/integration/kafka-broker-restart.test.ts"],
    observed:
      'librdkafka\'s eos.idemp_state: expected "Assigned", received undefined (with that check removed: 35 duplicates appended by the retries)',
  },
  {
    id: "sink-counts-staging",
    promise: "every event is counted once in scan_counts: replays and client retries are not counted again",
    file: "worker/sink.ts",
    find: "select qr_id, date_trunc('minute', scanned_at), count(*) from ins",
    replace: "select qr_id, date_trunc('minute', scanned_at), count(*) from scan_stage",
    killers: ["test/integration/worker-sink.test.ts"],
    testNamePattern: "duplicates and replayed batches end as exactly the distinct events",
    observed: "tally: counted 3,929 for 3,000 rows (replayed batches counted again)",
  },
  {
    id: "sink-no-on-conflict",
    promise: "a replayed batch is a no-op: stored once, nothing dead-lettered",
    file: "worker/sink.ts",
    find: "    on conflict do nothing\n    returning qr_id, scanned_at",
    replace: "    returning qr_id, scanned_at",
    killers: ["test/integration/worker-sink.test.ts"],
    testNamePattern: "duplicates and replayed batches end as exactly the distinct events",
    observed:
      "timed out after 60 s waiting for worker_rows_duplicate_total to reach 929; last saw 0 (each replayed row hit 23505 and was bisected out)",
  },
  {
    id: "no-bisection",
    promise: "a row Postgres rejects is dead-lettered alone; the rest of its batch is stored",
    file: "worker/scan-loop.ts",
    find: "    if (rows.length === 1) {\n      poison.push(",
    replace: "    if (rows.length >= 1) {\n      poison.push(",
    killers: ["test/integration/worker-sink.test.ts"],
    testNamePattern: "Postgres rejects one schema-valid row",
    observed:
      "the dead-lettered event is another one than the row Postgres rejected (the whole batch went to dead letters)",
  },
  {
    id: "retry-never-pauses",
    promise: "while a batch's write is retried, the worker's partitions are paused (nothing more is fetched)",
    file: "worker/retry.ts",
    find: "if (attempt === 0) o.onStartRetrying?.();",
    replace: "",
    killers: ["test/unit/worker-retry-pause.test.ts"],
    observed: "worker_paused_partitions: expected 3 during the retries, received 0",
  },
  {
    id: "stall-never-seen",
    promise:
      "a stalled partition (pending work, no commit for STALL_TIMEOUT_MS) fails /health and the worker is restarted",
    file: "worker/progress.ts",
    find: "stalled: pending && quietMs > this.#stallTimeoutMs,",
    replace: "stalled: false,",
    killers: ["test/integration/worker-stall.test.ts"],
    observed:
      "timed out after 20 s waiting for /health to report a stall; last saw 200 with every partition pending, 21.7 s since its commit, stalled: false",
  },
  {
    id: "statement-timeout-not-local",
    promise: "every database write is bounded, and the bound does not leak to the pooled connection's next user",
    file: "worker/db.ts",
    find: "`set local statement_timeout = ",
    replace: "`set statement_timeout = ",
    killers: ["test/integration/worker-db.test.ts"],
    testNamePattern: "does not leak to the pooled connection",
    observed: 'the pooled connection\'s next user sees statement_timeout "1234ms", not "0"',
  },
  {
    id: "tenant-post-unchecked",
    promise: "a key of one tenant cannot write QR ids of another (POST /v1/scans)",
    file: "server/ingest.ts",
    find: "if (qrPrefix !== null && !inTenant(event.qr_id, qrPrefix)) {",
    replace: "if (qrPrefix !== null && false) {",
    killers: ["test/integration/server-keys.test.ts"],
    testNamePattern: "the edge: a key of tenant acme:",
    observed: "acme:'s key writing acme2-secret: expected 403, received 202",
  },
  {
    id: "tenant-get-unchecked",
    promise: "a key of one tenant cannot read another tenant's counts (GET /v1/scans/:qr_id/stats)",
    file: "server/auth.ts",
    find: "if (!inTenant(qrId, principal.qrPrefix)) throw api.tenantDenied(c, qrId);",
    replace: "",
    killers: ["test/integration/server-keys.test.ts"],
    testNamePattern: "the edge: a key of tenant acme:",
    observed: "acme:'s key reading acme2:\u2026's counts: expected 403, received 200",
  },
];
