// Alertmanager's routing, live on Debian's prometheus-alertmanager started the way compose and the
// local stack start it: monitoring/alertmanager/start.sh renders the committed alertmanager.yml with
// the receivers' URLs from secret files. This test's two receivers (pager, ticket) listen on
// 127.0.0.1; alerts are posted to Alertmanager's API as Prometheus posts them. Only the waits
// differ from the committed file (group_wait and group_interval 1 s instead of 30 s and 5 min).
// A page must arrive at the pager only and a ticket at the ticket queue only; the twelve stalled
// partitions of one cause (here three) must be one notification; a broker down in one namespace
// must inhibit that namespace's EdgeUnavailable and not another's.
// Then: the local stack's own Alertmanager runs through start.sh with the stack's receiver.
//
// Mutations this test catches (each tried once, then reverted):
// | mutation                                                        | what fails                            |
// | alertmanager.yml: the page route's receiver: ticket             | no page at the pager in 20 s          |
// | alertmanager.yml: partition back in group_by                    | 3 ConsumerStalled notifications       |
// | alertmanager.yml: no equal on the kafka → EdgeUnavailable rule  | staging's EdgeUnavailable never paged |
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
  alerts: { status: string; labels: Record<string, string> }[];
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

  // As Prometheus sends them (labels only; no endsAt: resolve_timeout applies).
  const alerts: Record<string, string>[] = [
    // One cause: a hung pooler stalls every partition.
    ...[0, 1, 2].map((p) => ({
      alertname: "ConsumerStalled",
      severity: "page",
      job: "supervisor",
      topic: "scans",
      partition: String(p),
    })),
    { alertname: "DeadLettersAppearing", severity: "ticket", job: "worker" },
    // The broker down in prod: inhibits prod's EdgeUnavailable, not staging's.
    { alertname: "TargetDown", severity: "page", job: "kafka", instance: "kafka-0:9404", namespace: "qrscan-prod" },
    { alertname: "EdgeUnavailable", severity: "page", job: "server", namespace: "qrscan-prod" },
    { alertname: "EdgeUnavailable", severity: "page", job: "server", namespace: "qrscan-staging" },
  ];
  const posted = await fetch(`${am}/api/v2/alerts`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(alerts.map((labels) => ({ labels, annotations: { summary: labels.alertname } }))),
  });
  expect(posted.status, await posted.text()).toBe(200);

  const expectedPages = [
    "ConsumerStalled{job=supervisor,partition=0,topic=scans}",
    "ConsumerStalled{job=supervisor,partition=1,topic=scans}",
    "ConsumerStalled{job=supervisor,partition=2,topic=scans}",
    "EdgeUnavailable{job=server,namespace=qrscan-staging}",
    "TargetDown{instance=kafka-0:9404,job=kafka,namespace=qrscan-prod}",
  ];
  const expectedTickets = ["DeadLettersAppearing{job=worker}"];
  const seen = () => ({ pager: alertsAt(pager.got).sort(), ticket: alertsAt(ticket.got).sort() });
  await waitFor(
    "every posted alert but the inhibited one delivered to a receiver",
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

  // One notification for the three stalled partitions (group_by has no partition).
  const stallNotices = pager.got.filter((n) => n.alerts.some((a) => a.labels.alertname === "ConsumerStalled"));
  expect(stallNotices.map((n) => n.alerts.length)).toEqual([3]);

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
