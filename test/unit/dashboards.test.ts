// The Grafana dashboards are generated from dashboards/src/ (@grafana/grafana-foundation-sdk) and
// committed as dashboards/*.json: the committed files must be exactly the generator's output, read
// the provisioned Prometheus data source, and cover what issue 10 asks of them. The PromQL in them
// is run against a real Prometheus by test/integration/promql.test.ts. They must also work where
// the targets differ (Kubernetes: pod and namespace labels, no file-target `worker` label), and
// Prometheus must keep as much history as the longest range a panel asks for.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DASHBOARDS_DIR, dashboardModels, renderDashboards } from "../../dashboards/src/generate.ts";
import {
  NAMESPACE_ALL,
  NAMESPACE_MATCHER,
  dashboardExpressions,
  dashboardFiles,
  panelsOf,
  ruleExpressions,
  selectors,
  substituteGrafanaVariables,
  withMatcher,
} from "../../dashboards/src/promql.ts";
import { prometheusArgs, prometheusTargets } from "../../tools/stack/monitoring.ts";

const DATASOURCES = new URL("../../monitoring/grafana/provisioning/datasources/datasources.yaml", import.meta.url)
  .pathname;

describe("generated dashboards", () => {
  const rendered = renderDashboards();

  test("the committed dashboards/*.json are exactly `bun run dashboards`'s output, and nothing else", () => {
    expect(dashboardFiles()).toEqual(Object.keys(rendered).sort());
    for (const [file, text] of Object.entries(rendered)) {
      expect({ file, text: readFileSync(join(DASHBOARDS_DIR, file), "utf8") }).toEqual({ file, text });
    }
  });

  test("every query reads the provisioned Prometheus data source (uid prometheus)", () => {
    const provisioned = Bun.YAML.parse(readFileSync(DATASOURCES, "utf8")) as {
      datasources: { uid: string; type: string }[];
    };
    expect(provisioned.datasources).toContainEqual(expect.objectContaining({ uid: "prometheus", type: "prometheus" }));
    let targets = 0;
    for (const model of Object.values(dashboardModels())) {
      for (const panel of panelsOf(model as never)) {
        for (const t of panel.targets ?? []) {
          targets++;
          expect({ panel: panel.title, ds: t.datasource }).toEqual({
            panel: panel.title,
            ds: { type: "prometheus", uid: "prometheus" },
          });
          expect(t.expr?.trim().length).toBeGreaterThan(0);
        }
      }
    }
    expect(targets).toBe(dashboardExpressions().expressions.length);
  });

  test("dashboard uids are unique and stable, panel ids unique within a dashboard", () => {
    const models = Object.values(dashboardModels());
    const uids = models.map((m) => m.uid);
    expect(uids).toEqual(["qrscan-edge", "qrscan-pipeline", "qrscan-slo", "qrscan-database", "qrscan-broker"]);
    for (const m of models) {
      const ids = (m.panels ?? []).map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
    }
  });

  test("they cover what the issue asks: traffic, latency vs SLO, errors, events, lag, rows, commit age, freshness, dead letters, DB and pgbouncer, broker, burn rate", () => {
    const exprs = dashboardExpressions().expressions.map((e) => e.expr);
    const uses = (re: RegExp) => exprs.some((e) => re.test(e));
    const required: [string, RegExp][] = [
      ["RPS", /rate\(http_requests_total\{namespace=~"\$namespace"\}\[/],
      ["latency percentiles", /histogram_quantile\(0\.95, sum by \(le\) \(rate\(http_request_duration_seconds_bucket/],
      ["share within 40 ms", /http_request_duration_seconds_bucket\{route="\/v1\/scans", le="0\.04"/],
      ["share within 400 ms", /http_request_duration_seconds_bucket\{route="\/v1\/scans", le="0\.4"/],
      [
        "errors by status",
        /sum by \(status\) \(rate\(http_requests_total\{route="\/v1\/scans", status=~"\[45\]\.\.", namespace=~"\$namespace"\}/,
      ],
      ["rate-limited by scope", /sum by \(scope\) \(rate\(rate_limited_total\{namespace=~"\$namespace"\}\[/],
      ["accepted and rejected", /sum by \(outcome\) \(rate\(scan_events_total\{namespace=~"\$namespace"\}\[/],
      [
        "rejected by reason",
        /sum by \(reason\) \(rate\(scan_events_total\{outcome="rejected", namespace=~"\$namespace"\}/,
      ],
      ["committed lag per partition", /max by \(topic, partition\) \(consumer_group_lag\{/],
      ["rows/s", /rate\(worker_rows_inserted_total\{namespace=~"\$namespace"\}\[/],
      ["commit age", /consumer_group_commit_age_seconds/],
      ["stalled seconds", /consumer_group_stalled_seconds/],
      ["freshness p95", /histogram_quantile\(0\.95, sum by \(le\) \(rate\(scan_event_freshness_seconds_bucket/],
      ["freshness SLI", /scan_event_freshness_seconds_bucket\{le="1", namespace=~"\$namespace"\}/],
      ["dead letters", /worker_dead_letters_total/],
      ["Postgres connections vs max", /pg_stat_database_numbackends\{.*\}\) \/ max\(pg_settings_max_connections\{/],
      ["pgbouncer waiting", /pgbouncer_waiting_clients/],
      ["pgbouncer max wait", /pgbouncer_max_wait_seconds/],
      ["under-replicated", /kafka_server_replicamanager_underreplicatedpartitions/],
      ["offline partitions", /kafka_controller_kafkacontroller_offlinepartitionscount/],
      ["latency burn rate", /qrscan:http_request_slow_ratio:rate1h\{namespace=~"\$namespace"\} \/ 0\.05/],
    ];
    expect(required.filter(([, re]) => !uses(re)).map(([what]) => what)).toEqual([]);
    // Every recording rule is on a dashboard.
    const records = ruleExpressions()
      .filter((r) => r.kind === "record")
      .map((r) => r.source.split(": ")[1] as string);
    expect(records.length).toBeGreaterThan(0);
    expect(records.filter((name) => !exprs.some((e) => e.includes(name)))).toEqual([]);
  });
});

/** `[30d]`, `[5m:1m]`, `offset 1h`: a range's length in seconds. */
const SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
const seconds = (duration: string) =>
  [...duration.matchAll(/(\d+)(ms|[smhdwy])/g)].reduce(
    (sum, m) => sum + Number(m[1]) * (SECONDS[m[2] as string] ?? 0),
    0,
  );
const rangesOf = (expr: string) =>
  [...expr.matchAll(/\[(\w+)(?::\w*)?\]|offset\s+(\w+)/g)].map((m) => seconds((m[1] ?? m[2]) as string));

describe("dashboards outside the local stack (Kubernetes, compose)", () => {
  const { expressions } = dashboardExpressions();

  test("no panel groups by a label only the local stack's file targets add (e.g. worker)", () => {
    // The labels the local file_sd targets attach per target: Kubernetes and compose have none of them.
    const fileOnly = new Set(
      Object.values(
        prometheusTargets(
          { kafkaNodes: [{ jmxExporterPort: 1 }], postgresExporterPort: 2, pgbouncerExporterPort: 3 } as never,
          { server: 4, firstWorker: 5, workers: 2, supervisor: 6 },
        ),
      ).flatMap((yaml) =>
        [...yaml.matchAll(/labels: \{([^}]*)\}/g)].flatMap((m) =>
          [...(m[1] as string).matchAll(/(\w+):/g)].map((l) => l[1] as string),
        ),
      ),
    );
    expect([...fileOnly]).toContain("worker");
    const groupings = expressions.flatMap((e) =>
      [...e.expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].map((m) => ({
        source: e.source,
        labels: (m[1] as string).split(",").map((l) => l.trim()),
      })),
    );
    expect(groupings.filter((g) => g.labels.some((l) => fileOnly.has(l)))).toEqual([]);
    expect(expressions.filter((e) => /\{\{worker\}\}/.test(JSON.stringify(e)))).toEqual([]);
    // Per-process panels name the process by what every environment has.
    const perProcess = groupings.filter((g) => g.labels.includes("instance"));
    expect(perProcess.length).toBeGreaterThan(0);
    expect(perProcess.filter((g) => !g.labels.includes("pod")).map((g) => g.source)).toEqual(
      // The broker's exporters are not pods of ours: their `instance` is all there is.
      perProcess
        .filter((g) => g.source.startsWith("dashboards/broker.json"))
        .map((g) => g.source),
    );
  });

  test("every dashboard has the $namespace variable, All = .* (matching series without the label)", () => {
    for (const [name, model] of Object.entries(dashboardModels())) {
      const v = (model.templating?.list ?? []).find((x) => x.name === "namespace") as
        | { type: string; query: string; includeAll: boolean; allValue: string; current: { value: string } }
        | undefined;
      expect({ name, v }).toEqual({
        name,
        v: expect.objectContaining({
          type: "query",
          query: expect.stringContaining("label_values("),
          includeAll: true,
          allValue: NAMESPACE_ALL,
          current: expect.objectContaining({ value: "$__all" }),
        }),
      });
    }
    // `=~".*"` is what lets the dashboards work where no series has a namespace label.
    expect(new RegExp(`^(?:${NAMESPACE_ALL})$`).test("")).toBe(true);
  });

  test("every selector of every target filters on $namespace", () => {
    expect(expressions.length).toBeGreaterThan(0);
    const missing = expressions.flatMap((e) =>
      selectors(e.expr)
        .filter((s) => !s.matchers.includes(NAMESPACE_MATCHER))
        .map((s) => `${e.source}: ${s.text}`),
    );
    expect(missing).toEqual([]);
  });

  test("withMatcher adds the matcher to bare, labelled and name-less selectors, nothing else", () => {
    expect(withMatcher('sum by (le) (rate(a{b="}"}[5m])) / c offset 1h + time() - {__name__="d"}', 'n="x"')).toBe(
      'sum by (le) (rate(a{b="}", n="x"}[5m])) / c{n="x"} offset 1h + time() - {__name__="d", n="x"}',
    );
  });

  test("Prometheus keeps at least the longest range any panel queries (local stack, compose, Kubernetes's documented flags)", () => {
    const longest = Math.max(...expressions.flatMap((e) => rangesOf(substituteGrafanaVariables(e.expr))));
    expect(longest).toBeGreaterThanOrEqual(30 * 86400);
    const flag = (args: string[]) => {
      const v = args.find((a) => a.startsWith("--storage.tsdb.retention.time="))?.split("=")[1];
      // Prometheus's default when the flag is absent.
      return seconds(v ?? "15d");
    };
    const compose = Bun.YAML.parse(readFileSync(new URL("../../compose.yaml", import.meta.url), "utf8")) as {
      services: { prometheus: { command: string[] } };
    };
    const kept = {
      "tools/stack/monitoring.ts": flag(prometheusArgs("p.yml", "data", 1)),
      "compose.yaml": flag(compose.services.prometheus.command),
      // No Prometheus Deployment ships for Kubernetes: its flags are documented there.
      "docs/deployment.md": flag(
        readFileSync(new URL("../../docs/deployment.md", import.meta.url), "utf8").match(
          /--storage\.tsdb\.retention\.time=[0-9a-z]+/g,
        ) ?? [],
      ),
    };
    expect(Object.entries(kept).filter(([, s]) => s < longest)).toEqual([]);
    expect(rangesOf("rate(x[1h]) + y[5m:1m] offset 2d")).toEqual([3600, 300, 172800]);
  });
});

describe("PromQL selectors (the extraction the live check relies on)", () => {
  const names = (expr: string) => selectors(expr).map((s) => s.text);

  test("finds metric names with their matchers, skipping functions, aggregations, grouping, strings and durations", () => {
    expect(
      names(
        'sum by (job, le) (rate(http_request_duration_seconds_bucket{route="/v1/scans", le="0.4"}[5m])) / on (job) group_left (x) max without (instance) (foo:bar offset 10m) > bool 1e-3',
      ),
    ).toEqual(['http_request_duration_seconds_bucket{route="/v1/scans", le="0.4"}', "foo:bar"]);
    expect(names('a{b="}{"} and count(c) or topk(3, d[1h:5m]) unless {__name__="e"}')).toEqual([
      'a{b="}{"}',
      "c",
      "d",
      '{__name__="e"}',
    ]);
    expect(selectors('{__name__="e", x="y"}')[0]?.name).toBe("e");
    expect(names("time() - consumer_group_lag_last_success_timestamp_seconds > 60")).toEqual([
      "consumer_group_lag_last_success_timestamp_seconds",
    ]);
    expect(names("histogram_quantile(0.95, x) * 100 + Inf - NaN")).toEqual(["x"]);
  });

  test("Grafana's $__rate_interval is substituted; an unknown variable is an error", () => {
    expect(substituteGrafanaVariables("rate(x[$__rate_interval])")).toBe("rate(x[60s])");
    expect(substituteGrafanaVariables('x{namespace=~"$namespace"}')).toBe('x{namespace=~".*"}');
    expect(() => substituteGrafanaVariables('x{job="$job"}')).toThrow(/\$job/);
  });

  test("every dashboard and rule expression names at least one metric", () => {
    const all = [...dashboardExpressions().expressions, ...ruleExpressions()];
    expect(all.filter((e) => selectors(substituteGrafanaVariables(e.expr)).length === 0)).toEqual([]);
  });
});
