// The stall alert, end to end on real components: real workers under load on the local stack's
// Kafka and Postgres, a real Prometheus evaluating the committed rule files
// (monitoring/prometheus/rules/) and a real Alertmanager started by monitoring/alertmanager/start.sh
// on the committed alertmanager.yml, whose pager route delivers to a webhook receiver this test runs
// on 127.0.0.1. The stall is real: another session
// holds scan_events locked (as in worker-stall.test.ts), so the worker's write waits with no error.
// Then the lock is released, and the alert must resolve and the resolution be delivered.
// Only intervals differ from the committed configuration (scrape and evaluation every 1 s instead
// of 15 s; Alertmanager's group_wait/group_interval 1 s), so the time to fire is the rule's own:
// stalled_seconds > 60 for 1m, about two minutes.
//
// Mutations this test catches (each tried once, then reverted):
// | mutation                                                        | what fails                          |
// | alertmanager.yml: send_resolved: false                          | no resolved notification in 90 s    |
// | consumer.yml: ConsumerStalled threshold 600 s instead of 60 s   | not firing within 4 min of the lock |
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killProcess, spawnUntilReady } from "../../tools/harness.ts";
import {
  ALERTMANAGER_CONFIG,
  ALERTMANAGER_START,
  PROMETHEUS_CONFIG,
  alertmanagerArgs,
  alertmanagerEnv,
  preparePrometheusDir,
  prometheusArgs,
  prometheusEnv,
} from "../../tools/stack/monitoring.ts";
import {
  createDatabase,
  createProducer,
  lockScanEvents,
  onCleanup,
  spawnSupervisor,
  workerEnv,
} from "../helpers/fixtures.ts";
import { tally } from "../helpers/postgres.ts";
import { freePort } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { events, produceEvents } from "../helpers/worker.ts";

await ensureStack();

interface Notification {
  receivedAt: number;
  /** The receiver's path: /pager or /ticket. */
  path: string;
  status: "firing" | "resolved";
  alerts: { status: string; labels: Record<string, string>; annotations: Record<string, string> }[];
}

/** `text` with each [from, to] replaced; fails if a `from` is not in it (the committed file changed). */
function override(text: string, pairs: [string, string][]): string {
  let out = text;
  for (const [from, to] of pairs) {
    expect(out).toContain(from);
    out = out.replaceAll(from, to);
  }
  return out;
}

const logTail = (file: string) => {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "";
  }
};

/** Prometheus or Alertmanager from the stack's own arguments, logging to `log`, stopped by pid after the test. */
async function startMonitoring(
  name: string,
  cmd: string[],
  log: string,
  readyUrl: string,
  env?: Record<string, string>,
) {
  const proc = await spawnUntilReady({ name, cmd, env, output: { file: log }, readyUrl, readyTimeoutMs: 30_000 }).catch(
    (error: Error) => {
      throw new Error(`${error.message}; its log:\n${logTail(log)}`);
    },
  );
  onCleanup(() => killProcess(proc));
  return proc;
}

test("a real stall: Prometheus fires ConsumerStalled, Alertmanager delivers it, then it resolves", async () => {
  const dir = mkdtempSync(join(tmpdir(), "alert-stall-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));

  // The webhook receiver: every notification Alertmanager sends, with when it arrived.
  const notifications: Notification[] = [];
  const receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      notifications.push({
        receivedAt: Date.now(),
        path: new URL(req.url).pathname,
        ...((await req.json()) as Omit<Notification, "receivedAt" | "path">),
      });
      return new Response("ok");
    },
  });
  onCleanup(() => receiver.stop(true));

  // Real workers (a supervisor with two) on this test's topic and database.
  const db = await createDatabase();
  const env = await workerEnv(db.url, 3);
  const {
    proc: supervisor,
    workerPort,
    supervisorPort,
  } = await spawnSupervisor(env, {
    workers: 2,
    extra: {
      // The write waits on the lock without an error for the whole test.
      DB_STATEMENT_TIMEOUT_MS: "600000",
      LAG_INTERVAL_MS: "1000",
      SHUTDOWN_TIMEOUT_MS: "2000",
    },
  });

  // Alertmanager: the committed config without its 30 s / 5 min waits, started by start.sh with
  // our receiver's URLs in the secret files.
  const amPort = freePort();
  const template = join(dir, "alertmanager.template.yml");
  writeFileSync(
    template,
    override(readFileSync(ALERTMANAGER_CONFIG, "utf8"), [
      ["group_wait: 30s", "group_wait: 1s"],
      ["group_interval: 5m", "group_interval: 1s"],
    ]),
  );
  writeFileSync(join(dir, "pager_url"), `http://127.0.0.1:${receiver.port}/pager\n`);
  writeFileSync(join(dir, "ticket_url"), `http://127.0.0.1:${receiver.port}/ticket\n`);
  const amLog = join(dir, "alertmanager.log");
  await startMonitoring(
    "Alertmanager",
    ["sh", ALERTMANAGER_START, ...alertmanagerArgs(join(dir, "am-data"), amPort)],
    amLog,
    `http://127.0.0.1:${amPort}/-/ready`,
    alertmanagerEnv({
      pagerUrlFile: join(dir, "pager_url"),
      ticketUrlFile: join(dir, "ticket_url"),
      configOut: join(dir, "alertmanager.yml"),
      template,
    }),
  );

  // Prometheus: the committed prometheus.yml and rules, scraping this test's supervisor and workers.
  const promPort = freePort();
  const none = "[]\n";
  const promConfig = preparePrometheusDir(
    join(dir, "prometheus"),
    {
      server: none,
      worker: `- targets: ["127.0.0.1:${workerPort}", "127.0.0.1:${workerPort + 1}"]\n`,
      supervisor: `- targets: ["127.0.0.1:${supervisorPort}"]\n`,
      kafka: none,
      postgres: none,
      pgbouncer: none,
      alertmanager: `- targets: ["127.0.0.1:${amPort}"]\n`,
      prometheus: `- targets: ["127.0.0.1:${promPort}"]\n`,
    },
    override(readFileSync(PROMETHEUS_CONFIG, "utf8"), [
      ["scrape_interval: 15s", "scrape_interval: 1s"],
      ["scrape_timeout: 10s", "scrape_timeout: 1s"],
      ["evaluation_interval: 15s", "evaluation_interval: 1s"],
    ]),
  );
  const promLog = join(dir, "prometheus.log");
  const prom = `http://127.0.0.1:${promPort}`;
  await startMonitoring(
    "Prometheus",
    ["prometheus", ...prometheusArgs(promConfig, join(dir, "prom-data"), promPort)],
    promLog,
    `${prom}/-/ready`,
    prometheusEnv(),
  );
  const query = async (q: string) => {
    const res = (await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(q)}`).then((r) => r.json())) as {
      data: { result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    return res.data.result;
  };
  const stallAlerts = async () => {
    const res = (await fetch(`${prom}/api/v1/alerts`).then((r) => r.json())) as {
      data: { alerts: { labels: Record<string, string>; state: string }[] };
    };
    return res.data.alerts.filter((a) => a.labels.alertname === "ConsumerStalled" && a.labels.topic === env.scansTopic);
  };

  // Load: 100 events every 250 ms for the whole test.
  const producer = createProducer();
  let produced = 0;
  let loading = true;
  const load = (async () => {
    while (loading) {
      await produceEvents(producer, env.scansTopic, events(100, 30));
      produced += 100;
      await Bun.sleep(250);
    }
  })();
  onCleanup(async () => {
    loading = false;
    await load;
  });

  // Healthy first: Prometheus scrapes both workers and the supervisor, rows flow, no stall.
  await waitFor(
    "Prometheus scraping the supervisor and both workers (up == 1)",
    () => query('up{job=~"supervisor|worker"}'),
    (r) => r.length === 3 && r.every((s) => s.value[1] === "1"),
    60_000,
    500,
  );
  await waitFor(
    "rows flowing and the committed lag series in Prometheus",
    async () => ({ rows: (await tally(db.sql)).rows, lag: await query("consumer_group_lag") }),
    (x) => x.rows >= 1_000 && x.lag.length === 3,
    60_000,
    500,
  );
  expect(await stallAlerts()).toEqual([]);

  // The fault: scan_events locked by another session.
  const lock = await lockScanEvents(db.directUrl);
  const faultAt = Date.now();

  const firing = await waitFor(
    "Prometheus to evaluate ConsumerStalled to firing (committed rule: stalled > 60 s for 1m)",
    stallAlerts,
    (a) => a.some((x) => x.state === "firing"),
    4 * 60_000,
    1_000,
  );
  const firingAt = Date.now();
  expect(firing.find((a) => a.state === "firing")?.labels.severity).toBe("page");
  const delivered = await waitFor(
    `Alertmanager to deliver ConsumerStalled to the pager webhook (alertmanager log: ${logTail(amLog)})`,
    async () => notifications.filter((n) => n.status === "firing"),
    (ns) => ns.some((n) => n.alerts.some((a) => a.labels.alertname === "ConsumerStalled")),
    60_000,
    250,
  );
  const deliveredAt = delivered[0]?.receivedAt ?? Number.NaN;
  // A page: the pager receiver's route, never the ticket queue.
  expect(delivered[0]?.path).toBe("/pager");
  const stallElsewhere = notifications.filter(
    (n) => n.path !== "/pager" && n.alerts.some((a) => a.labels.alertname === "ConsumerStalled"),
  );
  expect(stallElsewhere).toEqual([]);
  const alert = delivered[0]?.alerts.find((a) => a.labels.alertname === "ConsumerStalled");
  expect(alert?.labels.topic).toBe(env.scansTopic);
  expect(alert?.labels.severity).toBe("page");
  expect(alert?.annotations.runbook_url).toBe(`${prometheusEnv().RUNBOOK_BASE}/consumer-stalled.md`);
  // One alert for the topic (not one per partition), its value the number of stalled partitions.
  const summary = alert?.annotations.summary ?? "";
  expect(summary.startsWith(`${env.scansTopic}: `), summary).toBe(true);
  const stalledPartitions = Number(
    /^(\d+) stalled partition\(s\), /.exec(summary.slice(env.scansTopic.length + 2))?.[1],
  );
  expect(stalledPartitions, summary).toBeGreaterThanOrEqual(1);
  expect(alert?.labels).not.toHaveProperty("partition");
  // Not early: the rule cannot hold before 60 s of stall plus its minute of "for".
  const stallNotices = notifications.filter((n) => n.alerts.some((a) => a.labels.alertname === "ConsumerStalled"));
  expect(stallNotices.filter((n) => n.receivedAt < faultAt + 60_000)).toEqual([]);
  // The bound: a stall pages within 5 minutes.
  expect(deliveredAt - faultAt).toBeLessThan(5 * 60_000);

  // Undo the fault: the rows are stored, the alert resolves and the resolution is delivered.
  await lock.release();
  const releasedAt = Date.now();
  const resolved = await waitFor(
    "a resolved ConsumerStalled notification",
    async () => notifications.filter((n) => n.status === "resolved"),
    (ns) => ns.some((n) => n.alerts.some((a) => a.labels.alertname === "ConsumerStalled")),
    90_000,
    250,
  );
  const resolvedAt = resolved[0]?.receivedAt ?? Number.NaN;
  expect(await stallAlerts()).toEqual([]);

  loading = false;
  await load;
  await waitFor(
    `all ${produced} produced rows stored`,
    () => tally(db.sql),
    (t) => t.rows === produced,
    60_000,
    500,
  );
  console.log(
    `alert-stall: fault -> firing in Prometheus ${((firingAt - faultAt) / 1000).toFixed(1)} s, -> delivered ${((deliveredAt - faultAt) / 1000).toFixed(1)} s; release -> resolved delivered ${((resolvedAt - releasedAt) / 1000).toFixed(1)} s`,
  );

  supervisor.kill("SIGTERM");
  expect(await supervisor.exited).toBe(0);
}, 420_000);
