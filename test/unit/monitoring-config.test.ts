// The committed monitoring configuration (monitoring/): Prometheus's config, the alert rules and
// their promtool unit tests, Alertmanager's config; and the invariants that keep them honest:
// every alert has a runbook link, a summary and a description, and a promtool test that makes it
// fire and one where it does not; the committed file_sd targets are what the local stack writes for
// the default ports.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { localStack } from "../../shared/local-stack.ts";
import {
  ALERTMANAGER_CONFIG,
  MONITORING_DIR,
  PROMETHEUS_CONFIG,
  PROMETHEUS_RULES,
  appMetricsPorts,
  prometheusTargets,
} from "../../tools/stack/monitoring.ts";

const TESTS_DIR = join(MONITORING_DIR, "prometheus", "tests");
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
    ]) {
      expect(names).toContain(name);
    }
    expect(new Set(names).size).toBe(names.length);
  });

  test.each(alerts.map((a) => [a.alert as string, a] as const))(
    "%s: runbook link, summary, description, severity",
    (_name, a) => {
      expect(a.annotations?.runbook_url).toMatch(/^docs\/runbooks\/[a-z0-9-]+\.md$/);
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

  test("the latency SLI reads the 400 ms bucket (roadmap p95 < 400 ms)", () => {
    const sli = rules().filter((r) => r.record?.startsWith("qrscan:http_request_slow_ratio:"));
    expect(sli.length).toBe(7);
    for (const r of sli) expect(r.expr).toContain('le="0.4"');
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
