// Crash suite: under steady scan traffic through the real server and worker pool, in turn
// kill -9 a worker, kill -9 the server, kill -9 the broker, kill -9 Postgres, kill -9 pgbouncer
// (each a SIGKILL by pid, then a restart); then check that every event answered 202 is in
// Postgres exactly once and counted exactly once (sql/checks.ts storedOnce), and that nothing was
// dead-lettered (the dead-letter topic's high watermark, not a sampled metric). Prints one line per
// fault with what it acknowledged and lost and the evidence that the fault landed, then the
// totals; exits 1 on any failure.
//   bun bench/crash-suite.ts [--rate 300] [--settle 6]
// The integration suite runs a short form (test/integration/crash-suite.test.ts).
//
// The workers run with FAULT_DELAY_BEFORE_COMMIT_MS (300 ms between each batch's database commit
// and its offset commit), so a worker nearly always holds rows stored but not committed.
//
// Evidence per fault (a fault that left no trace is a failure, not a pass):
// - kill -9 a worker: killed as soon as its own partitions (its worker_partition_pending series)
//   hold rows stored in Postgres at offsets the group has not committed; read again once the
//   process is dead (the database first, then the committed offsets, which only move forward), at
//   least one row must still be stored and not committed: the replay of those rows is what the
//   stored-once check then covers. And a new worker pid appears (the supervisor restarted it);
// - kill -9 the server: requests open at the kill (bench/requests-in-flight.ts): held ones (all
//   but the last body byte sent) that the server had accepted, since it answered a complete request
//   queued after them, must end with no answer (closed or reset), after the kill; the complete ones
//   answered 202 count as acknowledged. Then clients get answers other than 202 while it is down;
// - kill -9 the broker: answers other than 202 while it is down, and on restart its log says it
//   recovered with no clean-shutdown file;
// - kill -9 Postgres (the postmaster and its backends): worker_db_retries_total (from the workers'
//   /metrics) grew while it was down, and on restart its log says it ran crash recovery;
// - kill -9 pgbouncer: worker_db_retries_total grew while it was down.
// Each outage lasts until its evidence is seen (at most 30 s).
import { readFileSync, statSync } from "node:fs";
import { KafkaAdmin } from "bun-rdkafka";
import postgres from "postgres";
import { sum } from "../shared/prometheus-text.ts";
import { type StoredOnceReport, missingEventIds, storedOnce } from "../sql/checks.ts";
import { scrapeIfUp } from "../tools/harness.ts";
import { childPids, isolatedRun, service } from "../tools/pipeline.ts";
import { startTraffic } from "../tools/scan-traffic.ts";
import { up } from "../tools/stack.ts";
import { kafkaNodePaths, killKafka, startKafka } from "../tools/stack/kafka.ts";
import { pgPaths } from "../tools/stack/pg-paths.ts";
import { killPgbouncer, killPostgres, startPgbouncer, startPostgres } from "../tools/stack/postgres.ts";
import { freePort, hasExited, portOpen } from "../tools/stack/processes.ts";
import { type RawRequest, freshEvents, sendRaw } from "./requests-in-flight.ts";

/** A partition of the killed worker holding rows stored at offsets the group had not committed. */
export interface WindowPartition {
  partition: number;
  /** The group's committed offset (the next offset to read). */
  committed: number;
  /** One past the highest offset stored in scan_events. */
  storedNext: number;
  /** Rows stored at offsets from `committed` to `storedNext`. */
  rows: number;
}

export interface FaultResult {
  fault: string;
  acknowledged: number;
  lost: number;
  /** Answers other than 202 and 4xx (5xx, refused or reset connections) during the phase. */
  faultAnswers: number;
  /** worker_db_retries_total increments during the phase, summed over the workers. */
  dbRetries: number;
  /** The pid killed with SIGKILL (the worker, the server, the broker, the postmaster, pgbouncer). */
  killedPid?: number;
  /** kill -9 a worker: the new worker's pid. */
  newWorkerPid?: number;
  /** kill -9 a worker: its partitions holding stored, uncommitted rows, read after it died. */
  window?: WindowPartition[];
  /** kill -9 the server: the requests open at the kill and what became of each. */
  inFlight?: RawRequest[];
  /** kill -9 the server: when it was killed (ms since the epoch). */
  killedAt?: number;
  /** kill -9 the broker or Postgres: the log line of its restart that shows the stop was unclean. */
  recovery?: string;
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
  /** Messages in the dead-letter topic (its high watermark; must be 0: the edge accepts only storable events). */
  deadLettered: number;
  /** Rows of dead_letters (the dead-letter group's copy of the topic). */
  deadLetterRows: number;
  statuses: Record<string, number>;
  /** Everything wrong: missing fault evidence and the data check's failures. Empty = pass. */
  failures: string[];
}

const WORKERS = 2;
/** The workers' FAULT_DELAY_BEFORE_COMMIT_MS: how long a batch stays stored but not committed. */
export const COMMIT_DELAY_MS = 300;
/** kill -9 the server: requests held open (all but the last body byte sent), and complete ones. */
const HELD_REQUESTS = 8;
const COMPLETE_REQUESTS = 8;

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

/** Polls `check` every `everyMs` until it is true or `timeoutMs` passed; returns whether it became true. */
async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await Bun.sleep(everyMs);
  }
}

/** The pool slot of worker process `pid` (its WORKER_INDEX, from /proc/<pid>/environ). */
function workerIndexOf(pid: number): number {
  const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
  const entry = environ.find((e) => e.startsWith("WORKER_INDEX="));
  if (!entry) throw new Error(`worker pid ${pid} has no WORKER_INDEX in its environment`);
  return Number(entry.slice("WORKER_INDEX=".length));
}

const fileSize = (path: string) => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};
/** The text appended to `path` after byte `from`. */
const logSince = (path: string, from: number) => readFileSync(path).subarray(from).toString("utf8");

/**
 * Partitions among `partitions` where Postgres holds rows at offsets the group has not committed.
 * The database is read first, then the committed offsets: rows never disappear and commits only
 * move forward, so a row stored at the first read and not committed at the second was in the
 * window at that second instant.
 */
async function storedNotCommitted(
  sql: postgres.Sql,
  admin: KafkaAdmin,
  run: { group: string; topic: string },
  partitions: readonly number[],
): Promise<WindowPartition[]> {
  const stored = await sql<{ partition: number; next: string }[]>`
    select kafka_partition as partition, max(kafka_offset) + 1 as next from scan_events
    where kafka_partition = any(${`{${partitions.join(",")}}`}::int[]) group by 1`;
  const committed = new Map(admin.groupLag(run.group, run.topic).map((p) => [p.partition, Math.max(p.committed, 0)]));
  const window = stored
    .map((r) => ({ partition: r.partition, committed: committed.get(r.partition) ?? 0, storedNext: Number(r.next) }))
    .filter((p) => p.storedNext > p.committed);
  return Promise.all(
    window.map(async (p) => {
      const [r] = await sql<{ n: number }[]>`
        select count(*)::int as n from scan_events
        where kafka_partition = ${p.partition} and kafka_offset >= ${p.committed} and kafka_offset < ${p.storedNext}`;
      return { ...p, rows: r?.n ?? 0 };
    }),
  );
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
    FAULT_DELAY_BEFORE_COMMIT_MS: String(COMMIT_DELAY_MS),
  });
  const admin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
  const run = { group: env.env.CONSUMER_GROUP, topic: env.env.SCANS_TOPIC };
  try {
    return await underTraffic();
  } finally {
    await Promise.all([server.stop(), workers.stop()]);
    admin.close();
    await env.dispose();
  }

  async function underTraffic(): Promise<CrashSuiteResult> {
    await Promise.all([server.start(), workers.start()]);
    const traffic = startTraffic({ url: `http://127.0.0.1:${port}`, rate, batchSize: 10, duplicateRatio: 0.02 });
    const faultAnswers = () =>
      Object.entries(traffic.stats.statuses)
        .filter(([status]) => status === "error" || status.startsWith("5"))
        .reduce((a, [, n]) => a + n, 0);

    // worker_db_retries_total, summed over the workers' lifetimes: sampled every 250 ms; a counter
    // that went down belongs to a restarted worker and counts from 0. Only a phase's evidence that
    // the database outage met worker writes; the dead letters are counted from their topic.
    let dbRetries = 0;
    const last = new Map<number, number>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (let i = 0; i < WORKERS; i++) {
          const samples = await scrapePort(workerMetricsBase + i);
          if (!samples) continue;
          const v = sum(samples, "worker_db_retries_total");
          const before = last.get(i) ?? 0;
          dbRetries += v >= before ? v - before : v;
          last.set(i, v);
        }
        await Bun.sleep(250);
      }
    })();

    // Each phase: from its start until the next fault starts (the fault, then the settle period).
    // The acknowledged range [from, to) of the traffic's ids; the rest as in the result.
    type Evidence = Pick<FaultResult, "killedPid" | "newWorkerPid" | "window" | "inFlight" | "killedAt" | "recovery">;
    type PhaseContext = { failures: string[]; evidence: string[]; found: Evidence };
    const phases: (Omit<FaultResult, "acknowledged" | "lost"> & { from: number; to: number })[] = [];
    const phase = async (fault: string, act: (p: PhaseContext) => Promise<void>) => {
      const from = traffic.stats.acknowledged.size;
      const answersBefore = faultAnswers();
      const retriesBefore = dbRetries;
      const evidence: string[] = [];
      const failures: string[] = [];
      const found: Evidence = {};
      await act({ failures, evidence, found });
      await Bun.sleep(settleS * 1000);
      phases.push({
        fault,
        from,
        to: traffic.stats.acknowledged.size,
        faultAnswers: faultAnswers() - answersBefore,
        dbRetries: dbRetries - retriesBefore,
        ...found,
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
      const before = dbRetries;
      const t0 = Date.now();
      if (await until(() => dbRetries > before, 30_000)) {
        p.evidence.push(`workers retrying after ${Date.now() - t0} ms with ${what} down`);
      } else p.failures.push(`no worker_db_retries_total increment in 30 s with ${what} down: no write met the outage`);
    };
    /** After a restart: the line of `logFile` (written since byte `from`) showing the stop was unclean. */
    const recovery = (what: string, logFile: string, from: number, line: RegExp, p: PhaseContext) => {
      const seen = logSince(logFile, from).match(line)?.[0];
      if (seen) {
        p.found.recovery = seen;
        p.evidence.push(`restarted: "${seen}"`);
      } else p.failures.push(`${what}'s log since the restart has no line matching ${line}: was it stopped cleanly?`);
    };

    try {
      await phase("steady (no fault)", async () => {});
      await phase("kill -9 a worker", async (p) => {
        const before = childPids(workers.pid as number);
        const victim = before[0];
        if (!victim) throw new Error(`kill -9 a worker: the supervisor (pid ${workers.pid}) has no worker to kill`);
        const samples = await scrapePort(workerMetricsBase + workerIndexOf(victim));
        const owned = (samples ?? [])
          .filter((s) => s.name === "worker_partition_pending")
          .map((s) => Number(s.labels.partition));
        if (owned.length === 0) throw new Error(`kill -9 a worker: worker ${victim} owns no partition to kill it over`);
        const sql = postgres(directUrl, { max: 1, onnotice: () => {} });
        try {
          // Killed as soon as its partitions hold rows stored and not committed (at most 15 s).
          const t0 = Date.now();
          let seen: WindowPartition[] = [];
          await until(
            async () => {
              seen = await storedNotCommitted(sql, admin, run, owned);
              return seen.length > 0;
            },
            15_000,
            10,
          );
          process.kill(victim, "SIGKILL");
          const waited = Date.now() - t0;
          p.found.killedPid = victim;
          if (seen.length === 0) {
            p.failures.push(
              `worker ${victim}'s partitions ${owned.join(",")} never held stored, uncommitted rows in 15 s`,
            );
          }
          await until(() => hasExited(victim), 10_000, 10);
          // Whatever the dead worker had sent (a COMMIT, an offset commit) is settled by now, and
          // its partitions stay unowned until its group session times out: the window read now
          // is the one it died with.
          await Bun.sleep(300);
          const window = await storedNotCommitted(sql, admin, run, owned);
          p.found.window = window;
          const rows = window.reduce((a, w) => a + w.rows, 0);
          const ranges = (w: WindowPartition[]) =>
            w.map((x) => `p${x.partition} [${x.committed}, ${x.storedNext})`).join(" ");
          if (rows === 0) {
            p.failures.push(
              `worker ${victim} (partitions ${owned.join(",")}) died holding no row stored but not committed: ` +
                `the kill missed the window (seen just before it: ${ranges(seen) || "none"})`,
            );
          } else {
            p.evidence.push(
              `worker ${victim} killed after ${waited} ms, died holding ${rows} rows stored but not committed (${ranges(window)})`,
            );
          }
        } finally {
          await sql.end();
        }
        const t0 = Date.now();
        let next: number | undefined;
        await until(() => {
          next = childPids(workers.pid as number).find((pid) => !before.includes(pid));
          return next !== undefined;
        }, 30_000);
        if (next === undefined) p.failures.push(`no new worker pid within 30 s of killing ${victim}`);
        else {
          p.found.newWorkerPid = next;
          p.evidence.push(`worker ${next} started ${Date.now() - t0} ms later`);
        }
      });
      await phase("kill -9 the server", async (p) => {
        const held = Array.from({ length: HELD_REQUESTS }, () => sendRaw(port, freshEvents(10), true));
        const heldSent = await until(() => held.every((h) => h.request.sentAt !== null), 5_000, 5);
        const complete = Array.from({ length: COMPLETE_REQUESTS }, () => sendRaw(port, freshEvents(10), false));
        // Once the server answers one of these, it has accepted every connection queued before it.
        const answered = await until(() => complete.some((c) => c.request.status !== null), 10_000, 1);
        p.found.killedPid = server.pid;
        const killedAt = Date.now();
        await server.kill9();
        p.found.killedAt = killedAt;
        const all = [...held, ...complete];
        await until(() => all.every((r) => r.request.endedAt !== null), 5_000, 10);
        for (const r of all) r.destroy();
        const requests = all.map((r) => r.request);
        p.found.inFlight = requests;
        for (const r of requests) {
          if (r.status === 202) for (const id of r.ids) traffic.stats.acknowledged.add(id);
        }
        const cutOff = (r: RawRequest) =>
          r.sentAt !== null && r.sentAt <= killedAt && r.status === null && r.endedAt !== null && r.endedAt >= killedAt;
        const heldCut = requests.filter((r) => r.held && cutOff(r));
        const done = requests.filter((r) => !r.held);
        if (!heldSent || !answered || heldCut.length !== HELD_REQUESTS) {
          p.failures.push(
            `requests in flight at the kill: ${heldCut.length} of ${HELD_REQUESTS} held requests cut off (sent before it, ` +
              `no answer, ended after it)${answered ? "" : "; no complete request answered before it"}: ${JSON.stringify(
                requests.filter((r) => r.held && !cutOff(r)),
              )}`,
          );
        }
        p.evidence.push(
          `server ${p.found.killedPid} killed with ${heldCut.length} held requests open, each ended with no answer ` +
            `(${heldCut.filter((r) => r.error).length} reset), and ${done.length} complete ones: ` +
            `${done.filter((r) => r.status === 202).length} answered 202 before the kill, ${done.filter(cutOff).length} cut off`,
        );
        try {
          await untilFaultAnswers("the server", p);
        } finally {
          await server.start();
        }
      });
      await phase("kill -9 the broker", async (p) => {
        const logFile = kafkaNodePaths(stack, 1).log;
        const from = fileSize(logFile);
        const [pid] = await killKafka(stack);
        if (pid === undefined) throw new Error("kill -9 the broker: no broker running");
        p.found.killedPid = pid;
        try {
          await untilFaultAnswers("the broker", p);
        } finally {
          await startKafka(stack);
        }
        recovery("the broker", logFile, from, /Recovering \d+ logs from \S+ since no clean shutdown file was found/, p);
      });
      await phase("kill -9 Postgres", async (p) => {
        const logFile = pgPaths(stack).log;
        const from = fileSize(logFile);
        const pid = await killPostgres(stack);
        if (pid === null) throw new Error("kill -9 Postgres: no postmaster running");
        p.found.killedPid = pid;
        try {
          await untilRetries("Postgres", p);
        } finally {
          await startPostgres(stack);
        }
        recovery(
          "Postgres",
          logFile,
          from,
          /database system was not properly shut down; automatic recovery in progress/,
          p,
        );
      });
      await phase("kill -9 pgbouncer", async (p) => {
        const pid = await killPgbouncer(stack);
        if (pid === null) throw new Error("kill -9 pgbouncer: no pgbouncer running");
        p.found.killedPid = pid;
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
      sampling = false;
      await sampler;
      const check = await storedOnce(sql, ids);
      const missingSet = new Set(missing);
      const faults: FaultResult[] = phases.map(({ from, to, ...p }) => {
        const phaseIds = ids.slice(from, to);
        return { ...p, acknowledged: phaseIds.length, lost: phaseIds.filter((id) => missingSet.has(id)).length };
      });
      for (const f of faults) {
        log(
          `${f.fault.padEnd(20)} acknowledged ${String(f.acknowledged).padStart(6)}  lost ${f.lost}  ` +
            `non-202 ${String(f.faultAnswers).padStart(4)}  db retries ${String(f.dbRetries).padStart(4)}  ${f.evidence}`,
        );
      }
      // The edge accepts only what Postgres stores (docs/api.md, "Accepted values"), so nothing this
      // traffic gets acknowledged may be dead-lettered; a duplicate refused instead of skipped would
      // be. Counted where the workers write them: every message of the run's dead-letter topic
      // (a fresh topic: its high watermark), including those published just before a kill.
      const deadLettered = admin
        .groupLag(env.env.DEAD_LETTER_GROUP, env.env.DEAD_LETTER_TOPIC)
        .reduce((a, p) => a + p.highWatermark, 0);
      // Their copies in dead_letters, for the reasons (the dead-letter group may still be catching up).
      const deadLetterRows = async () =>
        (await sql<{ n: number }[]>`select count(*)::int as n from dead_letters`)[0]?.n ?? 0;
      if (deadLettered > 0) await until(async () => (await deadLetterRows()) >= deadLettered, 15_000);
      const rowsDeadLettered = await deadLetterRows();
      const failures = [
        ...faults.flatMap((f) => f.failures),
        ...(deadLettered === 0 && rowsDeadLettered === 0
          ? []
          : [
              `${deadLettered} messages in the dead-letter topic, ${rowsDeadLettered} rows in dead_letters (expected 0)`,
            ]),
        ...(drained ? [] : ["the consumer group still had lag 60 s after the traffic stopped"]),
        ...check.failures,
      ];
      log(
        `total: ${check.acknowledged} acknowledged, ${check.missing} lost; ${check.rows} rows ` +
          `(${check.unacknowledgedStored} of them events never acknowledged), sum(scan_counts) ${check.counted}, ` +
          `${check.countMismatches} scan_counts buckets off, ${deadLettered} dead-lettered; HTTP statuses ${JSON.stringify(traffic.stats.statuses)}`,
      );
      if (rowsDeadLettered > 0) {
        const reasons = await sql<{ error: string; n: number }[]>`
          select left(error, 300) as error, count(*)::int as n from dead_letters group by 1 order by 2 desc limit 5`;
        for (const r of reasons) log(`dead letter x${r.n}: ${r.error}`);
      }
      log(
        failures.length
          ? `FAIL:\n  ${failures.join("\n  ")}`
          : "PASS: every fault landed under traffic; every 202 stored and counted once; nothing dead-lettered",
      );
      return {
        faults,
        check,
        acknowledged: check.acknowledged,
        lost: check.missing,
        countMismatches: check.countMismatches,
        deadLettered,
        deadLetterRows: rowsDeadLettered,
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
