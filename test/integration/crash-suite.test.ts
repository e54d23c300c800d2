// The crash suite's short form: every fault in turn under traffic; every 202 lands exactly once
// and is counted exactly once. Each fault must leave evidence that it met traffic (see
// bench/crash-suite.ts); a fault that left none fails the test instead of passing unexercised.
import { expect, test } from "bun:test";
import { runCrashSuite } from "../../bench/crash-suite.ts";

test("kill -9 worker, kill -9 server, restart broker, Postgres, pgbouncer: nothing acknowledged is lost or counted twice", async () => {
  const lines: string[] = [];
  const result = await runCrashSuite({ rate: 200, settleS: 5, log: (l) => lines.push(l) });
  console.log(lines.join("\n"));
  const byFault = Object.fromEntries(result.faults.map((f) => [f.fault, f]));
  expect(Object.keys(byFault)).toEqual([
    "steady (no fault)",
    "kill -9 a worker",
    "kill -9 the server",
    "restart the broker",
    "restart Postgres",
    "restart pgbouncer",
  ]);
  // The faults landed: a worker was killed and a new one started; the server's and the broker's
  // outages were seen by clients; the database outages were met by worker writes and retried.
  const killed = byFault["kill -9 a worker"];
  expect(killed?.killedPid).toBeGreaterThan(0);
  expect(killed?.newWorkerPid).toBeGreaterThan(0);
  expect(killed?.newWorkerPid).not.toBe(killed?.killedPid);
  expect(byFault["kill -9 the server"]?.faultAnswers).toBeGreaterThan(0);
  expect(byFault["restart the broker"]?.faultAnswers).toBeGreaterThan(0);
  expect(byFault["restart Postgres"]?.dbRetries).toBeGreaterThan(0);
  expect(byFault["restart pgbouncer"]?.dbRetries).toBeGreaterThan(0);
  // Traffic was acknowledged in every phase (the settle period after a recovery alone meets this:
  // it shows the pipeline recovered, not that the fault overlapped traffic; the lines above do).
  for (const f of result.faults) expect(f.acknowledged).toBeGreaterThan(0);
  // Every acknowledged event stored once and counted once, and no fault without evidence.
  expect(result.check.missing).toBe(0);
  expect(result.check.counted).toBe(result.check.acknowledged + result.check.unacknowledgedStored);
  expect(result.check.countMismatches).toBe(0);
  expect(result.failures).toEqual([]);
}, 400_000);
