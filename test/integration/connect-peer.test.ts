// The Kafka Connect peer bench (bench/peer/connect.ts) at a tiny size: Connect standalone with the
// Debezium JDBC sink and our worker (with and without its aggregate) each store exactly the events
// produced, with the same content, and the aggregate is kept only where it should be. A broken
// classpath, record format or connector config fails here, not on the lead's quiet box.
import { beforeAll, expect, test } from "bun:test";
import { ensureConnectJars, runConnectPeer } from "../../bench/peer/connect.ts";
import { ensureStack } from "../helpers/stack.ts";

const ROWS = 2_000;

// On a fresh machine the jars come from Maven Central first (about a minute), outside the test's time.
beforeAll(async () => {
  await ensureStack();
  ensureConnectJars();
}, 300_000);

test("Kafka Connect and our worker each store exactly the events produced, the same rows", async () => {
  const lines: string[] = [];
  const result = await runConnectPeer({
    rows: ROWS,
    vias: ["pgbouncer"],
    tasks: 1,
    batch: 500,
    timeoutMs: 120_000,
    log: (l) => lines.push(l),
  });
  console.log(lines.join("\n"));
  expect(Object.keys(result.runs)).toEqual(["connect_pgbouncer", "worker", "worker_no_aggregate"]);
  const stored = Object.fromEntries(Object.entries(result.runs).map(([name, r]) => [name, r.stored]));
  // rows only: count(distinct event_id) equals it by construction (scan_events' key, one id per event).
  for (const s of Object.values(stored)) expect(s.rows).toBe(ROWS);
  // Same events in, same rows out: every field as Postgres typed it, and the Kafka partition.
  expect(new Set(Object.values(stored).map((s) => s.digest)).size).toBe(1);
  // The connector keeps no aggregate; our worker counts each row once; the bench-only trigger
  // really switches the aggregate's writes off.
  expect(stored.connect_pgbouncer?.counted).toBe(0);
  expect(stored.worker?.counted).toBe(ROWS);
  expect(stored.worker_no_aggregate?.counted).toBe(0);
  for (const r of Object.values(result.runs)) expect(r.rowsPerSecond).toBeGreaterThan(0);
}, 150_000);
