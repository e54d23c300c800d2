// Every PromQL expression of the committed dashboards (each panel target) and of the rule files
// (each alert and recording rule), run against the local stack's real Prometheus after real demo
// traffic, since Grafana cannot run here. The edge server and a worker pool with its supervisor
// run on the very ports the stack's Prometheus scrapes (read from its /api/v1/targets, so they
// follow the dev ports `stack up` was given), on a throwaway topic and database; the traffic
// includes rejected events and one undecodable record (a dead letter).
// For each expression:
//   - Prometheus parses and evaluates it (HTTP 200, status success);
//   - every metric name it selects has a live series in Prometheus (recording rules count once
//     they have evaluated);
//   - every selector, with its label matchers, returns at least one series now: the app
//     pre-initialises its labelled series to 0, so an empty selector is a wrong label set;
//   - a dashboard expression or a recording rule returns data (alerts may rightly be empty).
// The test fails if it checked fewer expressions than there are panels with targets plus rules.
// pgbouncer: compose runs the same exporter as the stack (Debian's, through
// monitoring/pgbouncer-exporter/run.py), so one set of names is checked.
//
// Mutations this test catches (each tried once, then reverted):
// | mutation                                                                | what fails                              |
// | dashboards/pipeline.json: worker_rows_inserted_total -> worker_rows_insrted_total | metric not in Prometheus; no data |
// | dashboards/edge.json: status=~"[45].." -> status="599"                   | selector returns no series              |
import { expect, test } from "bun:test";
import {
  type Expression,
  dashboardExpressions,
  ruleExpressions,
  selectors,
  substituteGrafanaVariables,
} from "../../dashboards/src/promql.ts";
import { newSecret } from "../../shared/api-keys.ts";
import { startEdgeServer } from "../../tools/edge-server.ts";
import { killProcess, spawnProcess, stopProcess } from "../../tools/harness.ts";
import { childPids } from "../../tools/pipeline.ts";
import { startTraffic } from "../../tools/scan-traffic.ts";
import { portOpen } from "../../tools/stack/processes.ts";
import { createDatabase, createProducer, onCleanup, workerEnv, workerProcessEnv } from "../helpers/fixtures.ts";
import { ensureStack, stack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

/** Metric names only a Kubernetes cluster exports (kube-state-metrics, kubelet, cAdvisor). */
const KUBERNETES_ONLY = /^(kube_|kubelet_|container_)/;
const PROM = `http://127.0.0.1:${stack.prometheusPort}`;
/** The committed scrape interval (prometheus.yml): $__rate_interval is four of them. */
const SCRAPE_INTERVAL_S = 15;

interface QueryResult {
  status: string;
  error?: string;
  data?: {
    resultType: string;
    result: { metric: Record<string, string>; value?: [number, string] }[] | [number, string];
  };
}

async function query(q: string): Promise<{ http: number; body: QueryResult }> {
  const res = await fetch(`${PROM}/api/v1/query`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ query: q }),
  });
  return { http: res.status, body: (await res.json()) as QueryResult };
}

const vector = async (q: string) => {
  const { body } = await query(q);
  return body.data?.resultType === "vector"
    ? (body.data.result as { metric: Record<string, string>; value: [number, string] }[])
    : [];
};

/** The app's scrape targets as the stack's Prometheus has them: job -> ports, in target order. */
async function appTargets(): Promise<Record<string, number[]>> {
  const res = (await fetch(`${PROM}/api/v1/targets?state=active`).then((r) => r.json())) as {
    data: { activeTargets: { labels: Record<string, string> }[] };
  };
  const byJob: Record<string, number[]> = {};
  for (const t of res.data.activeTargets) {
    const job = t.labels.job as string;
    const port = Number((t.labels.instance as string).split(":").pop());
    byJob[job] = [...(byJob[job] ?? []), port];
  }
  for (const ports of Object.values(byJob)) ports.sort((a, b) => a - b);
  return byJob;
}

test("every dashboard and rule expression parses, names only scraped metrics and selects existing series", async () => {
  const targets = await appTargets();
  const serverPort = targets.server?.[0];
  const workerPorts = targets.worker ?? [];
  const supervisorPort = targets.supervisor?.[0];
  if (!serverPort || !supervisorPort || workerPorts.length === 0) {
    throw new Error(`the stack's Prometheus has no server, worker or supervisor target: ${JSON.stringify(targets)}`);
  }
  // The supervisor gives worker i METRICS_PORT + i.
  expect(workerPorts).toEqual(workerPorts.map((_, i) => (workerPorts[0] as number) + i));
  for (const port of [serverPort, supervisorPort, ...workerPorts]) {
    if (await portOpen(port)) {
      throw new Error(
        `port ${port}, which the stack's Prometheus scrapes, is already in use (is \`bun run dev\` running?): stop it first`,
      );
    }
  }

  // A worker pool and supervisor, then the edge, on a throwaway topic and database.
  const db = await createDatabase();
  const env = await workerEnv(db.url, 6);
  const supervisor = spawnProcess({
    cmd: ["bun", "worker/supervisor.ts"],
    env: {
      ...workerProcessEnv(env),
      WORKER_POOL_SIZE: String(workerPorts.length),
      METRICS_PORT: String(workerPorts[0]),
      SUPERVISOR_METRICS_PORT: String(supervisorPort),
      LAG_INTERVAL_MS: "1000",
      SHUTDOWN_TIMEOUT_MS: "3000",
    },
  });
  onCleanup(async () => {
    const workers = childPids(supervisor.pid);
    await stopProcess(supervisor, 10_000);
    for (const pid of workers) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone with the supervisor
      }
    }
  });
  const PROMQL_API_KEY = newSecret();
  const { proc: server, url: apiUrl } = await startEdgeServer({
    metricsPort: serverPort,
    env: {
      // Auth on, with the managed keys' store (API_KEYS_DB, the default): its metrics are what
      // the ApiKeysStale rule reads, so they must be scraped too.
      AUTH_DISABLED: "false",
      API_KEY_SHA256: new Bun.CryptoHasher("sha256").update(PROMQL_API_KEY).digest("hex"),
      SCANS_TOPIC: env.scansTopic,
      DATABASE_URL: db.url,
    },
  });
  onCleanup(() => killProcess(server));

  // Demo traffic: 5% invalid events (rejections), 2% duplicates.
  const traffic = startTraffic({
    url: apiUrl,
    rate: 300,
    apiKey: PROMQL_API_KEY,
    invalidRatio: 0.05,
    duplicateRatio: 0.02,
  });
  onCleanup(() => traffic.stop());

  // Prometheus has scraped every job, seen rows stored and rejections over more than one scrape
  // of this run, and evaluated the recording rules on it.
  const jobs = ["server", "worker", "supervisor", "kafka", "postgres", "pgbouncer", "alertmanager", "prometheus"];
  const window = `${4 * SCRAPE_INTERVAL_S}s`;
  const checks: Record<string, string> = {
    up: `min by (job) (up{job=~"${jobs.join("|")}"})`,
    rows: `sum(rate(worker_rows_inserted_total[${window}]))`,
    rejected: `sum(rate(scan_events_total{outcome="rejected"}[${window}]))`,
    lag: `count(consumer_group_lag{topic="${env.scansTopic}"})`,
    slowRatio: 'count(qrscan:http_request_slow_ratio:rate5m{job="server"} >= 0)',
    // Two scrapes within $__rate_interval of each app process (the server, each worker, the
    // supervisor), so rate() and increase() over it have data for every one of them.
    rated: `count(count by (job, instance) (rate({__name__=~"http_requests_total|worker_batches_total|supervisor_worker_restarts_total"}[${window}])))`,
  };
  // Every recording rule evaluated on this data at least once: each rule group runs on its own
  // schedule, so one (the latency ratio) having a value says nothing of the others.
  const records = ruleExpressions()
    .filter((e) => e.kind === "record")
    .map((e) => e.source.slice(e.source.indexOf(": ") + 2));
  checks.records = `count(count by (__name__) ({__name__=~"${records.join("|")}"}))`;
  const appInstances = 2 + workerPorts.length;
  await waitFor(
    `the stack's Prometheus (${PROM}) to scrape every job (${jobs.join(", ")}) up, and see rows stored, rejected events, the test topic's lag, the latency recording rule, all ${records.length} recording rules, and two scrapes of each of the ${appInstances} app processes within ${window}`,
    async () => {
      const seen: Record<string, unknown> = {};
      for (const [k, q] of Object.entries(checks)) {
        const r = await vector(q);
        seen[k] =
          k === "up" ? Object.fromEntries(r.map((s) => [s.metric.job, s.value[1]])) : (r[0]?.value[1] ?? "none");
      }
      return seen;
    },
    (s) =>
      jobs.every((j) => (s.up as Record<string, string>)[j] === "1") &&
      ["rows", "rejected", "lag", "slowRatio"].every((k) => Number(s[k]) > 0) &&
      Number(s.rated) === appInstances &&
      Number(s.records) === records.length,
    180_000,
    2_000,
  );
  // Then one undecodable record produced around the edge, which a worker dead-letters: produced
  // once the workers have been scraped, so Prometheus sees the counter rise.
  const producer = createProducer();
  await producer.send([{ topic: env.scansTopic, key: "promql-test", value: "{not json" }]);
  await waitFor(
    "Prometheus to see the dead letter (increase of worker_dead_letters_total over 5m > 0)",
    async () => (await vector("sum(increase(worker_dead_letters_total[5m]))"))[0]?.value[1] ?? "none",
    (v) => Number(v) > 0,
    90_000,
    2_000,
  );

  // Every metric name with a live series now (the stopped processes of an earlier run left stale
  // markers, so their series do not count); recording rules included.
  const scraped = new Set((await vector('count by (__name__) ({__name__!=""})')).map((s) => s.metric.__name__));
  expect(scraped.size).toBeGreaterThan(100);

  const { expressions: panelExprs, panelsWithTargets } = dashboardExpressions();
  const rules = ruleExpressions();
  const all: Expression[] = [...panelExprs, ...rules];
  const problems: string[] = [];
  let checked = 0;
  const selectorSeries = new Map<string, number>();
  for (const e of all) {
    const promql = substituteGrafanaVariables(e.expr, SCRAPE_INTERVAL_S);
    const { http, body } = await query(promql);
    if (http !== 200 || body.status !== "success") {
      problems.push(`${e.source}: Prometheus answered ${http} ${body.error ?? ""} for: ${promql}`);
      continue;
    }
    const found = selectors(promql);
    if (found.length === 0) problems.push(`${e.source}: no metric found in: ${promql}`);
    for (const s of found) {
      // Kubernetes' own exporters (kube-state-metrics, the kubelet, cAdvisor) run nowhere here: the
      // rules on them (rules/kubernetes.yml) must parse, and are tested by promtool, not here.
      if (s.name && KUBERNETES_ONLY.test(s.name)) continue;
      if (!s.name || !scraped.has(s.name)) {
        problems.push(`${e.source}: metric ${s.name ?? s.text} has no series in Prometheus (typo, or not exported)`);
        continue;
      }
      let n = selectorSeries.get(s.text);
      if (n === undefined) {
        n = Number((await vector(`count(${s.text})`))[0]?.value[1] ?? 0);
        selectorSeries.set(s.text, n);
      }
      if (n === 0) problems.push(`${e.source}: selector ${s.text} returns no series (a label set that does not exist)`);
    }
    if (e.kind !== "alert") {
      const data = body.data;
      const empty = data?.resultType === "vector" && (data.result as unknown[]).length === 0;
      if (empty) problems.push(`${e.source}: returns no data after demo traffic: ${promql}`);
    }
    checked++;
  }
  console.log(
    `promql: ${checked} expressions checked (${panelExprs.length} panel targets of ${panelsWithTargets} panels, ${rules.length} rules), ${selectorSeries.size} distinct selectors`,
  );
  expect(problems).toEqual([]);
  expect(checked).toBe(all.length);
  expect(checked).toBeGreaterThanOrEqual(panelsWithTargets + rules.length);
  await traffic.stop();
}, 300_000);
