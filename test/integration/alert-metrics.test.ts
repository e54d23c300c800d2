// The local stack's monitoring, live: Prometheus scrapes the broker's JMX exporter, the Postgres
// and pgbouncer exporters, Alertmanager and itself; and every exporter metric the committed alert
// rules name is really exported under that name (a rule on a misspelt metric never fires).
// The app's own metrics (server, worker, supervisor) are covered by alert-stall.test.ts and the
// promtool tests; these are the names that come from third-party exporters.
import { expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { PROMETHEUS_RULES } from "../../tools/stack/monitoring.ts";
import { ensureStack, stack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

const exporters = {
  kafka: `http://127.0.0.1:${stack.kafkaJmxExporterPort}/metrics`,
  postgres: `http://127.0.0.1:${stack.postgresExporterPort}/metrics`,
  pgbouncer: `http://127.0.0.1:${stack.pgbouncerExporterPort}/metrics`,
} as const;
const PREFIX = /\b((?:kafka_server|kafka_controller|pg|pgbouncer)_[a-z0-9_]+)\b/g;

test("every exporter metric the alert rules use is exported by the stack's real exporters", async () => {
  const exprs = readdirSync(PROMETHEUS_RULES)
    .filter((f) => f.endsWith(".yml"))
    .flatMap((f) =>
      (
        Bun.YAML.parse(readFileSync(join(PROMETHEUS_RULES, f), "utf8")) as { groups: { rules: { expr: string }[] }[] }
      ).groups
        .flatMap((g) => g.rules)
        .map((r) => r.expr),
    );
  const names = new Set(exprs.flatMap((e) => [...e.matchAll(PREFIX)].map((m) => m[1] as string)));
  // Under-replicated, offline, pgbouncer waiting, numbackends, max_connections at least.
  expect(names.size).toBeGreaterThanOrEqual(5);
  const exported = new Set<string>();
  for (const url of Object.values(exporters)) {
    const text = await fetch(url).then((r) => r.text());
    for (const line of text.split("\n")) {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
      if (m) exported.add(m[1] as string);
    }
  }
  expect([...names].filter((n) => !exported.has(n))).toEqual([]);
});

test("the stack's Prometheus scrapes the broker, Postgres, pgbouncer, Alertmanager and itself", async () => {
  const prom = `http://127.0.0.1:${stack.prometheusPort}`;
  const jobs = ["kafka", "postgres", "pgbouncer", "alertmanager", "prometheus"];
  // A freshly started Prometheus scrapes every 15 s: allow two rounds.
  const up = await waitFor(
    `up == 1 for ${jobs.join(", ")} in ${prom}`,
    async () => {
      const res = (await fetch(`${prom}/api/v1/query?query=up`).then((r) => r.json())) as {
        data: { result: { metric: { job: string }; value: [number, string] }[] };
      };
      return Object.fromEntries(res.data.result.map((s) => [s.metric.job, s.value[1]]));
    },
    (byJob) => jobs.every((j) => byJob[j] === "1"),
    40_000,
    1_000,
  );
  expect(Object.keys(up)).toEqual(expect.arrayContaining(jobs));
  // The app's jobs are configured too. Their targets follow the last `stack up` or `dev` (a test's
  // dev run moves them to its own ports), so this asks for the scrape pools, not for an `up` series.
  const targets = (await fetch(`${prom}/api/v1/targets?state=active`).then((r) => r.json())) as {
    data: { activeTargets: { scrapePool: string }[] };
  };
  const pools = new Set(targets.data.activeTargets.map((t) => t.scrapePool));
  expect([...pools].sort()).toEqual([...jobs, "server", "worker", "supervisor"].sort());
  const rules = (await fetch(`${prom}/api/v1/rules`).then((r) => r.json())) as {
    data: { groups: { rules: { health: string; name: string }[] }[] };
  };
  const all = rules.data.groups.flatMap((g) => g.rules);
  expect(all.length).toBeGreaterThanOrEqual(20);
  expect(all.filter((r) => r.health === "err")).toEqual([]);
});
