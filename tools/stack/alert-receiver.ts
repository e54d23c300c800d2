// The local stack's alert receiver: Alertmanager's pager and ticket webhooks point here (the stack
// writes their URLs into the secret files monitoring/alertmanager/start.sh reads), so a developer
// sees what would have paged or ticketed, and Alertmanager logs no failed delivery. Each alert of
// each notification is one line of the alerts log ($STACK_DIR/monitoring/alerts.log):
//   2025-01-01T12:00:00.000Z pager firing ConsumerStalled {job="supervisor",partition="3",...} summary
// Run by tools/stack/monitoring.ts: bun tools/stack/alert-receiver.ts PORT LOG_FILE (127.0.0.1 only).
import { appendFileSync } from "node:fs";

/** The receivers of monitoring/alertmanager/alertmanager.yml, each at /<name>. */
export const ALERT_RECEIVERS = ["pager", "ticket"] as const;

/** What Alertmanager's webhook posts (the fields used here). */
export interface WebhookNotification {
  status: string;
  alerts: { status: string; labels: Record<string, string>; annotations?: Record<string, string> }[];
}

/** One line per alert: when, which receiver, its status, name, other labels and summary. */
export function alertLines(receiver: string, notification: WebhookNotification, at = new Date()): string {
  return notification.alerts
    .map((a) => {
      const { alertname, ...rest } = a.labels;
      const labels = Object.entries(rest)
        .sort(([x], [y]) => x.localeCompare(y))
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join(",");
      const summary = a.annotations?.summary ?? "";
      return `${at.toISOString()} ${receiver} ${a.status} ${alertname ?? "?"} {${labels}}${summary ? ` ${summary}` : ""}\n`;
    })
    .join("");
}

if (import.meta.main) {
  const [portArg, logFile] = process.argv.slice(2);
  const port = Number(portArg);
  if (!Number.isInteger(port) || port < 1 || port > 65535 || !logFile) {
    throw new Error("usage: bun tools/stack/alert-receiver.ts PORT LOG_FILE");
  }
  Bun.serve({
    hostname: "127.0.0.1",
    port,
    async fetch(req) {
      const name = new URL(req.url).pathname.slice(1);
      if (req.method === "GET" && name === "") return new Response("qrscan local alert receiver\n");
      if (req.method !== "POST" || !(ALERT_RECEIVERS as readonly string[]).includes(name)) {
        return new Response(`no receiver here: POST /${ALERT_RECEIVERS.join(" or /")}\n`, { status: 404 });
      }
      const body = (await req.json().catch(() => null)) as WebhookNotification | null;
      if (!Array.isArray(body?.alerts))
        return new Response("not an Alertmanager webhook notification\n", { status: 400 });
      appendFileSync(logFile, alertLines(name, body));
      return new Response("ok\n");
    },
  });
  console.log(`alert receiver: 127.0.0.1:${port} (/${ALERT_RECEIVERS.join(", /")}), alerts in ${logFile}`);
}
