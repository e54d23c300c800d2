// Crash suite: under steady scan traffic through the real server and worker pool, in turn
// kill -9 a worker, kill -9 the server, restart the broker, restart Postgres, restart pgbouncer;
// then check that every event answered 202 is in Postgres exactly once and that scan_counts
// matches a recount. Prints one line per fault with acknowledged/lost/duplicated counts.
//   bun bench/crash-suite.ts [--rate 300] [--settle 6]
// The integration suite runs a short form (test/integration/crash-suite.test.ts).
import postgres from "postgres";
import { childPids, isolatedRun, service } from "../scripts/pipeline.ts";
import { startTraffic } from "../scripts/scan-traffic.ts";
import { up } from "../scripts/stack.ts";
import { startKafka, stopKafka } from "../scripts/stack/kafka.ts";
import { startPgbouncer, startPostgres, stopPgbouncer, stopPostgres } from "../scripts/stack/postgres.ts";
import { freePort } from "../scripts/stack/processes.ts";
import { countMismatches, duplicateRows, missingEventIds } from "../sql/checks.ts";

export interface FaultResult {
  fault: string;
  acknowledged: number;
  lost: number;
  duplicated: number;
}

export interface CrashSuiteResult {
  faults: FaultResult[];
  acknowledged: number;
  lost: number;
  duplicateRows: number;
  countMismatches: number;
  statuses: Record<string, number>;
}

export async function runCrashSuite({ rate = 300, settleS = 6, log = console.log } = {}): Promise<CrashSuiteResult> {
  await up();
  const env = await isolatedRun("crash");
  const { stack, directUrl } = env;
  const port = freePort();
  const server = service(
    "server",
    "server/main.ts",
    { ...env.env, PORT: String(port), METRICS_PORT: String(freePort()), AUTH_DISABLED: "true" },
    `http://127.0.0.1:${port}/ready`,
  );
  const workers = service("workers", "worker/supervisor.ts", {
    ...env.env,
    WORKER_POOL_SIZE: "2",
    METRICS_PORT: "0",
    SUPERVISOR_METRICS_PORT: "0",
  });
  try {
    return await underTraffic();
  } finally {
    await Promise.all([server.stop(), workers.stop()]);
    await env.dispose();
  }

  async function underTraffic(): Promise<CrashSuiteResult> {
    await Promise.all([server.start(), workers.start()]);
    const traffic = startTraffic({ url: `http://127.0.0.1:${port}`, rate, batchSize: 10, duplicateRatio: 0.02 });

    // Each phase: acknowledgements received from its start until the next fault starts.
    const phases: { fault: string; from: number; to: number }[] = [];
    const phase = async (fault: string, act: () => Promise<void>) => {
      const from = traffic.stats.acknowledged.size;
      await act();
      await Bun.sleep(settleS * 1000);
      phases.push({ fault, from, to: traffic.stats.acknowledged.size });
    };

    try {
      await phase("steady (no fault)", async () => {});
      await phase("kill -9 a worker", async () => {
        const victim = childPids(workers.pid as number)[0];
        if (victim) process.kill(victim, "SIGKILL");
      });
      await phase("kill -9 the server", async () => {
        await server.kill9();
        await Bun.sleep(1_000);
        await server.start();
      });
      await phase("restart the broker", async () => {
        await stopKafka(stack);
        await startKafka(stack);
      });
      await phase("restart Postgres", async () => {
        await stopPostgres(stack);
        await startPostgres(stack);
      });
      await phase("restart pgbouncer", async () => {
        await stopPgbouncer(stack);
        await startPgbouncer(stack);
      });
    } finally {
      await traffic.stop();
    }

    const ids = [...traffic.stats.acknowledged];
    const sql = postgres(directUrl, { max: 1, onnotice: () => {} });
    // Let the workers drain what was acknowledged (bounded).
    const deadline = Date.now() + 120_000;
    let missing = await missingEventIds(sql, ids);
    while (missing.length > 0 && Date.now() < deadline) {
      await Bun.sleep(1_000);
      missing = await missingEventIds(sql, missing);
    }
    await Bun.sleep(2_000); // a replay still in flight would show up in the counts
    const missingSet = new Set(missing);
    const dupRows = await duplicateRows(sql);
    const mismatches = await countMismatches(sql);
    const faults = phases.map((p) => {
      const phaseIds = ids.slice(p.from, p.to);
      return {
        fault: p.fault,
        acknowledged: phaseIds.length,
        lost: phaseIds.filter((id) => missingSet.has(id)).length,
        duplicated: 0,
      };
    });
    // Duplicates cannot be attributed to a phase by the database; report them against every phase.
    for (const f of faults) f.duplicated = dupRows;
    for (const f of faults) {
      log(
        `${f.fault.padEnd(20)} acknowledged ${String(f.acknowledged).padStart(6)}  lost ${f.lost}  duplicated ${f.duplicated}`,
      );
    }
    log(
      `total: ${ids.length} acknowledged, ${missing.length} lost, ${dupRows} duplicate rows, ` +
        `${mismatches} scan_counts buckets off; HTTP statuses ${JSON.stringify(traffic.stats.statuses)}`,
    );

    await sql.end();
    return {
      faults,
      acknowledged: ids.length,
      lost: missing.length,
      duplicateRows: dupRows,
      countMismatches: mismatches,
      statuses: traffic.stats.statuses,
    };
  }
}

if (import.meta.main) {
  const rateArg = process.argv.indexOf("--rate");
  const settleArg = process.argv.indexOf("--settle");
  const result = await runCrashSuite({
    rate: rateArg > 0 ? Number(process.argv[rateArg + 1]) : 300,
    settleS: settleArg > 0 ? Number(process.argv[settleArg + 1]) : 6,
  });
  process.exit(result.lost === 0 && result.duplicateRows === 0 && result.countMismatches === 0 ? 0 : 1);
}
