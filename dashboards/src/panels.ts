// Shared building blocks of the generated dashboards (@grafana/grafana-foundation-sdk): every query
// reads the Prometheus data source provisioned with uid "prometheus"
// (monitoring/grafana/provisioning/datasources/datasources.yaml). Rates use Grafana's
// $__rate_interval; test/integration/promql.test.ts substitutes it when it runs every expression
// against the local stack's Prometheus.
import type * as cog from "@grafana/grafana-foundation-sdk/cog";
import * as common from "@grafana/grafana-foundation-sdk/common";
import * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import { DataqueryBuilder } from "@grafana/grafana-foundation-sdk/prometheus";
import { PanelBuilder as StatBuilder } from "@grafana/grafana-foundation-sdk/stat";
import { PanelBuilder as TimeseriesBuilder } from "@grafana/grafana-foundation-sdk/timeseries";
import { NAMESPACE_ALL, NAMESPACE_MATCHER, NAMESPACE_VARIABLE, withMatcher } from "./promql.ts";

export const PROMETHEUS: common.DataSourceRef = { type: "prometheus", uid: "prometheus" };

/** `rate(<selector>[$__rate_interval])`. */
export const rate = (selector: string) => `rate(${selector}[$__rate_interval])`;

/** The q-quantile of a histogram's buckets over all instances. */
export const quantile = (q: number, metric: string, matchers = "") =>
  `histogram_quantile(${q}, sum by (le) (${rate(`${metric}_bucket${matchers ? `{${matchers}}` : ""}`)}))`;

/** Share of a histogram's observations at or under `le` (a bucket boundary), over all instances. */
export const shareUnder = (metric: string, le: string, matchers = "") => {
  const m = matchers ? `${matchers}, ` : "";
  return `sum(${rate(`${metric}_bucket{${m}le="${le}"}`)}) / sum(${rate(`${metric}_count${matchers ? `{${matchers}}` : ""}`)})`;
};

export interface Query {
  expr: string;
  legend: string;
}

/**
 * Every selector of every query gets the $namespace matcher here, once, so one Prometheus that
 * scrapes dev, staging and prod never mixes them on a panel (and no panel can forget it).
 */
function target(q: Query, refId: string) {
  return new DataqueryBuilder()
    .datasource(PROMETHEUS)
    .expr(withMatcher(q.expr, NAMESPACE_MATCHER))
    .legendFormat(q.legend)
    .refId(refId);
}

const refIds = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** Red threshold lines (or regions) at the given values: the SLO or alert thresholds of a panel. */
function thresholds(lines: number[]) {
  return new dashboard.ThresholdsConfigBuilder()
    .mode(dashboard.ThresholdsMode.Absolute)
    .steps([
      { value: null, color: "green" },
      ...lines.map((value, i) => ({ value, color: i === lines.length - 1 ? "red" : "orange" })),
    ]);
}

export interface PanelOptions {
  title: string;
  description: string;
  unit: string;
  queries: Query[];
  /** Drawn as dashed lines: the SLO or alert thresholds, ascending. */
  thresholdLines?: number[];
  width?: number;
  height?: number;
  min?: number;
  max?: number;
  stacked?: boolean;
}

export function timeseries(o: PanelOptions): cog.Builder<dashboard.Panel> {
  const p = new TimeseriesBuilder()
    .title(o.title)
    .description(o.description)
    .datasource(PROMETHEUS)
    .unit(o.unit)
    .span(o.width ?? 12)
    .height(o.height ?? 8)
    .lineWidth(1)
    .fillOpacity(o.stacked ? 30 : 10)
    .legend(
      new common.VizLegendOptionsBuilder()
        .showLegend(true)
        .displayMode(common.LegendDisplayMode.Table)
        .placement(common.LegendPlacement.Bottom)
        .calcs(["lastNotNull", "max"]),
    )
    .tooltip(
      new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Multi).sort(common.SortOrder.Descending),
    );
  if (o.min !== undefined) p.min(o.min);
  if (o.max !== undefined) p.max(o.max);
  if (o.stacked) p.stacking(new common.StackingConfigBuilder().mode(common.StackingMode.Normal));
  if (o.thresholdLines?.length) {
    p.thresholds(thresholds(o.thresholdLines)).thresholdsStyle(
      new common.GraphThresholdsStyleConfigBuilder().mode(common.GraphThresholdsStyleMode.Dashed),
    );
  }
  o.queries.forEach((q, i) => p.withTarget(target(q, refIds[i] as string)));
  return p;
}

/** One number (the last value), coloured by the thresholds. */
export function stat(o: PanelOptions): cog.Builder<dashboard.Panel> {
  const p = new StatBuilder()
    .title(o.title)
    .description(o.description)
    .datasource(PROMETHEUS)
    .unit(o.unit)
    .span(o.width ?? 6)
    .height(o.height ?? 4)
    .colorMode(common.BigValueColorMode.Background)
    .graphMode(common.BigValueGraphMode.Area)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(["lastNotNull"]));
  if (o.thresholdLines?.length) p.thresholds(thresholds(o.thresholdLines));
  o.queries.forEach((q, i) => p.withTarget(target(q, refIds[i] as string)));
  return p;
}

/**
 * Per process, the labels that name it everywhere: `instance` (the scrape address) on every
 * target, and `pod` where Kubernetes discovery adds it (empty on the local stack and in compose).
 */
export const BY_PROCESS = "pod, instance";
export const PROCESS_LEGEND = "{{pod}} {{instance}}";

/**
 * The Kubernetes namespace, from the series' own labels. "All" (the default) is `.*`, which also
 * matches series without the label, so the dashboards work unchanged where nothing sets it.
 */
function namespaceVariable() {
  return new dashboard.QueryVariableBuilder(NAMESPACE_VARIABLE)
    .label("Namespace")
    .description("Kubernetes namespace (qrscan-dev, qrscan-staging, qrscan-prod); All also shows series without one.")
    .datasource(PROMETHEUS)
    .query(`label_values(up, ${NAMESPACE_VARIABLE})`)
    .definition(`label_values(up, ${NAMESPACE_VARIABLE})`)
    .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
    .sort(dashboard.VariableSort.AlphabeticalAsc)
    .includeAll(true)
    .allValue(NAMESPACE_ALL)
    .current({ text: "All", value: "$__all", selected: true });
}

export function newDashboard(uid: string, title: string, description: string) {
  return new dashboard.DashboardBuilder(title)
    .withVariable(namespaceVariable())
    .uid(uid)
    .description(description)
    .tags(["qrscan-ingest", "generated"])
    .readonly()
    .refresh("30s")
    .time({ from: "now-1h", to: "now" })
    .timezone("browser")
    .tooltip(dashboard.DashboardCursorSync.Crosshair)
    .link(
      new dashboard.DashboardLinkBuilder("qrscan-ingest")
        .type(dashboard.DashboardLinkType.Dashboards)
        .tags(["qrscan-ingest"])
        .asDropdown(true)
        .includeVars(false)
        .keepTime(true),
    );
}

export const row = (title: string) => new dashboard.RowBuilder(title);
