// Alertmanager's routing, live on Debian's prometheus-alertmanager started the way compose and the
// local stack start it: monitoring/alertmanager/start.sh renders the committed alertmanager.yml with
// the receivers' URLs from secret files. This test's two receivers (pager, ticket) listen on
// 127.0.0.1; alerts are posted to Alertmanager's API as Prometheus posts them. Only the waits
// differ from the committed file (group_wait and group_interval 1 s instead of 30 s and 5 min).
// A page must arrive at the pager only and a ticket at the ticket queue only, and Kubernetes'
// staging (and dev) alerts, pages included, at the ticket queue; a stall is one alert per topic
// (the rule's shape) and two workers' view of one cause one notification; a broker down in one
// namespace must inhibit that namespace's EdgeUnavailable and not another's; DatabaseDown inhibits
// its namespace's ConsumerStalled, and a dead Postgres exporter (TargetDown) inhibits nothing.
// Then: the local stack's own Alertmanager runs through start.sh with the stack's receiver.
//
// Mutations this test catches (each tried once, then reverted):
// | mutation                                                        | what fails                            |
// | alertmanager.yml: the page route's receiver: ticket             | no page at the pager in 20 s          |
// | alertmanager.yml: instance back in group_by                     | 2 WorkerStalledPartitions notifications |
// | alertmanager.yml: the dev/staging → ticket route removed        | staging's pages at the pager          |
// | alertmanager.yml: TargetDown{job=postgres} inhibits the stall   | prod's ConsumerStalled never paged    |
// | alertmanager.yml: no equal on the kafka → EdgeUnavailable rule  | staging's EdgeUnavailable never sent  |
// | start.sh: pager and ticket placeholders swapped                 | the page arrives at the ticket queue  |
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killProcess, spawnUntilReady } from "../../tools/harness.ts";
import {
  ALERTMANAGER_CONFIG,
  ALERTMANAGER_START,
  alertmanagerArgs,
  alertmanagerEnv,
  monitoringPaths,
} from "../../tools/stack/monitoring.ts";
import { onCleanup } from "../helpers/cleanup.ts";
import { freePort } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

interface Notification {
  status: "firing" | "resolved";
  alerts: { status: string; labels: Record<string, string>; annotations?: Record<string, string> }[];
}

const logTail = (file: string) => {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "";
  }
};

/** A webhook receiver on 127.0.0.1 that keeps every notification it gets. */
function captureReceiver() {
  const got: Notification[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      got.push((await req.json()) as Notification);
      return new Response("ok");
    },
  });
  onCleanup(() => server.stop(true));
  return { url: `http://127.0.0.1:${server.port}/hook`, got };
}

/** Every alert a receiver got, as "alertname{label=value,...}" (alertname and severity left out). */
const alertsAt = (got: Notification[]) =>
  got.flatMap((n) =>
    n.alerts.map((a) => {
      const { alertname, severity: _s, ...rest } = a.labels;
      const labels = Object.entries(rest)
        .sort(([x], [y]) => x.localeCompare(y))
        .map(([k, v]) => `${k}=${v}`);
      return `${alertname}{${labels.join(",")}}`;
    }),
  );

test("a page reaches the pager only, a ticket the ticket queue only; one cause is one page; inhibition stays in its namespace", async () => {
  const dir = mkdtempSync(join(tmpdir(), "alert-routing-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const pager = captureReceiver();
  const ticket = captureReceiver();

  // The committed template, only without its 30 s / 5 min waits.
  const template = readFileSync(ALERTMANAGER_CONFIG, "utf8");
  for (const wait of ["group_wait: 30s", "group_interval: 5m"]) expect(template).toContain(wait);
  writeFileSync(
    join(dir, "template.yml"),
    template.replace("group_wait: 30s", "group_wait: 1s").replace("group_interval: 5m", "group_interval: 1s"),
  );
  writeFileSync(join(dir, "pager_url"), `${pager.url}\n`);
  writeFileSync(join(dir, "ticket_url"), `${ticket.url}\n`);

  const port = freePort();
  const am = `http://127.0.0.1:${port}`;
  const log = join(dir, "alertmanager.log");
  const proc = await spawnUntilReady({
    name: "Alertmanager (monitoring/alertmanager/start.sh)",
    cmd: ["sh", ALERTMANAGER_START, ...alertmanagerArgs(join(dir, "data"), port)],
    env: alertmanagerEnv({
      pagerUrlFile: join(dir, "pager_url"),
      ticketUrlFile: join(dir, "ticket_url"),
      configOut: join(dir, "alertmanager.yml"),
      template: join(dir, "template.yml"),
    }),
    output: { file: log },
    readyUrl: `${am}/-/ready`,
    readyTimeoutMs: 30_000,
  }).catch((error: Error) => {
    throw new Error(`${error.message}; its log:\n${logTail(log)}`);
  });
  onCleanup(() => killProcess(proc));

  // As Prometheus sends them (labels and annotations; no endsAt: resolve_timeout applies), shaped
  // as the committed rules make them: ConsumerStalled is one alert per topic (count by namespace,
  // job, topic), its summary carrying the number of stalled partitions.
  const PROD = "qrscan-prod";
  const STAGING = "qrscan-staging";
  const stalled = (namespace: string, partitions: number) => ({
    labels: { alertname: "ConsumerStalled", severity: "page", namespace, job: "supervisor", topic: "scans" },
    summary: `scans: ${partitions} stalled partition(s), pending work and no commit for over 60 s`,
  });
  const alerts: { labels: Record<string, string>; summary?: string }[] = [
    // prod: the Postgres exporter is dead (TargetDown only, no DatabaseDown): the stall it cannot
    // explain still pages.
    stalled(PROD, 12),
    {
      labels: { alertname: "TargetDown", severity: "page", namespace: PROD, job: "postgres", instance: "pg-exp:9187" },
    },
    // One cause seen by two workers: one ticket notification (group_by has no instance).
    ...["10.0.0.7:9470", "10.0.0.8:9470"].map((instance) => ({
      labels: { alertname: "WorkerStalledPartitions", severity: "ticket", namespace: PROD, job: "worker", instance },
    })),
    // The broker down in prod: inhibits prod's EdgeUnavailable, not staging's.
    { labels: { alertname: "TargetDown", severity: "page", namespace: PROD, job: "kafka", instance: "kafka-0:9404" } },
    { labels: { alertname: "EdgeUnavailable", severity: "page", namespace: PROD, job: "server" } },
    // staging: its pages go to the ticket queue; its database down inhibits its own stall.
    { labels: { alertname: "EdgeUnavailable", severity: "page", namespace: STAGING, job: "server" } },
    {
      labels: {
        alertname: "DatabaseDown",
        severity: "page",
        namespace: STAGING,
        job: "postgres",
        instance: "pg-exp:9187",
      },
    },
    stalled(STAGING, 12),
    // No namespace (compose, the local stack): by severity.
    { labels: { alertname: "DeadLettersAppearing", severity: "ticket", job: "worker" } },
  ];
  const posted = await fetch(`${am}/api/v2/alerts`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(
      alerts.map(({ labels, summary }) => ({ labels, annotations: { summary: summary ?? labels.alertname } })),
    ),
  });
  expect(posted.status, await posted.text()).toBe(200);

  const expectedPages = [
    "ConsumerStalled{job=supervisor,namespace=qrscan-prod,topic=scans}",
    "TargetDown{instance=kafka-0:9404,job=kafka,namespace=qrscan-prod}",
    "TargetDown{instance=pg-exp:9187,job=postgres,namespace=qrscan-prod}",
  ];
  const expectedTickets = [
    "DatabaseDown{instance=pg-exp:9187,job=postgres,namespace=qrscan-staging}",
    "DeadLettersAppearing{job=worker}",
    "EdgeUnavailable{job=server,namespace=qrscan-staging}",
    "WorkerStalledPartitions{instance=10.0.0.7:9470,job=worker,namespace=qrscan-prod}",
    "WorkerStalledPartitions{instance=10.0.0.8:9470,job=worker,namespace=qrscan-prod}",
  ];
  const seen = () => ({ pager: alertsAt(pager.got).sort(), ticket: alertsAt(ticket.got).sort() });
  await waitFor(
    "every posted alert but the inhibited ones delivered to a receiver",
    async () => seen(),
    (s) =>
      expectedPages.every((a) => s.pager.includes(a) || s.ticket.includes(a)) &&
      expectedTickets.every((a) => s.ticket.includes(a) || s.pager.includes(a)),
    20_000,
    100,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; Alertmanager's log:\n${logTail(log)}`);
  });
  // Three group intervals more: nothing else arrives (no late split group, no inhibited alert).
  await Bun.sleep(3_000);
  expect(seen()).toEqual({ pager: expectedPages, ticket: expectedTickets });

  // The stall of every partition is one page, for the topic, with the count in its summary.
  const stallNotices = pager.got.filter((n) => n.alerts.some((a) => a.labels.alertname === "ConsumerStalled"));
  expect(stallNotices.map((n) => n.alerts.length)).toEqual([1]);
  expect(stallNotices[0]?.alerts[0]?.annotations?.summary).toBe(stalled(PROD, 12).summary);
  // Two workers, one cause: one notification.
  const workerNotices = ticket.got.filter((n) =>
    n.alerts.some((a) => a.labels.alertname === "WorkerStalledPartitions"),
  );
  expect(workerNotices.map((n) => n.alerts.length)).toEqual([2]);

  // Staging's stall is inhibited by staging's DatabaseDown; prod's, beside a dead exporter, is not.
  const stalls = (await fetch(`${am}/api/v2/alerts?filter=alertname%3D%22ConsumerStalled%22`).then((r) =>
    r.json(),
  )) as { labels: Record<string, string>; status: { inhibitedBy: string[] } }[];
  expect(Object.fromEntries(stalls.map((a) => [a.labels.namespace, a.status.inhibitedBy.length > 0]))).toEqual({
    [PROD]: false,
    [STAGING]: true,
  });

  // The inhibition landed in prod (so staging's page above is not an inhibition that never works).
  const edge = (await fetch(`${am}/api/v2/alerts?filter=alertname%3D%22EdgeUnavailable%22`).then((r) => r.json())) as {
    labels: Record<string, string>;
    status: { inhibitedBy: string[] };
  }[];
  const inhibited = Object.fromEntries(edge.map((a) => [a.labels.namespace, a.status.inhibitedBy.length > 0]));
  expect(inhibited).toEqual({ "qrscan-prod": true, "qrscan-staging": false });
}, 60_000);

test("the local stack's Alertmanager runs on start.sh's rendering, delivering to the stack's receiver", async () => {
  const stack = await ensureStack();
  const p = monitoringPaths(stack);
  // What the running Alertmanager loaded: the receivers' URLs from the stack's secret files.
  const status = (await fetch(`http://127.0.0.1:${stack.alertmanagerPort}/api/v2/status`).then((r) => r.json())) as {
    config: { original: string };
  };
  const loaded = Bun.YAML.parse(status.config.original) as {
    receivers: { name: string; webhook_configs: { url: string }[] }[];
  };
  const receiver = `http://127.0.0.1:${stack.alertReceiverPort}`;
  expect(loaded.receivers.map((r) => [r.name, r.webhook_configs.map((w) => w.url)])).toEqual([
    ["pager", [`${receiver}/pager`]],
    ["ticket", [`${receiver}/ticket`]],
  ]);
  expect(readFileSync(p.pagerUrlFile, "utf8").trim()).toBe(`${receiver}/pager`);

  // The receiver writes each alert of a notification to the alerts log.
  const probe = `AlertRoutingProbe${Date.now()}`;
  const res = await fetch(`${receiver}/ticket`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      status: "firing",
      alerts: [
        { status: "firing", labels: { alertname: probe, job: "test" }, annotations: { summary: "from a test" } },
      ],
    }),
  });
  expect(res.status).toBe(200);
  const line = readFileSync(p.alertsLog, "utf8")
    .split("\n")
    .find((l) => l.includes(probe));
  expect(line).toMatch(new RegExp(`^\\S+Z ticket firing ${probe} \\{job="test"\\} from a test$`));
  expect((await fetch(`${receiver}/elsewhere`, { method: "POST", body: "{}" })).status).toBe(404);
});
