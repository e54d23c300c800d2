// The crash suite's short form: every fault in turn under traffic; every 202 lands exactly once.
import { expect, test } from "bun:test";
import { runCrashSuite } from "../../bench/crash-suite.ts";

test("kill -9 worker, kill -9 server, restart broker, Postgres, pgbouncer: nothing acknowledged is lost or doubled", async () => {
  const lines: string[] = [];
  const result = await runCrashSuite({ rate: 200, settleS: 5, log: (l) => lines.push(l) });
  console.log(lines.join("\n"));
  expect(result.faults.map((f) => f.fault)).toEqual([
    "steady (no fault)",
    "kill -9 a worker",
    "kill -9 the server",
    "restart the broker",
    "restart Postgres",
    "restart pgbouncer",
  ]);
  // Traffic really flowed through each phase, so each fault was exercised under load.
  for (const f of result.faults) expect(f.acknowledged).toBeGreaterThan(0);
  expect(result.lost).toBe(0);
  expect(result.duplicateRows).toBe(0);
  expect(result.countMismatches).toBe(0);
}, 300_000);
