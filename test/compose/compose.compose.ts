// The compose stage (.ci/run; `bun run test:compose`): compose.yaml run for real on the project's
// engine (tools/engine.ts), from the images tools/compose-images.ts built here, and checked through
// the containers only: the README's compose commands, run as they are; a worker container and a
// Kafka broker container killed under load; an alert delivered by severity; a trace from the edge
// into the worker; the containers' log lines through promtail's pipeline; WAL archiving, a backup
// and a verified restore drill. The file is not named *.test.ts: `bun test` alone never runs it.
//
// Mutations tried, in a scratch clone against the same engine (docs/guarantees.md has the table):
// pages routed to the ticket receiver → alerts; archive_mode=off → the backup and the drill; the
// worker's OTEL endpoint removed → traces; promtail reading the app's time as seconds → logs;
// worker/sink.ts counting the staged rows instead of the inserted ones → the worker kill (the
// replayed rows counted twice). The scans topic taking one in-sync replica is not caught here: with
// two of the three nodes down the controller quorum is gone and every write fails anyway
// (test/unit/compose-kafka.test.ts checks the topic's settings).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { KafkaProducer } from "bun-rdkafka";
import postgres from "postgres";
import { type Sample, parsePrometheusText, sum } from "../../shared/prometheus-text.ts";
import { countMismatches, storedOnce } from "../../sql/checks.ts";
import { checksums, differences, mark } from "../../tools/backup/checksums.ts";
import { LOCAL_COMPOSE_FILE } from "../../tools/compose-images.ts";
import { engineUp } from "../../tools/engine.ts";
import { ROOT } from "../../tools/harness.ts";
import { readDoc } from "../docs/harness.ts";
import { type OtlpExport, SPAN_KIND, spansOf } from "../helpers/otlp-receiver.ts";
import { checkContainerLines, containerLogProblems, loadPromtailConfig } from "../helpers/promtail-pipeline.ts";
import { waitFor } from "../helpers/wait.ts";

const PROJECT = "qrscan-ci";
const PASSWORD = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex");
const CAPTURE = "http://127.0.0.1:19095";
const API = "http://127.0.0.1:8080";
const README_MARK = "run by the compose stage";
/** After one broker of three is killed, the edge may answer 503 for at most this long (measured: 20-40 s). */
const FAILOVER_BOUND_MS = 60_000;
/** After the brokers restart (JVM start, rejoining, the in-sync sets growing back), 503s for at most this long. */
const RECOVERY_BOUND_MS = 120_000;
/** From an alert's `for:` elapsing to its webhook: scrapes and evaluations (15 s each), group_wait (30 s), room. */
const ALERT_DELIVERY_MS = 150_000;

let env: Record<string, string> = {};
/** An alert's `for:` in milliseconds, from the rule files (0 when it has none). */
function alertForMs(alertname: string): number {
  const dir = join(ROOT, "monitoring/prometheus/rules");
  for (const file of readdirSync(dir)) {
    const { groups } = Bun.YAML.parse(readFileSync(join(dir, file), "utf8")) as {
      groups: { rules: { alert?: string; for?: string }[] }[];
    };
    const rule = groups.flatMap((g) => g.rules).find((r) => r.alert === alertname);
    if (!rule) continue;
    const m = /^(\d+)([smh])$/.exec(rule.for ?? "0s");
    if (!m) throw new Error(`${file}: ${alertname} has a for: this test cannot read: ${rule.for}`);
    return Number(m[1]) * { s: 1_000, m: 60_000, h: 3_600_000 }[m[2] as "s" | "m" | "h"];
  }
  throw new Error(`no rule in ${dir} defines ${alertname}`);
}

/** The steps that failed, with their errors: printed again after the containers' logs. */
const failures: string[] = [];
let db: postgres.Sql;

// ---------------------------------------------------------------------------------------------
// Commands

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string[], { timeoutMs = 120_000, input }: { timeoutMs?: number; input?: string } = {}): Ran {
  const r = spawnSync(cmd[0] as string, cmd.slice(1), {
    cwd: ROOT,
    env,
    input,
    encoding: "utf8",
    timeout: timeoutMs,
    maxBuffer: 256 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

function must(cmd: string[], options?: { timeoutMs?: number; input?: string }): string {
  const r = run(cmd, options);
  if (r.status !== 0)
    throw new Error(`\`${cmd.join(" ")}\` exited with ${r.status}: ${(r.stderr || r.stdout).trim().slice(-3000)}`);
  return r.stdout;
}

const compose = (args: string[], options?: { timeoutMs?: number }) => must(["docker-compose", ...args], options);
const ids = (service: string) => compose(["ps", "-q", service]).trim().split("\n").filter(Boolean);
const inspect = (id: string, format: string) => must(["docker", "inspect", "-f", format, id]).trim();
const psql = (query: string) =>
  compose(["exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "qrscan", "-Atc", query]).trim();

/** A worker container's own metrics (its port is not published: read from inside the container). */
function workerMetrics(id: string): Sample[] {
  const text = must([
    "docker",
    "exec",
    id,
    "bun",
    "-e",
    "console.log(await (await fetch('http://127.0.0.1:9470/metrics')).text())",
  ]);
  return parsePrometheusText(text);
}

async function captured(): Promise<{ traces: OtlpExport[]; alerts: { receiver: string; body: AlertPayload }[] }> {
  const res = await fetch(`${CAPTURE}/captured`, { signal: AbortSignal.timeout(5_000) });
  return (await res.json()) as { traces: OtlpExport[]; alerts: { receiver: string; body: AlertPayload }[] };
}

// ---------------------------------------------------------------------------------------------
// Load: scans posted to the server container at a steady pace, every answer recorded

interface LoadResult {
  acknowledged: string[];
  statuses: Record<number, number>;
  /** 503s that came without a Retry-After header. */
  withoutRetryAfter: number;
  /** [ms since start when sent, status] of every request (0: the connection failed). */
  timeline: [number, number][];
}

/** The loads running now: afterAll stops those a failed step left behind. */
const loads = new Set<{ stop(): Promise<LoadResult> }>();

function startLoad(key: string, { clients = 4, eventsPerRequest = 5, pauseMs = 20 } = {}) {
  const result: LoadResult = { acknowledged: [], statuses: {}, withoutRetryAfter: 0, timeline: [] };
  const started = performance.now();
  let stopping = false;
  const client = async () => {
    while (!stopping) {
      const events = Array.from({ length: eventsPerRequest }, (_, i) => ({
        event_id: crypto.randomUUID(),
        qr_id: `ci:load-${i % 7}`,
        scanned_at: new Date().toISOString(),
      }));
      let status = 0;
      const sentAt = Math.round(performance.now() - started);
      try {
        const res = await fetch(`${API}/v1/scans`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify(events),
          signal: AbortSignal.timeout(30_000),
        });
        status = res.status;
        if (status === 503 && !res.headers.get("retry-after")) result.withoutRetryAfter++;
        await res.arrayBuffer();
      } catch {
        status = 0;
      }
      result.statuses[status] = (result.statuses[status] ?? 0) + 1;
      result.timeline.push([sentAt, status]);
      if (status === 202) for (const e of events) result.acknowledged.push(e.event_id);
      await Bun.sleep(pauseMs);
    }
  };
  const running = Array.from({ length: clients }, client);
  const load = {
    result,
    acknowledgedSoFar: () => result.acknowledged.length,
    /** The load's clock (the timeline's). */
    elapsedMs: () => Math.round(performance.now() - started),
    async stop(): Promise<LoadResult> {
      stopping = true;
      await Promise.all(running);
      loads.delete(load);
      return result;
    },
  };
  loads.add(load);
  return load;
}

async function waitStoredOnce(acknowledged: string[], what: string) {
  const report = await waitFor(
    `every acknowledged event of ${what} stored (${acknowledged.length})`,
    () => storedOnce(db, acknowledged),
    (r) => r.missing === 0,
    120_000,
    1_000,
  );
  expect({ missing: report.missing, acknowledgedRows: report.acknowledgedRows }).toEqual({
    missing: 0,
    acknowledgedRows: report.acknowledged,
  });
  expect(await countMismatches(db)).toBe(0);
  return report;
}

// ---------------------------------------------------------------------------------------------
// Traces, as the OTLP/HTTP JSON encoding carries them

interface AlertPayload {
  receiver: string;
  status: string;
  alerts: { labels: Record<string, string>; status: string }[];
}

/** Waits until the 3 worker containers each own partitions of scans, 12 in all; their shares. */
const workersSharing = () =>
  waitFor(
    "3 worker containers, each with partitions, 12 in all",
    async () => ids("worker").map((id) => sum(workerMetrics(id), "worker_assigned_partitions")),
    (s) => s.length === 3 && s.every((n) => n > 0) && s.reduce((a, b) => a + b, 0) === 12,
    120_000,
    2_000,
  );

/** The workers recreated with FAULT_DELAY_BEFORE_COMMIT_MS (test/compose/capture.yaml passes it on). */
async function workersWithCommitDelay(ms: number) {
  env.FAULT_DELAY_BEFORE_COMMIT_MS = String(ms);
  compose(["up", "-d", "--no-deps", "--scale", "worker=3", "worker"], { timeoutMs: 180_000 });
  await workersSharing();
}

const hex = (bytes: number) => Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("hex");

// ---------------------------------------------------------------------------------------------
// The stage

let key = "";
let exporterStoppedAt = 0;
let deadLetterStoredAt = 0;

beforeAll(async () => {
  const engine = await engineUp();
  env = {
    ...(process.env as Record<string, string>),
    DOCKER_HOST: engine.host,
    COMPOSE_FILE: `${LOCAL_COMPOSE_FILE}:test/compose/capture.yaml`,
    COMPOSE_PROJECT_NAME: PROJECT,
    POSTGRES_PASSWORD: PASSWORD,
    PAGER_WEBHOOK_URL: "http://capture:9095/pager",
    TICKET_WEBHOOK_URL: "http://capture:9095/ticket",
  };
  for (const image of ["qrscan-server:local", "qrscan-worker:local", "qrscan-local/kafka:3.9.1"])
    if (run(["docker", "image", "inspect", image]).status !== 0)
      throw new Error(`${image} is not in the engine: run \`bun tools/compose-images.ts\` first`);
  // A stage that failed before left its project behind: start from nothing.
  compose(["--profile", "drill", "down", "-v", "--remove-orphans", "--timeout", "5"], { timeoutMs: 180_000 });
  db = postgres(`postgres://postgres:${PASSWORD}@127.0.0.1:15432/qrscan`, { max: 2, onnotice: () => {} });
}, 300_000);

afterAll(async () => {
  // A step that failed before stopping its load: stop it before the containers go.
  await Promise.all([...loads].map((l) => l.stop()));
  await db?.end({ timeout: 2 });
  if (failures.length > 0) {
    console.log(compose(["ps"]));
    const logs = run(["docker-compose", "logs", "--no-color", "--tail", "60"]);
    console.log(logs.stdout.slice(-30_000));
    // Last, so that the tail of a long CI log still says what failed.
    console.log(`compose stage: ${failures.length} step(s) failed:\n${failures.join("\n")}`);
  }
  compose(["--profile", "drill", "down", "-v", "--remove-orphans", "--timeout", "10"], { timeoutMs: 300_000 });
}, 600_000);

const step = (name: string, body: () => Promise<void>, timeoutMs: number) =>
  test(
    name,
    async () => {
      try {
        await body();
      } catch (error) {
        failures.push(`- ${name}: ${String(error instanceof Error ? error.message : error).slice(0, 2_000)}`);
        throw error;
      }
    },
    timeoutMs,
  );

describe("compose on a real engine, through its containers", () => {
  const readme = readDoc(join(ROOT, "README.md"), "README.md").filter(
    (b) => b.kind === "skip" && b.skipReason?.startsWith(README_MARK),
  );

  step(
    "the README's compose commands: up, the migrate job completes, a scan answered 202 is stored by a worker container, --scale worker=3",
    async () => {
      expect(readme.length).toBe(3);
      for (const block of readme.slice(0, 2)) {
        const r = run(["bash", "--noprofile", "--norc", "-euo", "pipefail", "-c", block.code], { timeoutMs: 600_000 });
        if (r.status !== 0)
          throw new Error(`README.md:${block.line} exited with ${r.status}:\n${(r.stdout + r.stderr).slice(-4000)}`);
      }
      const [migrate] = ids("migrate");
      expect(inspect(migrate as string, "{{.State.Status}} {{.State.ExitCode}}")).toBe("exited 0");
      expect(psql("select count(*) from scan_events where qr_id = 'gate-7:ticket-123'")).toBe("1");
      // A key of the test's own, as the README makes one.
      key = compose([
        "run",
        "--rm",
        "-T",
        "ops",
        "bun",
        "jobs/keys.ts",
        "create",
        "--name",
        "compose-stage",
        "--qr-prefix",
        "ci:",
      ])
        .trim()
        .split("\n")
        .at(-1) as string;
      expect(key).toMatch(/^qrs_/);
      // The alert checks below need time (TargetDown waits 2 minutes): their faults start now.
      compose(["stop", "postgres-exporter"]);
      exporterStoppedAt = Date.now();
    },
    900_000,
  );

  step(
    "--scale worker=3: the three worker containers share the 12 partitions of scans",
    async () => {
      // The wait is the check: three containers, each holding partitions, 12 in all (it throws
      // with the last shares it saw).
      await workersSharing();
    },
    180_000,
  );

  step(
    "a worker container killed (SIGKILL) under load: every event answered 202 is stored once",
    async () => {
      await waitFor(
        "the new key to be loaded by the server",
        async () =>
          (
            await fetch(`${API}/v1/scans`, {
              method: "POST",
              headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
              body: JSON.stringify({
                event_id: crypto.randomUUID(),
                qr_id: "ci:probe",
                scanned_at: new Date().toISOString(),
              }),
            })
          ).status,
        (s) => s === 202,
        30_000,
        // Unknown-key answers count against the host's one address: probe slowly.
        2_000,
      );
      // A wide window between each batch's database commit and its offset commit (the worker's
      // fault knob), so the killed container dies holding rows stored but not committed: their
      // partitions' next owners must replay them as no-ops (counted below: the fault landed).
      await workersWithCommitDelay(400);
      const load = startLoad(key);
      await waitFor(
        "the load to be answered",
        async () => load.acknowledgedSoFar(),
        (n) => n >= 200,
        60_000,
      );
      const victim = ids("worker").find((id) => sum(workerMetrics(id), "worker_assigned_partitions") > 0) as string;
      const before = load.acknowledgedSoFar();
      // SIGKILL to the container's first process, as a crash (`docker kill` would count as a stop
      // the restart policy respects): the container dies with everything in it.
      process.kill(Number(inspect(victim, "{{.State.Pid}}")), "SIGKILL");
      await Bun.sleep(4_000);
      // The engine restarts it (restart: unless-stopped); the others take its partitions meanwhile.
      await waitFor(
        "the killed worker container to run again",
        async () => inspect(victim, "{{.State.Status}} {{.RestartCount}}"),
        (s) => s.startsWith("running") && !s.endsWith(" 0"),
        60_000,
        1_000,
      );
      await waitFor(
        "more answers after the kill",
        async () => load.acknowledgedSoFar(),
        (n) => n >= before + 500,
        60_000,
      );
      const result = await load.stop();
      expect(Object.keys(result.statuses)).toEqual(["202"]);
      const report = await waitStoredOnce(result.acknowledged, "the worker kill");
      const replayed = await waitFor(
        "the killed worker's stored-but-uncommitted rows replayed as no-ops by the partitions' next owners",
        async () => ids("worker").reduce((n, id) => n + sum(workerMetrics(id), "worker_rows_duplicate_total"), 0),
        (n) => n > 0,
        60_000,
        2_000,
      );
      console.log(
        `worker kill: ${report.acknowledged} acknowledged, all stored once; ${replayed} rows the killed worker had stored but not committed, replayed as no-ops`,
      );
      await workersWithCommitDelay(0);
    },
    300_000,
  );

  step(
    "Kafka broker containers killed under load: every 202 stored once; 503 (with Retry-After) only while a failover lasts or too few replicas are in sync",
    async () => {
      // A killed broker's partitions are unavailable until the controllers declare it gone
      // (broker.session.timeout.ms, 9 s), elect other leaders and take it out of the in-sync
      // replicas (acks=all waits for them); the edge answers 503 past its 10 s delivery timeout
      // meanwhile (runs here: up to 40 s, longer when it was the active controller). Partitions
      // recover one by one (each leader shrinks its own ISR), so a 202 on one partition does not
      // end the window for the others: the window is measured as the span of the 503s after the
      // kill, which must end within a minute; after it, with one broker of three down, no 503.
      const load = startLoad(key);
      await waitFor(
        "the load to be answered",
        async () => load.acknowledgedSoFar(),
        (n) => n >= 200,
        60_000,
      );
      const at = load.elapsedMs;
      const firstStoredFrom = (from: number) =>
        load.result.timeline.find(([t, status]) => t > from && status === 202)?.[0] ?? Number.POSITIVE_INFINITY;
      // What a wait for the first 202 since `from` reports when it times out: the answers since.
      const answersSince = (from: number) => {
        const since = load.result.timeline.filter(([t]) => t > from);
        const statuses: Record<string, number> = {};
        for (const [, status] of since) statuses[status] = (statuses[status] ?? 0) + 1;
        return { first202At: firstStoredFrom(from), statuses };
      };
      const [broker2] = ids("kafka-2");
      const [broker3] = ids("kafka-3");
      must(["docker", "kill", "-s", "KILL", broker2 as string]);
      const firstKill = at();
      await waitFor(
        "a request sent after the broker's kill answered 202 (the failover begun to end)",
        async () => answersSince(firstKill),
        (a) => Number.isFinite(a.first202At),
        90_000,
        500,
      );
      // Past the bound on the failover, then enough answers to see that none is a 503.
      await Bun.sleep(Math.max(0, firstKill + FAILOVER_BOUND_MS - at()));
      const steadyAcks = load.acknowledgedSoFar();
      await waitFor(
        "answers with one broker of three down, after the failover",
        async () => load.acknowledgedSoFar(),
        (n) => n >= steadyAcks + 300,
        90_000,
      );
      // A second node down: two of the three combined broker-controllers, so the controller quorum
      // is lost too and no leader or in-sync set can change; with at most one in-sync replica of
      // the two required, every request is refused. Requests sent in the last 12 s before the
      // restart may still be stored (the edge's delivery timeout is 10 s). Held 105 s, so that the
      // window checked below (45 s after the kill to 12 s before the restart) is 48 s: requests
      // answered only at their timeout were all in flight across an 18 s window once (none sent).
      must(["docker", "kill", "-s", "KILL", broker3 as string]);
      const secondKill = at();
      await Bun.sleep(105_000);
      compose(["start", "kafka-2", "kafka-3"]);
      const restarted = at();
      await waitFor(
        "a request sent after the restart answered 202",
        async () => answersSince(restarted),
        (a) => Number.isFinite(a.first202At),
        RECOVERY_BOUND_MS,
        500,
      );
      await Bun.sleep(Math.max(0, restarted + RECOVERY_BOUND_MS - at()));
      const back = load.acknowledgedSoFar();
      await waitFor(
        "202s again once the brokers are back",
        async () => load.acknowledgedSoFar(),
        (n) => n >= back + 300,
        180_000,
      );
      const result = await load.stop();
      expect(Object.keys(result.statuses).sort()).toEqual(["202", "503"]);
      expect(result.withoutRetryAfter).toBe(0);
      const withoutQuorum = result.timeline.filter(([t]) => t >= secondKill + 45_000 && t <= restarted - 12_000);
      expect(withoutQuorum.length).toBeGreaterThanOrEqual(3);
      expect(withoutQuorum.filter(([, status]) => status !== 503)).toEqual([]);
      const unavailable = result.timeline.filter(([, status]) => status === 503).map(([t]) => t);
      const firstWindow = unavailable.filter((t) => t >= firstKill && t < secondKill);
      const outsideWindows = unavailable.filter(
        (t) =>
          !(
            (t >= firstKill && t < firstKill + FAILOVER_BOUND_MS) ||
            (t >= secondKill && t < restarted + RECOVERY_BOUND_MS)
          ),
      );
      expect({ outsideWindows }).toEqual({ outsideWindows: [] });
      const report = await waitStoredOnce(result.acknowledged, "the broker kills");
      const failover = firstWindow.length > 0 ? ((Math.max(...firstWindow) - firstKill) / 1000).toFixed(1) : "0";
      const recovery = unavailable.filter((t) => t >= restarted);
      console.log(
        `broker kills: ${report.acknowledged} acknowledged, all stored once; first failover: 503s for ${failover} s after the kill (${firstWindow.length} answered 503); ${unavailable.filter((t) => t >= secondKill).length} answered 503 with two brokers down, the last sent ${recovery.length > 0 ? ((Math.max(...recovery) - restarted) / 1000).toFixed(1) : "0"} s after the restart`,
      );
    },
    720_000,
  );

  step(
    "traces: the server and worker containers export spans, and one scan's trace continues from the edge into the worker (a parent, not only a link)",
    async () => {
      const traceId = hex(16);
      const clientSpan = hex(8);
      const res = await fetch(`${API}/v1/scans`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${key}`,
          "content-type": "application/json",
          traceparent: `00-${traceId}-${clientSpan}-01`,
        },
        body: JSON.stringify({
          event_id: crypto.randomUUID(),
          qr_id: "ci:traced",
          scanned_at: new Date().toISOString(),
        }),
      });
      expect(res.status).toBe(202);
      const spans = await waitFor(
        `spans of trace ${traceId} from the server and a worker, the worker's a child of the producer span`,
        async () => (await captured()).traces.flatMap(spansOf).filter((s) => s.traceId === traceId),
        (ss) => {
          const producer = ss.find((s) => s.kind === SPAN_KIND.PRODUCER);
          return !!producer && ss.some((s) => s.service.includes("worker") && s.parentSpanId === producer.spanId);
        },
        60_000,
        1_000,
      );
      const server = spans.find((s) => s.kind === SPAN_KIND.SERVER);
      expect(server?.parentSpanId).toBe(clientSpan);
      expect(new Set(spans.map((s) => s.service)).size).toBeGreaterThanOrEqual(2);
    },
    120_000,
  );

  step(
    "a dead letter keeps the scan's traceparent and event_id, and the worker's log line for it carries the trace id",
    async () => {
      const secrets = join(ROOT, ".secrets/kafka");
      const producer = new KafkaProducer({
        config: {
          "bootstrap.servers": "127.0.0.1:19092",
          "security.protocol": "sasl_ssl",
          "sasl.mechanisms": "SCRAM-SHA-512",
          "sasl.username": "ops",
          "sasl.password": readFileSync(join(secrets, "secrets/ops.password"), "utf8").trim(),
          "ssl.ca.location": join(secrets, "tls/ca.crt"),
          acks: "all",
        },
      });
      const traceId = hex(16);
      const traceparent = `00-${traceId}-${hex(8)}-01`;
      const eventId = crypto.randomUUID();
      const requestId = crypto.randomUUID();
      try {
        // What the edge never sends: a record that fails validation in the worker.
        await producer.send([
          {
            topic: "scans",
            key: "ci:poison",
            value: JSON.stringify({ event_id: eventId, qr_id: "ci:poison", scanned_at: "not a time" }),
            headers: { traceparent, request_id: requestId },
          },
        ]);
      } finally {
        await producer.close();
      }
      const line = await waitFor(
        `a worker log line about the dead letter with trace_id ${traceId}`,
        async () =>
          run(["docker-compose", "logs", "--no-color", "worker"])
            .stdout.split("\n")
            .find((l) => l.includes(traceId) && l.includes(eventId)) ?? "",
        (l) => l !== "",
        60_000,
        2_000,
      );
      expect(line).toContain(requestId);
      const stored = await waitFor(
        "the dead letter stored by a worker, with the scan's event_id and traceparent",
        () => db<{ traceparent: string | null }[]>`select traceparent from dead_letters where event_id = ${eventId}`,
        (rows) => rows.length === 1,
        60_000,
        1_000,
      );
      expect(stored[0]?.traceparent).toBe(traceparent);
      deadLetterStoredAt = Date.now();
      // The runbook's compose form (docs/runbooks/dead-letters.md) lists it: the ops service reads
      // dead letters, which the worker's role may not.
      const [{ id } = { id: "" }] = await db<
        { id: string }[]
      >`select id::text from dead_letters where event_id = ${eventId}`;
      const listed = compose(["run", "--rm", "-T", "ops", "bun", "jobs/dlq.ts", "list", "--limit", "10"]);
      expect(listed.split("\n").some((l) => l.startsWith(`${id}\t`))).toBe(true);
    },
    120_000,
  );

  step(
    "alerts fire in the Prometheus container and reach their receivers through the Alertmanager container: a page to the pager, a ticket to the ticket queue",
    async () => {
      const alertsAt = (receiver: string, c: Awaited<ReturnType<typeof captured>>) =>
        c.alerts.filter((a) => a.receiver === receiver).flatMap((a) => a.body.alerts.map((x) => x.labels));
      // The Postgres exporter stopped. Its scrape fails at once (TargetDown after its 2 minutes)
      // or, when the engine's DNS takes longer than the scrape timeout to say the name is gone,
      // times out like a hung Postgres (DatabaseDown, which then mutes that TargetDown): either way
      // one page for the postgres job.
      const pagedForPostgres = (c: Awaited<ReturnType<typeof captured>>) =>
        alertsAt("pager", c).filter(
          (l) => l.job === "postgres" && (l.alertname === "TargetDown" || l.alertname === "DatabaseDown"),
        );
      const got = await waitFor(
        "TargetDown or DatabaseDown {job=postgres} at the pager and DeadLettersAppearing at the ticket queue",
        captured,
        (c) =>
          pagedForPostgres(c).length > 0 && alertsAt("ticket", c).some((l) => l.alertname === "DeadLettersAppearing"),
        // Each alert's own `for:`, then up to two scrapes and evaluations (15 s each) and
        // Alertmanager's group_wait (30 s), with room: the later of the two faults sets the wait.
        Math.max(
          30_000,
          exporterStoppedAt + alertForMs("TargetDown") + ALERT_DELIVERY_MS - Date.now(),
          deadLetterStoredAt + alertForMs("DeadLettersAppearing") + ALERT_DELIVERY_MS - Date.now(),
        ),
        5_000,
      );
      expect(alertsAt("pager", got).every((l) => l.severity === "page")).toBe(true);
      expect(alertsAt("ticket", got).every((l) => l.severity === "ticket")).toBe(true);
      console.log(
        `alerts: the stopped exporter paged as ${[...new Set(pagedForPostgres(got).map((l) => l.alertname))].join(", ")}`,
      );
      compose(["start", "postgres-exporter"]);
    },
    900_000,
  );

  step(
    "logs: every container's real log lines through promtail's pipeline; the server's and workers' JSON lines parsed (level, their own time), ids kept in the line",
    async () => {
      const config = loadPromtailConfig(join(ROOT, "monitoring/promtail/config.yaml"));
      const containers = compose(["ps", "-q"])
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((id) => {
          const [c] = JSON.parse(must(["docker", "inspect", id])) as {
            Id: string;
            Name: string;
            LogPath: string;
            Config: { Labels: Record<string, string> | null };
          }[];
          if (!c) throw new Error(`docker inspect ${id} returned nothing`);
          return {
            id: c.Id,
            name: c.Name,
            labels: c.Config.Labels ?? {},
            lines: readFileSync(c.LogPath, "utf8")
              .split("\n")
              .filter(Boolean)
              .map((l) => JSON.parse(l) as { log: string; stream: string; time: string }),
          };
        });
      const checks = checkContainerLines(config, containers);
      expect(containerLogProblems(checks, ["server", "worker"])).toEqual([]);
      for (const service of ["server", "worker"]) {
        const parsed = checks
          .filter((c) => c.discovered.__meta_docker_container_label_com_docker_compose_service === service)
          .reduce((n, c) => n + c.jsonParsed, 0);
        expect({ service, parsed: parsed > 0 }).toEqual({ service, parsed: true });
      }
    },
    60_000,
  );

  step(
    "Postgres archives its WAL; a backup and the README's restore drill, then a drill verified against checksums marked on the live database",
    async () => {
      const archiver = () =>
        db<{ archived: number; failed: number }[]>`
          select archived_count::int as archived, failed_count::int as failed from pg_stat_archiver`;
      const [before] = await archiver();
      expect(before?.failed).toBe(0);
      const block = readme[2];
      const r = run(["bash", "--noprofile", "--norc", "-euo", "pipefail", "-c", block?.code ?? "false"], {
        timeoutMs: 600_000,
      });
      if (r.status !== 0)
        throw new Error(`README.md:${block?.line} exited with ${r.status}:\n${(r.stdout + r.stderr).slice(-4000)}`);
      const [after] = await archiver();
      expect(after?.archived ?? 0).toBeGreaterThan(before?.archived ?? 0);
      expect(after?.failed).toBe(0);

      // The verified drill: checksums and a restore point in one moment, then the drill cluster
      // restored up to that point must have the same checksums.
      const marked = await mark(db, "qrscan");
      const [switched] = await db<{ wal: string }[]>`select pg_walfile_name(pg_switch_wal()) as wal`;
      await waitFor(
        `the segment holding the restore point (${switched?.wal}) to be archived`,
        async () =>
          (await db<{ last: string | null }[]>`select last_archived_wal as last from pg_stat_archiver`)[0]?.last ?? "",
        (last) => last >= (switched?.wal ?? "~"),
        120_000,
        1_000,
      );
      const started = performance.now();
      env.DRILL_TARGET_NAME = marked.restorePoint;
      compose(["--profile", "drill", "up", "-d", "--no-deps", "restore-drill"], { timeoutMs: 60_000 });
      const drill = postgres(`postgres://postgres:${PASSWORD}@127.0.0.1:15442/qrscan`, { max: 1, onnotice: () => {} });
      try {
        await waitFor(
          "the drill cluster out of recovery",
          async () => (await drill<{ r: boolean }[]>`select pg_is_in_recovery() as r`)[0]?.r,
          (inRecovery) => inRecovery === false,
          180_000,
          1_000,
        );
        const rto = (performance.now() - started) / 1000;
        const diff = differences(marked.checksums, await checksums(drill));
        expect(diff).toEqual([]);
        console.log(`restore drill: to restore point ${marked.restorePoint} in ${rto.toFixed(1)} s, checksums equal`);
      } finally {
        await drill.end({ timeout: 2 });
        compose(["--profile", "drill", "rm", "-fsv", "restore-drill"]);
      }
    },
    600_000,
  );
});
