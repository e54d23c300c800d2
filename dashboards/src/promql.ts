// Every PromQL expression Grafana and Prometheus would run: the committed dashboards' panel targets
// and every alert and recording rule of monitoring/prometheus/rules/. Used by
// test/unit/dashboards.test.ts and test/integration/promql.test.ts (which runs each against the
// local stack's Prometheus, as Grafana cannot run here).
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

export const DASHBOARDS_DIR = new URL("..", import.meta.url).pathname;
export const RULES_DIR = new URL("../../monitoring/prometheus/rules", import.meta.url).pathname;

export interface Expression {
  /** Where it comes from: "dashboards/edge.json: <panel title> [A]" or "rules/edge.yml: <alert or record name>". */
  source: string;
  kind: "panel" | "alert" | "record";
  expr: string;
}

interface PanelJson {
  title?: string;
  type?: string;
  targets?: { expr?: string; refId?: string; datasource?: { type?: string; uid?: string } }[];
  panels?: PanelJson[];
}

/** Panels of a dashboard model, with those nested in collapsed rows. */
export function panelsOf(model: { panels?: PanelJson[] }): PanelJson[] {
  return (model.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
}

export function dashboardFiles(): string[] {
  return readdirSync(DASHBOARDS_DIR)
    .filter((f) => f.endsWith(".json"))
    .sort();
}

/** Every target's expression of every committed dashboard, and how many panels have targets. */
export function dashboardExpressions(): { expressions: Expression[]; panelsWithTargets: number } {
  const expressions: Expression[] = [];
  let panelsWithTargets = 0;
  for (const file of dashboardFiles()) {
    const model = JSON.parse(readFileSync(join(DASHBOARDS_DIR, file), "utf8")) as { panels?: PanelJson[] };
    for (const panel of panelsOf(model)) {
      if (!panel.targets?.length) continue;
      panelsWithTargets++;
      for (const t of panel.targets) {
        expressions.push({
          source: `dashboards/${file}: ${panel.title} [${t.refId}]`,
          kind: "panel",
          expr: t.expr ?? "",
        });
      }
    }
  }
  return { expressions, panelsWithTargets };
}

interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[];
}

/** Every alert and recording rule's expression. */
export function ruleExpressions(): Expression[] {
  return readdirSync(RULES_DIR)
    .filter((f) => f.endsWith(".yml") || f.endsWith(".yaml"))
    .sort()
    .flatMap((file) =>
      (Bun.YAML.parse(readFileSync(join(RULES_DIR, file), "utf8")) as RuleFile).groups.flatMap((g) =>
        g.rules.map(
          (r): Expression => ({
            source: `rules/${file}: ${r.alert ?? r.record}`,
            kind: r.alert ? "alert" : "record",
            expr: r.expr,
          }),
        ),
      ),
    );
}

/**
 * The dashboards' `$namespace` variable: the Kubernetes namespace (qrscan-dev, -staging, -prod).
 * Its "All" value is `.*`, which also matches a series with no namespace label at all, as on the
 * local stack and in compose, whose scrape targets have none.
 */
export const NAMESPACE_VARIABLE = "namespace";
export const NAMESPACE_ALL = ".*";
export const NAMESPACE_MATCHER = `namespace=~"$${NAMESPACE_VARIABLE}"`;

/**
 * Grafana's variables, as it would substitute them: $__rate_interval is at least four scrape
 * intervals (4 × 15 s); $__interval is the step; $namespace is its "All" value. Any other
 * variable is an error here.
 */
export function substituteGrafanaVariables(expr: string, scrapeIntervalS = 15): string {
  const out = expr
    .replaceAll(`$${NAMESPACE_VARIABLE}`, NAMESPACE_ALL)
    .replaceAll("$__rate_interval", `${4 * scrapeIntervalS}s`)
    .replaceAll("$__interval", `${scrapeIntervalS}s`);
  const left = /\$\{?[A-Za-z_]\w*/.exec(out);
  if (left) throw new Error(`unsupported dashboard variable ${left[0]} in: ${expr}`);
  return out;
}

export interface Selector {
  /** The metric name, or undefined for a selector with no name (`{__name__=~"..."}`). */
  name: string | undefined;
  /** The label matchers as written, without the braces ("" if none). */
  matchers: string;
  /** The selector itself, as an instant-vector query. */
  text: string;
  /** Where it is in the expression: [start, end) of the name and braces as written. */
  start: number;
  end: number;
}

const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "offset",
  "bool",
  "and",
  "or",
  "unless",
  "inf",
  "nan",
  "atan2",
]);
/** Aggregation operators: `sum by (x) (...)` puts the grouping between the name and its parenthesis. */
const AGGREGATORS = new Set([
  "sum",
  "min",
  "max",
  "avg",
  "group",
  "stddev",
  "stdvar",
  "count",
  "count_values",
  "bottomk",
  "topk",
  "quantile",
  "limitk",
  "limit_ratio",
]);
/** Keywords followed by a parenthesised list of label names (not selectors). */
const LABEL_LISTS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);

/**
 * The vector selectors of a PromQL expression (metric names with their label matchers). A small
 * tokenizer, not a full parser: strings, durations ([5m], offset 10m), numbers, function names and
 * grouping label lists are skipped. Prometheus itself checks the syntax (the integration test
 * queries every expression); this only has to find the names and matchers.
 */
export function selectors(expr: string): Selector[] {
  const out: Selector[] = [];
  let i = 0;
  const n = expr.length;
  const skipString = (quote: string) => {
    i++;
    while (i < n && expr[i] !== quote) i += expr[i] === "\\" ? 2 : 1;
    i++;
  };
  /** From an opening brace at i, the matchers text; leaves i after the closing brace. */
  const readBraces = () => {
    const start = i + 1;
    while (i < n && expr[i] !== "}") {
      if (expr[i] === '"' || expr[i] === "'" || expr[i] === "`") skipString(expr[i] as string);
      else i++;
    }
    i++;
    return expr.slice(start, i - 1).trim();
  };
  const skipSpace = () => {
    while (i < n && /\s/.test(expr[i] as string)) i++;
  };
  while (i < n) {
    const c = expr[i] as string;
    if (c === '"' || c === "'" || c === "`") skipString(c);
    else if (c === "#") {
      while (i < n && expr[i] !== "\n") i++;
    } else if (c === "[") {
      while (i < n && expr[i] !== "]") i++;
      i++;
    } else if (c === "{") {
      const start = i;
      const matchers = readBraces();
      out.push({
        name: /__name__\s*=\s*"([^"]+)"/.exec(matchers)?.[1],
        matchers,
        text: `{${matchers}}`,
        start,
        end: i,
      });
    } else if (/[0-9.]/.test(c)) {
      while (i < n && /[0-9a-zA-Z.+\-_]/.test(expr[i] as string)) {
        // 1e-3, 0x1f, 10m: stop at an operator that is not an exponent sign
        if ((expr[i] === "+" || expr[i] === "-") && !/[eE]/.test(expr[i - 1] as string)) break;
        i++;
      }
    } else if (/[A-Za-z_:]/.test(c)) {
      const start = i;
      while (i < n && /[A-Za-z0-9_:]/.test(expr[i] as string)) i++;
      const word = expr.slice(start, i);
      const wordEnd = i;
      skipSpace();
      if (LABEL_LISTS.has(word.toLowerCase()) && expr[i] === "(") {
        while (i < n && expr[i] !== ")") i++;
        i++;
      } else if (word.toLowerCase() === "offset") {
        while (i < n && /[0-9a-zA-Z-]/.test(expr[i] as string)) i++;
      } else if (KEYWORDS.has(word.toLowerCase()) || AGGREGATORS.has(word.toLowerCase())) {
        // an operator or a constant
      } else if (expr[i] === "(") {
        // a function call
      } else if (expr[i] === "{") {
        const matchers = readBraces();
        out.push({ name: word, matchers, text: `${word}{${matchers}}`, start, end: i });
      } else {
        out.push({ name: word, matchers: "", text: word, start, end: wordEnd });
      }
    } else i++;
  }
  return out;
}

/**
 * `expr` with `matcher` (e.g. `namespace=~"$namespace"`) added to every vector selector, so one
 * dashboard variable filters every query without each panel's source repeating it.
 */
export function withMatcher(expr: string, matcher: string): string {
  let out = expr;
  for (const s of selectors(expr).reverse()) {
    const name = s.matchers.length > 0 || s.text.startsWith("{") ? s.text.slice(0, s.text.indexOf("{")) : s.text;
    const matchers = s.matchers ? `${s.matchers}, ${matcher}` : matcher;
    out = `${out.slice(0, s.start)}${name}{${matchers}}${out.slice(s.end)}`;
  }
  return out;
}
