// The committed monitoring configuration (monitoring/): Prometheus's config, the alert rules and
// their promtool unit tests, Alertmanager's config; and the invariants that keep them honest:
// every alert has a runbook link, a summary and a description, and a promtool test that makes it
// fire and one where it does not; the committed file_sd targets are what the local stack writes for
// the default ports. Alertmanager: monitoring/alertmanager/start.sh run for real (Debian's sh and
// busybox sh, the public image's) with a stand-in Alertmanager binary that records its arguments,
// and amtool routing every rule's alert through the configuration it renders. The pgbouncer
// exporter (monitoring/pgbouncer-exporter/run.py) run for real against a closed and a hung port.
//
// Mutations these tests catch (each tried once, then reverted):
// | mutation                                                         | what fails                       |
// | alertmanager.yml: the page route's receiver: ticket               | routing: pages go to pager        |
// | alertmanager.yml: the severity="ticket" route removed             | routing: by its own route         |
// | alertmanager.yml: default receiver pager                          | unknown severity goes to ticket   |
// | alertmanager.yml: partition back in group_by                      | one notification per cause        |
// | alertmanager.yml: an inhibit rule without equal                   | inhibit rules have equal          |
// | start.sh: the scheme check removed                                | refuses (not http)                |
// | start.sh: the more-than-one-line check removed                    | refuses (two lines)               |
// | start.sh: the ' doubling removed (yaml_quoted prints the raw URL) | renders the URLs exactly          |
// | edge.yml: `sum by (job)` in EdgeErrorRatioHigh (namespace dropped) | namespace in every aggregation    |
// | budgets.yml: `sum by (namespace)` back to `sum(`                  | namespace in every aggregation    |
// | consumer.yml: the `for:` of WorkerStalledPartitions removed        | every alert waits (for:)          |
// | a runbook_url back to a repo path or a fixed host, or a missing file | runbook link (template, exists) |
// | a promtool test group without its external_labels              | promtool test rules; renders runbook_url |
// | compose.yaml or prometheusArgs without expand-external-labels     | runbook_base: each launcher…      |
// | deploy/k8s/prometheus/prometheus.yml: postgres at the 15 s default | a dead database … within the promise |
// | a new alert left out of docs/monitoring.md's table (or a stale row) | docs/monitoring.md lists every alert |
// | alertmanager.yml: the DatabaseDown/PoolerDown inhibition removed   | a dead database inhibits…         |
// | database.yml: DatabaseDown back to `(pg_up or up) == 0`            | promtool (a dead exporter: TargetDown only) |
// | database.yml: the timed-out threshold 3.5 -> 4.5 (or a job's timeout 3s) | …reaches the timed-out threshold |
// | kubernetes.yml: one selector without the product's namespaces      | …keep to the product's namespaces |
// | alertmanager.yml: the dev/staging route removed or after the page route | dev's and staging's pages…   |
// | run.py as before (connects at start, no pgbouncer_up)             | the pgbouncer exporter … (both)   |
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { selectors } from "../../dashboards/src/promql.ts";
import { localStack } from "../../shared/local-stack.ts";
import { killProcess, spawnUntilReady } from "../../tools/harness.ts";
import {
  ALERTMANAGER_CONFIG,
  ALERTMANAGER_START,
  EXPAND_EXTERNAL_LABELS,
  MONITORING_DIR,
  PGBOUNCER_EXPORTER,
  PROMETHEUS_CONFIG,
  PROMETHEUS_RULES,
  RUNBOOKS_DIR,
  appMetricsPorts,
  preparePrometheusDir,
  prometheusArgs,
  prometheusEnv,
  prometheusTargets,
} from "../../tools/stack/monitoring.ts";
import { freePort } from "../../tools/stack/processes.ts";
import { onCleanup } from "../helpers/cleanup.ts";

const TESTS_DIR = join(MONITORING_DIR, "prometheus", "tests");
const ROOT = join(MONITORING_DIR, "..");
const MONITORING_DOC = join(ROOT, "docs", "monitoring.md");
/**
 * How every alert's runbook_url starts (docs/monitoring.md, "Alerts"): the external label each
 * Prometheus sets to where its operators read docs/runbooks/ (the repository has no one address).
 */
const RUNBOOK_PREFIX = "{{ $externalLabels.runbook_base }}/";
const yamlFiles = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".yml"))
    .sort()
    .map((f) => join(dir, f));

function run(cmd: string, args: string[]) {
  const res = spawnSync(cmd, args, { encoding: "utf8" });
  if (res.error)
    throw new Error(`${cmd} could not run (apt-get install prometheus prometheus-alertmanager): ${res.error.message}`);
  return { status: res.status, output: `${res.stdout}${res.stderr}` };
}

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface AlertTest {
  alertname: string;
  exp_alerts?: unknown[];
}
const rules = (): Rule[] =>
  yamlFiles(PROMETHEUS_RULES).flatMap((f) =>
    (Bun.YAML.parse(readFileSync(f, "utf8")) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules),
  );
interface RuleGroup {
  name: string;
  interval?: string;
  rules: Rule[];
}
const ruleGroups = (): RuleGroup[] =>
  yamlFiles(PROMETHEUS_RULES).flatMap(
    (f) => (Bun.YAML.parse(readFileSync(f, "utf8")) as { groups: RuleGroup[] }).groups,
  );
const alertTests = (): AlertTest[] =>
  yamlFiles(TESTS_DIR).flatMap((f) =>
    (Bun.YAML.parse(readFileSync(f, "utf8")) as { tests: { alert_rule_test?: AlertTest[] }[] }).tests.flatMap(
      (t) => t.alert_rule_test ?? [],
    ),
  );

describe("promtool and amtool", () => {
  test("promtool check config: prometheus.yml with its rules and the committed targets", () => {
    const r = run("promtool", ["check", "config", PROMETHEUS_CONFIG]);
    expect(r.output).toContain("is valid prometheus config file syntax");
    expect(r.status).toBe(0);
  });

  test("promtool check rules: every rule file", () => {
    const files = yamlFiles(PROMETHEUS_RULES);
    expect(files.length).toBeGreaterThanOrEqual(7);
    const r = run("promtool", ["check", "rules", ...files]);
    expect(r.status, r.output).toBe(0);
    expect(r.output.match(/SUCCESS/g)?.length).toBe(files.length);
  });

  test("promtool test rules: every alert fires and stays quiet where it should", () => {
    const files = yamlFiles(TESTS_DIR);
    const r = run("promtool", ["test", "rules", ...files]);
    expect(r.status, r.output).toBe(0);
    expect(r.output.match(/SUCCESS/g)?.length).toBe(files.length);
  });

  test("amtool check-config: alertmanager.yml", () => {
    const r = run("amtool", ["check-config", ALERTMANAGER_CONFIG]);
    expect(r.status, r.output).toBe(0);
  });

  test("promtool test rules fails when a rule is broken (the check can fail)", () => {
    // A copy of consumer.yml whose stall threshold is 10 minutes: its test expects firing at 2m15s.
    const dir = mkdtempSync(join(tmpdir(), "promtool-mutation-"));
    mkdirSync(join(dir, "rules"));
    mkdirSync(join(dir, "tests"));
    const broken = readFileSync(join(PROMETHEUS_RULES, "consumer.yml"), "utf8").replace(
      "(consumer_group_stalled_seconds) > 60",
      "(consumer_group_stalled_seconds) > 600",
    );
    expect(broken).toContain("> 600");
    writeFileSync(join(dir, "rules", "consumer.yml"), broken);
    writeFileSync(join(dir, "tests", "consumer.test.yml"), readFileSync(join(TESTS_DIR, "consumer.test.yml"), "utf8"));
    const r = run("promtool", ["test", "rules", join(dir, "tests", "consumer.test.yml")]);
    rmSync(dir, { recursive: true, force: true });
    expect(r.status).not.toBe(0);
    expect(r.output).toContain("ConsumerStalled");
  });
});

describe("rule invariants", () => {
  const alerts = rules().filter((r) => r.alert);
  const tests = alertTests();

  test("the issue's alerts are all there", () => {
    const names = alerts.map((a) => a.alert);
    for (const name of [
      "TargetDown",
      "EdgeErrorRatioHigh",
      "EdgeUnavailable",
      "EdgeLatencyBudgetBurnFast",
      "EdgeLatencyBudgetBurnSlow",
      "ConsumerStalled",
      "ConsumerLagNotDraining",
      "DeadLettersAppearing",
      "DeadLetterVolumeHigh",
      "PgbouncerClientsWaiting",
      "PostgresConnectionsNearMax",
      "ProducerQueueNearFull",
      "KafkaUnderReplicatedPartitions",
      "KafkaOfflinePartitions",
      // Issue 25: a dead or hung database or pooler by name; the missing alerts.
      "DatabaseDown",
      "PoolerDown",
      "KafkaUnderMinIsrPartitions",
      "KafkaActiveControllerCount",
      "VolumeSpaceLow",
      "VolumeFillingUp",
      "PodCrashLooping",
      "ContainerMemoryNearLimit",
      "BackupFailed",
      "BackupTooOld",
      "WalArchiveFailing",
      "MaintainJobFailed",
    ]) {
      expect(names).toContain(name);
    }
    expect(new Set(names).size).toBe(names.length);
  });

  test.each(alerts.map((a) => [a.alert as string, a] as const))(
    "%s: runbook link (the runbook_base template, to a runbook that exists), summary, description, severity",
    (_name, a) => {
      // Absolute once rendered: a pager or chat client has no checkout to resolve a repo path in.
      const url = a.annotations?.runbook_url ?? "";
      expect(url.startsWith(RUNBOOK_PREFIX), url).toBe(true);
      const file = /^([a-z0-9-]+\.md)(#[a-z0-9-]+)?$/.exec(url.slice(RUNBOOK_PREFIX.length))?.[1];
      expect(file, url).toBeDefined();
      expect(existsSync(join(RUNBOOKS_DIR, file as string)), url).toBe(true);
      expect(a.annotations?.summary?.length).toBeGreaterThan(10);
      expect(a.annotations?.description?.length).toBeGreaterThan(20);
      expect(["page", "ticket"]).toContain(a.labels?.severity ?? "");
    },
  );

  test.each(alerts.map((a) => [a.alert as string] as const))(
    "%s: a promtool test fires it and one does not",
    (name) => {
      const mine = tests.filter((t) => t.alertname === name);
      expect(mine.some((t) => (t.exp_alerts ?? []).length > 0)).toBe(true);
      expect(mine.some((t) => (t.exp_alerts ?? []).length === 0)).toBe(true);
    },
  );

  test.each(alerts.map((a) => [a.alert as string, a] as const))(
    "%s: waits (a for: of at least 10 s), so one odd scrape or evaluation does not notify",
    (_name, a) => {
      const m = /^(\d+)(s|m|h)$/.exec(a.for ?? "");
      expect(m, `for: ${a.for}`).not.toBeNull();
      const unit: Record<string, number> = { s: 1, m: 60, h: 3600 };
      const seconds = Number(m?.[1]) * (unit[m?.[2] ?? ""] ?? 0);
      expect(seconds).toBeGreaterThanOrEqual(10);
    },
  );

  test("the latency SLI reads the 400 ms bucket (roadmap p95 < 400 ms)", () => {
    const sli = rules().filter((r) => r.record?.startsWith("qrscan:http_request_slow_ratio:"));
    expect(sli.length).toBe(7);
    for (const r of sli) expect(r.expr).toContain('le="0.4"');
  });
});

describe("environments: namespace in every aggregation", () => {
  // One Prometheus scrapes dev, staging and prod (Kubernetes, label namespace): an aggregation that
  // drops namespace mixes them, and dev's 5xx page prod. Every aggregation must be written
  // `op by (…namespace…) (` (a trailing `) by (` or an aggregation without a clause fails), or
  // `op without (…)` not naming namespace. Outside Kubernetes the label is absent, and `by` on an
  // absent label changes nothing.
  const AGG =
    /\b(sum|min|max|avg|count|group|stddev|stdvar|topk|bottomk|quantile|count_values)\s*(by|without)?\s*\(([^)]*)\)?/g;
  function problems(expr: string): string[] {
    const out: string[] = [];
    // Strip strings (label values like "5..") so their text cannot look like an aggregation.
    const code = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
    for (const m of code.matchAll(AGG)) {
      const [text, op, clause, inside] = m;
      if (!clause) out.push(`${op}( without a by/without clause before its argument: ${text}`);
      else {
        const labels = (inside ?? "").split(",").map((l) => l.trim());
        if (clause === "by" && !labels.includes("namespace")) out.push(`${op} by (${inside}) drops namespace`);
        if (clause === "without" && labels.includes("namespace")) out.push(`${op} without (${inside}) drops namespace`);
      }
    }
    if (/\)\s*(by|without)\s*\(/.test(code)) out.push("a trailing by/without clause: write it before the argument");
    return out;
  }

  test("the check finds what it must (a dropped namespace, a bare sum, a trailing clause)", () => {
    expect(problems('sum by (namespace, job) (rate(x{status=~"5.."}[5m]))')).toEqual([]);
    expect(problems("max without (instance) (x)")).toEqual([]);
    expect(problems("max_over_time(x[5m]) and count_over_time(y[1m])")).toEqual([]);
    expect(problems("sum by (job) (x)")).toHaveLength(1);
    expect(problems("sum(rate(x[5m]))")).toHaveLength(1);
    expect(problems("sum (x) by (namespace)").length).toBeGreaterThan(0);
    expect(problems("avg without (namespace, pod) (x)")).toHaveLength(1);
  });

  test.each(rules().map((r) => [r.alert ?? r.record ?? "", r] as const))("%s keeps namespace", (_name, r) => {
    expect(problems(r.expr)).toEqual([]);
  });
});

/** A Prometheus duration (5s, 1m, 2h) in seconds. */
function seconds(d: string | undefined): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(d ?? "");
  if (!m) throw new Error(`not a duration: ${d}`);
  const unit: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };
  return Number(m[1]) * (unit[m[2] as string] ?? Number.NaN);
}

interface PrometheusConfig {
  global: { scrape_interval: string; scrape_timeout: string; evaluation_interval: string } & {
    external_labels?: Record<string, string>;
  };
  scrape_configs: { job_name: string; scrape_interval?: string; scrape_timeout?: string }[];
}
const K8S_PROMETHEUS = join(ROOT, "deploy", "k8s", "prometheus", "prometheus.yml");
const COMPOSE_PROMETHEUS = join(MONITORING_DIR, "prometheus", "compose.yml");
/** The local stack's Prometheus directory, laid out as `bun run stack up` lays it out. */
function localStackConfig(): string {
  const dir = mkdtempSync(join(tmpdir(), "stack-prometheus-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return preparePrometheusDir(dir, prometheusTargets(localStack(), appMetricsPorts({})));
}
/** Every Prometheus configuration the project ships, by where it runs. */
const PROMETHEUS_CONFIGS: [string, () => string][] = [
  ["local stack", localStackConfig],
  ["compose", () => COMPOSE_PROMETHEUS],
  ["kubernetes", () => K8S_PROMETHEUS],
];
const readConfig = (file: string) => Bun.YAML.parse(readFileSync(file, "utf8")) as PrometheusConfig;

describe("a dead or hung database or pooler pages within docs/slo.md's promise, in every Prometheus", () => {
  // The promise, where docs/slo.md states it (its DatabaseDown row): "paged by name within N s".
  const slo = readFileSync(join(ROOT, "docs", "slo.md"), "utf8");
  const promise = Number(/within (\d+) s/.exec(slo.split("\n").find((l) => l.includes("`DatabaseDown`")) ?? "")?.[1]);
  const group = ruleGroups().find((g) => g.rules.some((r) => r.alert === "DatabaseDown"));
  // Alertmanager's wait before a new page group's first notification (amConfig: defined below).
  const pageWait = () => {
    const am = amConfig(ALERTMANAGER_CONFIG);
    return seconds(
      am.route.routes.find((r) => r.matchers.includes('severity="page"'))?.group_wait ?? am.route.group_wait,
    );
  };

  test("the promise, the rule group and its alerts are where this test reads them", () => {
    expect(promise).toBe(60);
    expect(group?.rules.map((r) => r.alert).sort()).toEqual(["DatabaseDown", "PoolerDown"]);
  });

  // Worst case from the fault: the next scrape starts within one interval and fails at its timeout;
  // the next evaluation of the group sees it; the alert fires after its for:; Alertmanager holds a
  // new page group for group_wait. A hung process refuses nothing, so the timeout counts in full.
  test.each(PROMETHEUS_CONFIGS)(
    "%s: scrape interval + timeout + evaluation interval + for: + group_wait of the page route <= the promise",
    (where, file) => {
      const c = readConfig(file());
      const worst: Record<string, number> = {};
      for (const a of group?.rules ?? []) {
        const jobs = new Set(
          selectors(a.expr).flatMap((s) => [...s.matchers.matchAll(/\bjob\s*=\s*"([^"]+)"/g)].map((m) => m[1])),
        );
        expect(jobs.size, a.alert).toBeGreaterThan(0);
        for (const job of jobs) {
          const j = c.scrape_configs.find((x) => x.job_name === job);
          if (!j) throw new Error(`${where}: no scrape job ${job} (${a.alert} reads it)`);
          worst[`${a.alert} ${job}`] =
            seconds(j.scrape_interval ?? c.global.scrape_interval) +
            seconds(j.scrape_timeout ?? c.global.scrape_timeout) +
            seconds(group?.interval ?? c.global.evaluation_interval) +
            seconds(a.for) +
            pageWait();
        }
      }
      expect(Object.keys(worst).length).toBe(2);
      expect(Object.entries(worst).filter(([, s]) => s > promise)).toEqual([]);
    },
  );
});

describe("DatabaseDown / PoolerDown: a timed-out scrape of the exporter, never a dead exporter", () => {
  // A hung backend blocks the exporter's query until Prometheus' scrape_timeout: up 0 with
  // scrape_duration_seconds at the timeout (Prometheus 2.42: 1.001 s for a 1 s timeout). A dead
  // exporter refuses the connection: up 0 in under a millisecond, and only TargetDown fires.
  const group = ruleGroups().find((g) => g.rules.some((r) => r.alert === "DatabaseDown"));
  const TIMED_OUT = /up\{job="([^"]+)"\} == 0 and scrape_duration_seconds\{job="([^"]+)"\} >= ([0-9.]+)/g;

  test.each(PROMETHEUS_CONFIGS)(
    "%s: each job's scrape_timeout reaches the rules' timed-out threshold, and a fast failure does not",
    (where, file) => {
      const c = readConfig(file());
      const checked: string[] = [];
      for (const a of group?.rules ?? []) {
        const found = [...a.expr.matchAll(TIMED_OUT)];
        expect(found.length, `${a.alert}: up == 0 and scrape_duration_seconds >= …`).toBe(1);
        const [, upJob, durationJob, threshold] = found[0] as RegExpMatchArray;
        expect(durationJob).toBe(upJob as string);
        const j = c.scrape_configs.find((x) => x.job_name === upJob);
        if (!j) throw new Error(`${where}: no scrape job ${upJob} (${a.alert} reads it)`);
        const timeout = seconds(j.scrape_timeout ?? c.global.scrape_timeout);
        // A timed-out scrape lasts its timeout: it must reach the threshold ...
        expect(Number(threshold), `${where} ${upJob}: timeout ${timeout} s`).toBeLessThan(timeout);
        // ... and a failure in under half the timeout is no timeout.
        expect(Number(threshold), `${where} ${upJob}: timeout ${timeout} s`).toBeGreaterThanOrEqual(timeout / 2);
        checked.push(`${a.alert} ${upJob}`);
      }
      expect(checked.sort()).toEqual(["DatabaseDown postgres", "PoolerDown pgbouncer"]);
    },
  );

  test("besides the timeout, each reads only its exporter's own verdict (pg_up, pgbouncer_up), never a bare up", () => {
    const want: Record<string, string> = { DatabaseDown: "pg_up", PoolerDown: "pgbouncer_up" };
    for (const a of group?.rules ?? []) {
      const names = selectors(a.expr).map((s) => s.name);
      expect(names.sort(), a.alert).toEqual([want[a.alert as string], "scrape_duration_seconds", "up"].sort());
      // The one `up` selector is the timed-out branch's.
      expect(/\bup\{/.test(a.expr.replace(TIMED_OUT, "")), a.alert).toBe(false);
    }
  });
});

describe("the pgbouncer exporter (monitoring/pgbouncer-exporter/run.py), run for real without pgbouncer", () => {
  /** The exporter, as the stack and compose run it, against 127.0.0.1:`pgbouncerPort`. */
  async function exporter(pgbouncerPort: number) {
    const port = freePort();
    const proc = await spawnUntilReady({
      name: "pgbouncer exporter",
      cmd: ["/usr/bin/python3", PGBOUNCER_EXPORTER, "--host", "127.0.0.1", "--port", String(port)].concat([
        "--pgbouncer-host",
        "127.0.0.1",
        "--pgbouncer-port",
        String(pgbouncerPort),
        "--pgbouncer-user",
        "monitor",
      ]),
      output: "pipe",
      // Its index page: answered without querying pgbouncer.
      readyUrl: `http://127.0.0.1:${port}/`,
      readyTimeoutMs: 15_000,
    });
    onCleanup(() => killProcess(proc));
    return `http://127.0.0.1:${port}/metrics`;
  }

  test("pgbouncer dead (its port refuses): the exporter starts, and answers 200 with pgbouncer_up 0 and no pgbouncer figures", async () => {
    const metrics = await exporter(freePort());
    for (let i = 0; i < 2; i++) {
      const res = await fetch(metrics, { signal: AbortSignal.timeout(3_000) });
      expect(res.status).toBe(200);
      const series = (await res.text()).split("\n").filter((l) => l.startsWith("pgbouncer_"));
      expect(series).toEqual(["pgbouncer_up 0.0"]);
    }
  }, 30_000);

  test("pgbouncer hung (accepts, never answers): the scrape does not answer, so Prometheus times it out", async () => {
    const hung = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    onCleanup(() => hung.stop(true));
    const metrics = await exporter(hung.port);
    const started = Date.now();
    const outcome = await fetch(metrics, { signal: AbortSignal.timeout(1_500) }).then(
      (r) => `answered ${r.status}`,
      (e: Error) => e.name,
    );
    expect(outcome).toBe("TimeoutError");
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
  }, 30_000);
});

describe("Kubernetes: the cluster-wide rules keep to the product's namespaces", () => {
  // kube-state-metrics, the kubelet and cAdvisor describe every namespace of the cluster.
  const k8s = Bun.YAML.parse(readFileSync(K8S_PROMETHEUS, "utf8")) as {
    scrape_configs: { kubernetes_sd_configs?: { namespaces?: { names?: string[] } }[] }[];
  };
  const product = [
    ...new Set(
      k8s.scrape_configs.flatMap((j) => (j.kubernetes_sd_configs ?? []).flatMap((sd) => sd.namespaces?.names ?? [])),
    ),
  ].filter((ns) => ns !== "kube-system");

  test("every kube_*, kubelet_* and container_* selector of qrscan-kubernetes has the one regex: the namespaces Prometheus scrapes, not the cluster's", () => {
    expect(product).toEqual(expect.arrayContaining(["qrscan-prod", "kafka-prod"]));
    const group = ruleGroups().find((g) => g.name === "qrscan-kubernetes");
    const regexes = new Set<string>();
    const missing: string[] = [];
    let checked = 0;
    for (const r of group?.rules ?? [])
      for (const sel of selectors(r.expr)) {
        if (!/^(kube_|kubelet_|container_)/.test(sel.name ?? "")) continue;
        checked++;
        const m = /\bnamespace=~"([^"]+)"/.exec(sel.matchers);
        if (m) regexes.add(m[1] as string);
        else missing.push(`${r.alert}: ${sel.text}`);
      }
    expect(missing).toEqual([]);
    expect(checked).toBeGreaterThanOrEqual(8);
    expect([...regexes]).toHaveLength(1);
    const re = new RegExp(`^(?:${[...regexes][0]})$`);
    for (const ns of product) expect(re.test(ns), ns).toBe(true);
    for (const ns of ["kube-system", "kube-public", "default", "monitoring", "payments", "qrscan"])
      expect(re.test(ns), ns).toBe(false);
  });
});

describe("runbook_base: each Prometheus sets it, and the rules' runbook_url render with it", () => {
  test.each(PROMETHEUS_CONFIGS)(
    "%s: the external label runbook_base is ${RUNBOOK_BASE} from its environment",
    (_w, file) => {
      expect(readConfig(file()).global.external_labels).toEqual({ runbook_base: "${RUNBOOK_BASE}" });
    },
  );

  test("each launcher expands it: the stack to this checkout's runbooks, compose to the checkout it runs from; docs/deployment.md for Kubernetes", () => {
    expect(prometheusArgs("p.yml", "data", 1)).toContain(EXPAND_EXTERNAL_LABELS);
    const base = prometheusEnv().RUNBOOK_BASE ?? "";
    expect(base).toBe(pathToFileURL(RUNBOOKS_DIR).href);
    expect(existsSync(join(fileURLToPath(base), "database-down.md"))).toBe(true);
    const compose = Bun.YAML.parse(readFileSync(join(ROOT, "compose.yaml"), "utf8")) as {
      services: Record<string, { command?: string[]; environment?: Record<string, string>; volumes?: string[] }>;
    };
    const prom = compose.services.prometheus;
    expect(prom?.command).toContain(EXPAND_EXTERNAL_LABELS);
    // compose.yaml is at the checkout's root: the runbooks of the very files it mounts.
    expect(prom?.environment?.RUNBOOK_BASE).toBe("file://${PWD:-.}/docs/runbooks");
    // As docker-compose interpolates it, run from the checkout's root.
    const rendered = spawnSync("docker-compose", ["-f", join(ROOT, "compose.yaml"), "config"], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PWD: ROOT, POSTGRES_PASSWORD: "0123456789abcdef" },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(rendered.status, rendered.stderr).toBe(0);
    const services = (Bun.YAML.parse(rendered.stdout) as typeof compose).services;
    expect(services.prometheus?.environment?.RUNBOOK_BASE).toBe(pathToFileURL(RUNBOOKS_DIR).href);
    expect(prom?.volumes).toContain("./monitoring/prometheus:/etc/prometheus:ro");
    // The label goes with every alert to Alertmanager: it must not split groups or inhibitions.
    const am = amConfig(ALERTMANAGER_CONFIG);
    expect(am.route.group_by).not.toContain("runbook_base");
    for (const r of am.inhibit_rules) expect(r.equal ?? []).not.toContain("runbook_base");
    const deployment = readFileSync(join(ROOT, "docs", "deployment.md"), "utf8");
    for (const s of [EXPAND_EXTERNAL_LABELS, "RUNBOOK_BASE", "runbook_base"])
      expect(deployment.includes(s), s).toBe(true);
  });

  test("every promtool test that expects a runbook_url gives its group a runbook_base and expects that base and the alert's runbook", () => {
    const runbookOf = new Map(rules().map((r) => [r.alert, r.annotations?.runbook_url?.slice(RUNBOOK_PREFIX.length)]));
    interface Group {
      external_labels?: Record<string, string>;
      alert_rule_test?: { alertname: string; exp_alerts?: { exp_annotations?: Record<string, string> }[] }[];
    }
    const wrong: string[] = [];
    let checked = 0;
    for (const f of yamlFiles(TESTS_DIR))
      for (const g of (Bun.YAML.parse(readFileSync(f, "utf8")) as { tests: Group[] }).tests)
        for (const t of g.alert_rule_test ?? [])
          for (const e of t.exp_alerts ?? []) {
            const url = e.exp_annotations?.runbook_url;
            if (url === undefined) continue;
            checked++;
            const base = g.external_labels?.runbook_base;
            if (!base || url !== `${base}/${runbookOf.get(t.alertname)}`) wrong.push(`${f}: ${t.alertname}: ${url}`);
          }
    expect(wrong).toEqual([]);
    expect(checked).toBeGreaterThanOrEqual(rules().filter((r) => r.alert).length);
  });

  test("the real Prometheus, run as the stack runs it, expands runbook_base to this checkout's runbooks", async () => {
    const config = localStackConfig();
    const data = mkdtempSync(join(tmpdir(), "prometheus-data-"));
    onCleanup(() => rmSync(data, { recursive: true, force: true }));
    const port = freePort();
    const proc = await spawnUntilReady({
      name: "Prometheus",
      cmd: ["prometheus", ...prometheusArgs(config, data, port)],
      env: prometheusEnv(),
      output: "pipe",
      readyUrl: `http://127.0.0.1:${port}/-/ready`,
      readyTimeoutMs: 20_000,
    });
    onCleanup(() => killProcess(proc));
    const status = (await fetch(`http://127.0.0.1:${port}/api/v1/status/config`, {
      signal: AbortSignal.timeout(5_000),
    }).then((r) => r.json())) as {
      data: { yaml: string };
    };
    const loaded = Bun.YAML.parse(status.data.yaml) as PrometheusConfig;
    expect(loaded.global.external_labels).toEqual({ runbook_base: pathToFileURL(RUNBOOKS_DIR).href });
  }, 30_000);
});

describe("docs/monitoring.md lists every alert", () => {
  test("its alert table names each rule's alert once, with its severity and runbook, and nothing else", () => {
    const doc = readFileSync(MONITORING_DOC, "utf8");
    const section = doc.slice(doc.indexOf("\n## Alerts\n"), doc.indexOf("\n## ", doc.indexOf("\n## Alerts\n") + 5));
    const rows = section
      .split("\n")
      .filter((l) => /^\| [A-Z][A-Za-z]+ \|/.test(l))
      .map((l) => l.split("|").map((c) => c.trim()));
    const listed = rows.map((r) => r[1] as string);
    const alerts = rules().filter((r) => r.alert);
    expect([...listed].sort()).toEqual(alerts.map((a) => a.alert as string).sort());
    for (const a of alerts) {
      const row = rows.find((r) => r[1] === a.alert) as string[];
      expect(row[2], a.alert).toBe(a.labels?.severity);
      const file = (a.annotations?.runbook_url ?? "").slice(RUNBOOK_PREFIX.length).split("#")[0];
      expect(row[4], a.alert).toContain(`docs/runbooks/${file}`);
    }
  });
});

test("the committed targets are what the local stack writes for the default ports", () => {
  const defaults = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("STACK_") || k === "STACK_DIR"),
  );
  const saved = { ...process.env };
  try {
    for (const k of Object.keys(process.env)) if (!(k in defaults)) delete process.env[k];
    const expected = prometheusTargets(localStack(), appMetricsPorts({}));
    const dir = join(MONITORING_DIR, "prometheus", "targets");
    expect(readdirSync(dir).sort()).toEqual(
      Object.keys(expected)
        .map((j) => `${j}.yml`)
        .sort(),
    );
    for (const [job, text] of Object.entries(expected)) {
      expect(readFileSync(join(dir, `${job}.yml`), "utf8"), job).toBe(text);
    }
  } finally {
    Object.assign(process.env, saved);
  }
});

interface AlertmanagerConfig {
  route: {
    receiver: string;
    group_by: string[];
    group_wait: string;
    routes: { matchers: string[]; receiver: string; group_wait?: string }[];
  };
  inhibit_rules: { source_matchers: string[]; target_matchers: string[]; equal?: string[] }[];
  receivers: { name: string; webhook_configs: { url: string }[] }[];
}
const amConfig = (file: string) => Bun.YAML.parse(readFileSync(file, "utf8")) as AlertmanagerConfig;

/** The shells start.sh must run in: Debian's (dash) and the public prom/alertmanager image's. */
const SHELLS: [string, string[]][] = [
  ["sh", ["sh"]],
  ["busybox sh", ["busybox", "sh"]],
];

/**
 * Runs start.sh with `shell`, the given URL files' contents (undefined: no file) and a stand-in
 * Alertmanager binary that records the arguments it was exec'd with.
 */
function runStart(
  shell: string[],
  urls: { pager?: string; ticket?: string },
  args: string[] = ["--storage.path=/data", "--web.listen-address=127.0.0.1:1"],
) {
  const dir = mkdtempSync(join(tmpdir(), "am-start-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const fake = join(dir, "alertmanager");
  writeFileSync(fake, `#!/bin/sh\nprintf '%s\\n' "$@" > "$0.args"\n`);
  chmodSync(fake, 0o755);
  if (urls.pager !== undefined) writeFileSync(join(dir, "pager_url"), urls.pager);
  if (urls.ticket !== undefined) writeFileSync(join(dir, "ticket_url"), urls.ticket);
  const out = join(dir, "rendered", "alertmanager.yml");
  mkdirSync(join(dir, "rendered"));
  const res = spawnSync(shell[0] as string, [...shell.slice(1), ALERTMANAGER_START, ...args], {
    encoding: "utf8",
    env: {
      PATH: process.env.PATH,
      ALERTMANAGER_BIN: fake,
      ALERTMANAGER_PAGER_URL_FILE: join(dir, "pager_url"),
      ALERTMANAGER_TICKET_URL_FILE: join(dir, "ticket_url"),
      ALERTMANAGER_CONFIG_OUT: out,
    },
  });
  if (res.error) {
    throw new Error(
      `${shell.join(" ")} could not run (apt-get install busybox, or bun run stack up): ${res.error.message}`,
    );
  }
  const argsFile = `${fake}.args`;
  return {
    status: res.status,
    stderr: res.stderr,
    out,
    execArgs: existsSync(argsFile) ? readFileSync(argsFile, "utf8").trimEnd().split("\n") : null,
  };
}

const PAGER = "http://127.0.0.1:9/pager";
const TICKET = "http://127.0.0.1:9/ticket";

/** amtool's receiver and matching route path for an alert with these labels, on a rendered configuration. */
function routeOf(config: string, labels: Record<string, string>) {
  const r = run("amtool", [
    "config",
    "routes",
    "test",
    "--tree",
    `--config.file=${config}`,
    ...Object.entries(labels).map(([k, v]) => `${k}=${v}`),
  ]);
  expect(r.status, r.output).toBe(0);
  const lines = r.output
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("Warning:"));
  return { receiver: lines.at(-1), tree: r.output };
}

describe("Alertmanager: start.sh renders the receivers' URLs from secret files", () => {
  test("the committed template is valid as is, with placeholder receivers on the reserved .invalid domain", () => {
    const c = amConfig(ALERTMANAGER_CONFIG);
    expect(c.receivers.map((r) => [r.name, r.webhook_configs.map((w) => w.url)])).toEqual([
      ["pager", ["http://alertmanager-pager-url.invalid/"]],
      ["ticket", ["http://alertmanager-ticket-url.invalid/"]],
    ]);
  });

  test.each(SHELLS)(
    "%s: renders the URLs exactly and execs Alertmanager with --config.file and the rest",
    (_n, shell) => {
      // Characters a URL may hold that YAML, sed or the shell would read otherwise.
      const pager = "https://pager.example/v1/hook?key=a'b&x=%20|y#frag";
      const r = runStart(shell, { pager: `  ${pager}\r\n`, ticket: TICKET });
      expect(r.status, r.stderr).toBe(0);
      expect(r.execArgs).toEqual([
        `--config.file=${r.out}`,
        "--storage.path=/data",
        "--web.listen-address=127.0.0.1:1",
      ]);
      expect(statSync(r.out).mode & 0o777).toBe(0o600);
      const c = amConfig(r.out);
      expect(c.receivers.map((x) => [x.name, x.webhook_configs[0]?.url])).toEqual([
        ["pager", pager],
        ["ticket", TICKET],
      ]);
      // Apart from the two URLs (and its header line), the template itself.
      const template = readFileSync(ALERTMANAGER_CONFIG, "utf8");
      const rendered = readFileSync(r.out, "utf8").split("\n").slice(1).join("\n");
      expect(rendered.replace(`'${pager.replaceAll("'", "''")}'`, "P").replace(`'${TICKET}'`, "T")).toBe(
        template
          .replace("http://alertmanager-pager-url.invalid/", "P")
          .replace("http://alertmanager-ticket-url.invalid/", "T"),
      );
      expect(r.stderr).not.toContain(pager);
      const check = run("amtool", ["check-config", r.out]);
      expect(check.status, check.output).toBe(0);
    },
  );

  const refusals: [string, { pager?: string; ticket?: string }, string][] = [
    ["no pager file", { ticket: TICKET }, "no pager URL:"],
    ["no ticket file", { pager: PAGER }, "no ticket URL:"],
    ["an empty pager file", { pager: " \n", ticket: TICKET }, "is empty"],
    [
      "a ticket URL that is not http(s)",
      { pager: PAGER, ticket: "ftp://x/y\n" },
      "does not start with http:// or https://",
    ],
    ["a pager URL without a scheme", { pager: "hooks.example/abc\n", ticket: TICKET }, "does not start with http"],
    ["two lines", { pager: `${PAGER}\n${TICKET}\n`, ticket: TICKET }, "has more than one line"],
    ["a space inside", { pager: "http://a.example/x y\n", ticket: TICKET }, "contains whitespace"],
  ];
  for (const [name, shell] of SHELLS) {
    test.each(refusals)(`${name}: refuses to start with %s, saying why`, (_what, urls, message) => {
      const r = runStart(shell, urls);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("alertmanager start.sh: ");
      expect(r.stderr).toContain(message);
      expect(r.execArgs).toBeNull();
    });
  }

  test("refuses a --config.file of the caller's (it would replace the rendered one)", () => {
    const r = runStart(["sh"], { pager: PAGER, ticket: TICKET }, ["--config.file=/etc/alertmanager/alertmanager.yml"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("do not pass --config.file");
    expect(r.execArgs).toBeNull();
  });
});

describe("Alertmanager routing (amtool on the rendered configuration)", () => {
  const rendered = () => {
    const r = runStart(["sh"], { pager: PAGER, ticket: TICKET });
    expect(r.status, r.stderr).toBe(0);
    return r.out;
  };
  const RECEIVER_OF: Record<string, string> = { page: "pager", ticket: "ticket" };

  test("every rule's alert goes to its severity's receiver, by that severity's own route", () => {
    const config = rendered();
    const alerts = rules().filter((r) => r.alert);
    const severities = new Set(alerts.map((a) => a.labels?.severity ?? ""));
    expect([...severities].sort()).toEqual(["page", "ticket"]);
    const wrong: string[] = [];
    for (const a of alerts) {
      const severity = a.labels?.severity ?? "";
      const { receiver, tree } = routeOf(config, { alertname: a.alert as string, ...a.labels });
      if (receiver !== RECEIVER_OF[severity]) wrong.push(`${a.alert} (${severity}) -> ${receiver}`);
      // Not by the default route: the severity's own.
      if (!tree.includes(`{severity="${severity}"}`)) wrong.push(`${a.alert} (${severity}) by the default route`);
    }
    expect(wrong).toEqual([]);
  });

  test("dev's and staging's alerts, pages included, go to the ticket queue by their own route; prod's pages to the pager", () => {
    const config = rendered();
    const pages = rules().filter((r) => r.labels?.severity === "page");
    expect(pages.length).toBeGreaterThan(10);
    const wrong: string[] = [];
    const cases: [string, string][] = [
      ["qrscan-dev", "ticket"],
      ["qrscan-staging", "ticket"],
      ["qrscan-prod", "pager"],
    ];
    for (const a of pages)
      for (const [namespace, want] of cases) {
        const { receiver, tree } = routeOf(config, { alertname: a.alert as string, ...a.labels, namespace });
        if (receiver !== want) wrong.push(`${a.alert} in ${namespace} -> ${receiver}`);
        if (want === "ticket" && !tree.includes("namespace=~"))
          wrong.push(`${a.alert} in ${namespace}: not by the environment route`);
      }
    // The brokers' own namespaces (kube-state-metrics' and the kubelet's series of their pods).
    for (const [namespace, want] of [
      ["kafka-dev", "ticket"],
      ["kafka-staging", "ticket"],
      ["kafka-prod", "pager"],
    ] as const) {
      const { receiver } = routeOf(config, { alertname: "VolumeSpaceLow", severity: "page", namespace });
      if (receiver !== want) wrong.push(`VolumeSpaceLow in ${namespace} -> ${receiver}`);
    }
    // Anchored: a namespace that only starts like dev's is not dev.
    expect(routeOf(config, { alertname: "X", severity: "page", namespace: "qrscan-development" }).receiver).toBe(
      "pager",
    );
    expect(wrong).toEqual([]);
  });

  test("an alert without a known severity still reaches a person: the ticket queue", () => {
    const config = rendered();
    expect(routeOf(config, { alertname: "SomethingNew" }).receiver).toBe("ticket");
    expect(routeOf(config, { alertname: "SomethingNew", severity: "critical" }).receiver).toBe("ticket");
  });

  test("one cause is one notification: no per-partition, per-topic or per-instance groups", () => {
    const c = amConfig(ALERTMANAGER_CONFIG);
    expect(c.route.group_by).toEqual(["namespace", "alertname", "job"]);
    for (const route of c.route.routes) expect(route).not.toHaveProperty("group_by");
  });

  test("a dead or hung database or pooler inhibits the stall, lag and freshness pages it causes, in its namespace", () => {
    const c = amConfig(ALERTMANAGER_CONFIG);
    const rule = c.inhibit_rules.find((r) => r.source_matchers.some((m) => m.includes("DatabaseDown|PoolerDown")));
    expect(rule?.equal).toEqual(["namespace"]);
    for (const target of ["ConsumerStalled", "FreshnessBudgetBurnFast"]) {
      expect(rule?.target_matchers.join(" ")).toContain(target);
    }
  });

  test("inhibit rules have equal: a target down silences only its own environment's alerts", () => {
    const c = amConfig(ALERTMANAGER_CONFIG);
    expect(c.inhibit_rules.length).toBeGreaterThan(0);
    for (const rule of c.inhibit_rules) expect(rule.equal ?? []).toContain("namespace");
  });
});
