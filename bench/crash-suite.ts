// Crash suite: under steady scan traffic through the real server and worker pool, in turn
// kill -9 a worker, kill -9 the server, restart the broker, restart Postgres, restart pgbouncer;
// then check that every event answered 202 is in Postgres exactly once and counted exactly once
// (sql/checks.ts storedOnce). Prints one line per fault with what it acknowledged and lost and
// the evidence that the fault landed under traffic, then the totals; exits 1 on any failure.
//   bun bench/crash-suite.ts [--rate 300] [--settle 6]
// The integration suite runs a short form (test/integration/crash-suite.test.ts).
//
// Evidence per fault (a fault that left no trace is a failure, not a pass):
// - kill -9 a worker: a worker pid existed to kill, and a new worker pid appeared after it;
// - kill -9 the server, restart the broker: answers other than 202 (5xx, refused or reset
//   connections) while it was down; the outage lasts until one is seen (at most 30 s);
// - restart Postgres, restart pgbouncer: worker_db_retries_total (from the workers' /metrics)
//   grew while it was down; the outage lasts until it does (at most 30 s).
import postgres from "postgres";
import { sum } from "../shared/prometheus-text.ts";
import { type StoredOnceReport, missingEventIds, storedOnce } from "../sql/checks.ts";
import { scrapeIfUp } from "../tools/harness.ts";
import { childPids, isolatedRun, service } from "../tools/pipeline.ts";
import { startTraffic } from "../tools/scan-traffic.ts";
import { up } from "../tools/stack.ts";
import { startKafka, stopKafka } from "../tools/stack/kafka.ts";
import { startPgbouncer, startPostgres, stopPgbouncer, stopPostgres } from "../tools/stack/postgres.ts";
import { freePort, portOpen } from "../tools/stack/processes.ts";

export interface FaultResult {
  fault: string;
  acknowledged: number;
  lost: number;
  /** Answers other than 202 and 4xx (5xx, refused or reset connections) during the phase. */
  faultAnswers: number;
  /** worker_db_retries_total increments during the phase, summed over the workers. */
  dbRetries: number;
  /** kill -9 a worker: the pid killed and the new worker's pid. */
  killedPid?: number;
  newWorkerPid?: number;
  /** What shows the fault landed, in words. */
  evidence: string;
  /** Missing evidence, one line each. */
  failures: string[];
}

export interface CrashSuiteResult {
  faults: FaultResult[];
  check: StoredOnceReport;
  acknowledged: number;
  lost: number;
  countMismatches: number;
  /** worker_dead_letters_total over the run (must be 0: the edge accepts only storable events). */
  deadLettered: number;
  statuses: Record<string, number>;
  /** Everything wrong: missing fault evidence and the data check's failures. Empty = pass. */
  failures: string[];
}

const WORKERS = 2;

/** A base port with `n` consecutive free ports (worker i listens on base + i). */
async function freePortRange(n: number): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const base = freePort();
    if (base + n > 65535) continue;
    let ok = true;
    for (let i = 1; i < n; i++) if (await portOpen(base + i)) ok = false;
    if (ok) return base;
  }
  throw new Error(`no ${n} consecutive free ports found`);
}

/** The samples of the /metrics on `port`; null while the process there is down or restarting. */
const scrapePort = (port: number) => scrapeIfUp(`http://127.0.0.1:${port}/metrics`);

/** Polls `check` every 200 ms until it is true or `timeoutMs` passed; returns whether it became true. */
async function until(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await Bun.sleep(200);
  }
}

export async function runCrashSuite({ rate = 300, settleS = 6, log = console.log } = {}): Promise<CrashSuiteResult> {
  await up();
  const env = await isolatedRun("crash");
  const { stack, directUrl } = env;
  const port = freePort();
  const workerMetricsBase = await freePortRange(WORKERS);
  const supervisorMetricsPort = freePort();
  const server = service(
    "server",
    "server/main.ts",
    { ...env.env, PORT: String(port), METRICS_PORT: String(freePort()), AUTH_DISABLED: "true" },
    `http://127.0.0.1:${port}/ready`,
  );
  const workers = service("workers", "worker/supervisor.ts", {
    ...env.env,
    WORKER_POOL_SIZE: String(WORKERS),
    METRICS_PORT: String(workerMetricsBase),
    SUPERVISOR_METRICS_PORT: String(supervisorMetricsPort),
    LAG_INTERVAL_MS: "1000",
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
    const faultAnswers = () =>
      Object.entries(traffic.stats.statuses)
        .filter(([status]) => status === "error" || status.startsWith("5"))
        .reduce((a, [, n]) => a + n, 0);

    // worker_db_retries_total and worker_dead_letters_total, summed over the workers' lifetimes:
    // sampled every 250 ms; a counter that went down belongs to a restarted worker and counts from 0.
    const counters = { worker_db_retries_total: 0, worker_dead_letters_total: 0 };
    const last = new Map<string, number>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (let i = 0; i < WORKERS; i++) {
          const samples = await scrapePort(workerMetricsBase + i);
          if (!samples) continue;
          for (const name of Object.keys(counters) as (keyof typeof counters)[]) {
            const v = sum(samples, name);
            const before = last.get(`${name}/${i}`) ?? 0;
            counters[name] += v >= before ? v - before : v;
            last.set(`${name}/${i}`, v);
          }
        }
        await Bun.sleep(250);
      }
    })();

    // Each phase: from its start until the next fault starts (the fault, then the settle period).
    // The acknowledged range [from, to) of the traffic's ids; the rest as in the result.
    const phases: (Omit<FaultResult, "acknowledged" | "lost"> & { from: number; to: number })[] = [];
    const phase = async (
      fault: string,
      act: (p: { failures: string[]; evidence: string[]; pids: { killed?: number; next?: number } }) => Promise<void>,
    ) => {
      const from = traffic.stats.acknowledged.size;
      const answersBefore = faultAnswers();
      const retriesBefore = counters.worker_db_retries_total;
      const evidence: string[] = [];
      const failures: string[] = [];
      const pids: { killed?: number; next?: number } = {};
      await act({ failures, evidence, pids });
      await Bun.sleep(settleS * 1000);
      phases.push({
        fault,
        from,
        to: traffic.stats.acknowledged.size,
        faultAnswers: faultAnswers() - answersBefore,
        dbRetries: counters.worker_db_retries_total - retriesBefore,
        killedPid: pids.killed,
        newWorkerPid: pids.next,
        evidence: evidence.join("; ") || "-",
        failures: failures.map((f) => `${fault}: ${f}`),
      });
    };
    /** Keeps a component down until a non-202 answer is seen (at most 30 s). */
    const untilFaultAnswers = async (what: string, p: { failures: string[]; evidence: string[] }) => {
      const before = faultAnswers();
      const t0 = Date.now();
      if (await until(() => faultAnswers() > before, 30_000)) {
        p.evidence.push(`first answer other than 202 after ${Date.now() - t0} ms with ${what} down`);
      } else p.failures.push(`no answer other than 202 in 30 s with ${what} down: the fault did not meet traffic`);
    };
    const untilRetries = async (what: string, p: { failures: string[]; evidence: string[] }) => {
      const before = counters.worker_db_retries_total;
      const t0 = Date.now();
      if (await until(() => counters.worker_db_retries_total > before, 30_000)) {
        p.evidence.push(`workers retrying after ${Date.now() - t0} ms with ${what} down`);
      } else p.failures.push(`no worker_db_retries_total increment in 30 s with ${what} down: no write met the outage`);
    };

    try {
      await phase("steady (no fault)", async () => {});
      await phase("kill -9 a worker", async (p) => {
        const before = childPids(workers.pid as number);
        const victim = before[0];
        if (!victim) throw new Error(`kill -9 a worker: the supervisor (pid ${workers.pid}) has no worker to kill`);
        process.kill(victim, "SIGKILL");
        p.pids.killed = victim;
        const t0 = Date.now();
        let next: number | undefined;
        await until(() => {
          next = childPids(workers.pid as number).find((pid) => !before.includes(pid));
          return next !== undefined;
        }, 30_000);
        if (next === undefined) p.failures.push(`no new worker pid within 30 s of killing ${victim}`);
        else {
          p.pids.next = next;
          p.evidence.push(`worker ${victim} killed, worker ${next} started ${Date.now() - t0} ms later`);
        }
      });
      await phase("kill -9 the server", async (p) => {
        await server.kill9();
        try {
          await untilFaultAnswers("the server", p);
        } finally {
          await server.start();
        }
      });
      await phase("restart the broker", async (p) => {
        await stopKafka(stack);
        try {
          await untilFaultAnswers("the broker", p);
        } finally {
          await startKafka(stack);
        }
      });
      await phase("restart Postgres", async (p) => {
        await stopPostgres(stack);
        try {
          await untilRetries("Postgres", p);
        } finally {
          await startPostgres(stack);
        }
      });
      await phase("restart pgbouncer", async (p) => {
        await stopPgbouncer(stack);
        try {
          await untilRetries("pgbouncer", p);
        } finally {
          await startPgbouncer(stack);
        }
      });
    } catch (error) {
      sampling = false;
      await sampler;
      throw error;
    } finally {
      await traffic.stop();
    }

    const ids = [...traffic.stats.acknowledged];
    const sql = postgres(directUrl, { max: 1, onnotice: () => {} });
    try {
      // Let the workers drain what was acknowledged (bounded).
      const deadline = Date.now() + 120_000;
      let missing = await missingEventIds(sql, ids);
      while (missing.length > 0 && Date.now() < deadline) {
        await Bun.sleep(1_000);
        missing = await missingEventIds(sql, missing);
      }
      // Then until the group has committed everything (the supervisor reads the committed lag
      // from the broker every second): a replay still to come would otherwise miss the check.
      const drained = await until(async () => {
        const s = await scrapePort(supervisorMetricsPort);
        return !!s && s.some((x) => x.name === "consumer_group_lag") && sum(s, "consumer_group_lag") === 0;
      }, 60_000);
      await Bun.sleep(500); // the sampler's last turn sees the final counters
      sampling = false;
      await sampler;
      const check = await storedOnce(sql, ids);
      const missingSet = new Set(missing);
      const faults: FaultResult[] = phases.map((p) => {
        const phaseIds = ids.slice(p.from, p.to);
        return {
          fault: p.fault,
          acknowledged: phaseIds.length,
          lost: phaseIds.filter((id) => missingSet.has(id)).length,
          faultAnswers: p.faultAnswers,
          dbRetries: p.dbRetries,
          killedPid: p.killedPid,
          newWorkerPid: p.newWorkerPid,
          evidence: p.evidence,
          failures: p.failures,
        };
      });
      for (const f of faults) {
        log(
          `${f.fault.padEnd(20)} acknowledged ${String(f.acknowledged).padStart(6)}  lost ${f.lost}  ` +
            `non-202 ${String(f.faultAnswers).padStart(4)}  db retries ${String(f.dbRetries).padStart(4)}  ${f.evidence}`,
        );
      }
      // The edge accepts only what Postgres stores (docs/api.md, "Accepted values"), so nothing this
      // traffic gets acknowledged may be dead-lettered; a duplicate refused instead of skipped would be.
      const deadLettered = counters.worker_dead_letters_total;
      const failures = [
        ...faults.flatMap((f) => f.failures),
        ...(deadLettered === 0 ? [] : [`${deadLettered} messages dead-lettered (worker_dead_letters_total)`]),
        ...(drained ? [] : ["the consumer group still had lag 60 s after the traffic stopped"]),
        ...check.failures,
      ];
      log(
        `total: ${check.acknowledged} acknowledged, ${check.missing} lost; ${check.rows} rows ` +
          `(${check.unacknowledgedStored} of them events never acknowledged), sum(scan_counts) ${check.counted}, ` +
          `${check.countMismatches} scan_counts buckets off, ${deadLettered} dead-lettered; HTTP statuses ${JSON.stringify(traffic.stats.statuses)}`,
      );
      if (deadLettered > 0) {
        // Why (stored by the dead-letter consumer group, which may still be catching up).
        await until(async () => {
          const [n] = await sql<{ n: number }[]>`select count(*)::int as n from dead_letters`;
          return (n?.n ?? 0) >= deadLettered;
        }, 15_000);
        const reasons = await sql<{ error: string; n: number }[]>`
          select left(error, 300) as error, count(*)::int as n from dead_letters group by 1 order by 2 desc limit 5`;
        for (const r of reasons) log(`dead letter x${r.n}: ${r.error}`);
      }
      log(
        failures.length
          ? `FAIL:\n  ${failures.join("\n  ")}`
          : "PASS: every fault landed under traffic; every 202 stored and counted once",
      );
      return {
        faults,
        check,
        acknowledged: check.acknowledged,
        lost: check.missing,
        countMismatches: check.countMismatches,
        deadLettered,
        statuses: traffic.stats.statuses,
        failures,
      };
    } finally {
      sampling = false;
      await sampler;
      await sql.end();
    }
  }
}

if (import.meta.main) {
  const rateArg = process.argv.indexOf("--rate");
  const settleArg = process.argv.indexOf("--settle");
  const started = Date.now();
  const result = await runCrashSuite({
    rate: rateArg > 0 ? Number(process.argv[rateArg + 1]) : 300,
    settleS: settleArg > 0 ? Number(process.argv[settleArg + 1]) : 6,
  });
  console.log(`crash suite: ${Math.round((Date.now() - started) / 1000)} s`);
  process.exit(result.failures.length === 0 ? 0 : 1);
}
