// Hand-made mutations: see tools/mutations/types.ts.
import type { Mutation } from "../types.ts";

const REPLICATED = "test/integration/kafka-replicated.test.ts";
const LEADER_KILL = "kill -9 of a partition leader";

export const mutations: Mutation[] = [
  {
    id: "sink-counts-each-batch-twice",
    promise: "Every event is stored once and counted once in scan_counts (replays and client retries are no-ops)",
    file: "worker/sink.ts",
    find: "select qr_id, date_trunc('minute', scanned_at), count(*) from ins",
    replace: "select qr_id, date_trunc('minute', scanned_at), 2 * count(*) from ins",
    killers: [REPLICATED],
    testNamePattern: LEADER_KILL,
    observed:
      'storedOnce failures: "sum(scan_counts.count) is 3638, expected 1819 (1819 acknowledged + 0 unacknowledged events stored): counted twice", "1132 scan_counts buckets differ from a recount of scan_events"',
  },
  {
    id: "ingest-retriable-delivery-error-answered-202",
    promise: "The edge answers 202 only after Kafka acknowledged every accepted event",
    file: "server/ingest.ts",
    find: "        throw unavailable(`events not stored (${error.code}); retry the whole request`);",
    replace: "        return c.json({ accepted: messages.length, rejected, request_id }, 202);",
    killers: [REPLICATED],
    testNamePattern: LEADER_KILL,
    observed: 'storedOnce failures: "1 of 1362 acknowledged events are not stored (lost)"',
  },
];
