// Every runbook's diagnostic commands (docs/runbooks/*.md), run against the real local stack with
// the product running, so the runbooks cannot drift from the code, the metrics or the tools: an
// edge server and a supervised pool of two workers on 127.0.0.1 (free ports, their JSON logs in
// files as `bun run dev` writes them), a Prometheus of this test's own with the committed
// prometheus.yml and rules (1 s intervals) scraping them and the stack's broker, Postgres and
// pgbouncer exporters, a few events through the edge and one undecodable record produced straight
// to Kafka, so there is a dead letter to list. Conventions: test/docs/harness.ts. Each block is
// bounded in time and must exit 0; where a runbook shows the output, it must match. The runbooks'
// `promql` helper fails on an empty result, so a misspelt metric fails here (checked below).
//
// Mutations this test catches (each tried once, then reverted):
// | mutation                                                                | what fails                                   |
// | consumer-stalled.md: consumer_group_stalled_seconds → …_secondz         | that block: "no series" (jq exit 5)          |
// | dead-letters.md: a diagnostic block marked `skip (…)`                   | the counts: {examples: 8, skipped: 3}        |
// | target-down.md: the worker's /ready expected {"status": "readyy"}       | output: $.status expected "readyy"           |
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEdgeServer } from "../../tools/edge-server.ts";
import { killProcess, spawnProcess } from "../../tools/harness.ts";
import {
  PROMETHEUS_CONFIG,
  preparePrometheusDir,
  prometheusArgs,
  prometheusEnv,
  prometheusTargets,
} from "../../tools/stack/monitoring.ts";
import { createDatabase, createProducer, onCleanup, spawnSupervisor, workerEnv } from "../helpers/fixtures.ts";
import { freePort, scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { type DocBlock, brokenLinks, failureReport, readDoc, runBlock, runBlocks } from "./harness.ts";

const stack = await ensureStack();

const ROOT = new URL("../..", import.meta.url).pathname;
const DIR = "docs/runbooks";

/**
 * How many diagnostic examples each runbook holds, and how many blocks are skipped (fix steps
 * that change state). A runbook with other counts fails: a diagnostic newly marked `skip`, or one
 * whose fence no longer says `sh`, would otherwise go unchecked; a new runbook needs an entry.
 */
const EXPECTED: Record<string, { examples: number; skipped: number }> = {
  "README.md": { examples: 1, skipped: 1 },
  "broker-partitions.md": { examples: 6, skipped: 2 },
  "consumer-lag.md": { examples: 6, skipped: 1 },
  "consumer-stalled.md": { examples: 6, skipped: 2 },
  "backup-jobs.md": { examples: 1, skipped: 2 },
  "database-down.md": { examples: 3, skipped: 1 },
  "db-connection-saturation.md": { examples: 5, skipped: 2 },
  "dead-letters.md": { examples: 7, skipped: 1 },
  "disk-filling.md": { examples: 5, skipped: 2 },
  "edge-errors.md": { examples: 6, skipped: 1 },
  "edge-latency.md": { examples: 6, skipped: 0 },
  "leaked-api-key.md": { examples: 4, skipped: 2 },
  "pod-restarts.md": { examples: 1, skipped: 2 },
  "postgres-ha.md": { examples: 0, skipped: 7 },
  "producer-queue.md": { examples: 5, skipped: 1 },
  "rate-limited-address.md": { examples: 4, skipped: 1 },
  "restore.md": { examples: 5, skipped: 3 },
  "storage-budget.md": { examples: 4, skipped: 2 },
  "target-down.md": { examples: 9, skipped: 2 },
};

const listing = (bs: DocBlock[]) =>
  bs.map((b) => `  ${b.file}:${b.line}${b.skipReason ? ` (skip: ${b.skipReason})` : ""}`).join("\n");

/** Every runbook's blocks, after checking the counts above. */
function runbooks(): Map<string, DocBlock[]> {
  const files = readdirSync(join(ROOT, DIR))
    .filter((f) => f.endsWith(".md"))
    .sort();
  expect(files).toEqual(Object.keys(EXPECTED).sort());
  const docs = new Map<string, DocBlock[]>();
  const problems: string[] = [];
  for (const file of files) {
    const blocks = readDoc(join(ROOT, DIR, file), `${DIR}/${file}`);
    const examples = blocks.filter((b) => b.kind === "example");
    const skipped = blocks.filter((b) => b.kind === "skip");
    const found = { examples: examples.length, skipped: skipped.length };
    if (found.examples !== EXPECTED[file]?.examples || found.skipped !== EXPECTED[file]?.skipped) {
      problems.push(
        `${DIR}/${file}: expected ${JSON.stringify(EXPECTED[file])}, found ${JSON.stringify(found)}\n` +
          `examples:\n${listing(examples)}\nskipped:\n${listing(skipped)}`,
      );
    }
    // A Prometheus query outside the `promql` helper would not fail on an empty result.
    for (const b of examples.filter((b) => b.code.includes("/api/v1/query"))) {
      problems.push(`${b.file}:${b.line}: query Prometheus with the promql helper (it fails on an empty result)`);
    }
    docs.set(file, blocks);
  }
  expect(problems.join("\n")).toBe("");
  return docs;
}

test("every runbook is counted, and every diagnostic is runnable (not skipped) and checked", () => {
  const docs = runbooks();
  for (const [file, blocks] of docs) {
    if (file === "README.md") continue;
    // Each runbook defines the helpers and addresses its diagnostics use.
    expect(blocks.filter((b) => b.kind === "setup")).toHaveLength(1);
  }
});

test("every alert's runbook exists and the index maps the alert to it; the runbooks' links resolve", () => {
  const rulesDir = join(ROOT, "monitoring/prometheus/rules");
  const index = readFileSync(join(ROOT, DIR, "README.md"), "utf8");
  const missing: string[] = [];
  let alerts = 0;
  for (const file of readdirSync(rulesDir).filter((f) => f.endsWith(".yml"))) {
    // Each alert rule's name, then its runbook_url: the runbook_base template and the runbook's
    // file name (the rule files keep that order; docs/monitoring.md, "Alerts").
    const text = readFileSync(join(rulesDir, file), "utf8");
    for (const m of text.matchAll(
      /- alert: (\w+)[\s\S]*?runbook_url: "\{\{ \$externalLabels\.runbook_base \}\}\/([^"#]+)(?:#[^"]*)?"/g,
    )) {
      alerts++;
      const [, alert, name] = m as unknown as [string, string, string];
      const url = `${DIR}/${name}`;
      if (!existsSync(join(ROOT, url))) missing.push(`${file}: ${alert} links ${url}, which does not exist`);
      const row = index.split("\n").find((l) => l.startsWith(`| \`${alert}\``));
      if (!row?.includes(`](${name})`)) missing.push(`${DIR}/README.md: no row mapping ${alert} to ${name}`);
    }
  }
  expect(alerts).toBeGreaterThanOrEqual(17);
  expect(missing).toEqual([]);
  const files = readdirSync(join(ROOT, DIR)).map((f) => `${DIR}/${f}`);
  expect(brokenLinks(files)).toEqual([]);
});

/** A free port p with p + 1 free too (worker i listens on METRICS_PORT + i). */
/** Prometheus's answer to an instant query: the series (empty when none). */
async function query(
  promUrl: string,
  expr: string,
): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`, {
    signal: AbortSignal.timeout(5_000),
  });
  const body = (await res.json()) as { data?: { result?: [] } };
  return body.data?.result ?? [];
}

test("every runbook's diagnostic commands work against the live product", async () => {
  const docs = runbooks();
  const dir = mkdtempSync(join(tmpdir(), "runbooks-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const logDir = join(dir, "logs");

  // The product: the edge and a supervised pool on this test's topics and database.
  const db = await createDatabase();
  const env = await workerEnv(db.url, 3);
  const {
    proc: server,
    port: serverPort,
    metricsPort: serverMetricsPort,
  } = await startEdgeServer({
    env: { LOG_LEVEL: "info", SCANS_TOPIC: env.scansTopic, DATABASE_URL: db.url },
    output: { file: join(logDir, "server.log") },
  });
  onCleanup(() => killProcess(server));

  const { workerPort, supervisorPort } = await spawnSupervisor(env, {
    workers: 2,
    extra: { LOG_LEVEL: "info", LAG_INTERVAL_MS: "1000", SHUTDOWN_TIMEOUT_MS: "2000" },
    output: { file: join(logDir, "workers.log") },
  });
  const workerUrls = [workerPort, workerPort + 1].map((p) => `http://127.0.0.1:${p}`);
  await waitFor(
    "both workers to answer /ready with 200",
    () =>
      Promise.all(
        workerUrls.map((u) =>
          fetch(`${u}/ready`, { signal: AbortSignal.timeout(2_000) }).then(
            (r) => r.status,
            (e: Error) => e.message,
          ),
        ),
      ),
    (statuses) => statuses.every((s) => s === 200),
    60_000,
    250,
  );

  // Prometheus: the committed prometheus.yml and rules, scraping this test's processes and the
  // stack's exporters every second. No Alertmanager: nothing is delivered anywhere.
  const promPort = freePort();
  const promUrl = `http://127.0.0.1:${promPort}`;
  const targets = prometheusTargets(
    { ...stack, prometheusPort: promPort },
    { server: serverMetricsPort, firstWorker: workerPort, workers: 2, supervisor: supervisorPort },
  );
  targets.alertmanager = "[]\n";
  const intervals = (text: string) => {
    let out = text;
    for (const [from, to] of [
      ["scrape_interval: 15s", "scrape_interval: 1s"],
      ["scrape_timeout: 10s", "scrape_timeout: 1s"],
      ["evaluation_interval: 15s", "evaluation_interval: 1s"],
    ] as const) {
      expect(out).toContain(from);
      out = out.replaceAll(from, to);
    }
    return out;
  };
  const promConfig = preparePrometheusDir(
    join(dir, "prometheus"),
    targets,
    intervals(readFileSync(PROMETHEUS_CONFIG, "utf8")),
  );
  const prometheus = spawnProcess({
    cmd: ["prometheus", ...prometheusArgs(promConfig, join(dir, "prometheus-data"), promPort)],
    env: prometheusEnv(),
    output: { file: join(dir, "prometheus.log") },
  });
  onCleanup(() => killProcess(prometheus));
  const jobs = Object.keys(targets).filter((j) => j !== "alertmanager");
  const targetCount = jobs.length + 1; // two workers
  await waitFor(
    `Prometheus at ${promUrl} to scrape ${targetCount} targets (${jobs.join(", ")}) as up`,
    () =>
      query(promUrl, "up == 1").then(
        (r) => r.map((s) => s.metric.job).sort(),
        (e: Error) => e.message,
      ),
    (up) => Array.isArray(up) && up.length === targetCount,
    60_000,
    500,
  );

  // Traffic: events through the edge, and one record no edge would write.
  const events = Array.from({ length: 5 }, () => scan());
  for (const event of events) {
    const res = await fetch(`http://127.0.0.1:${serverPort}/v1/scans`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(event),
    });
    expect(res.status).toBe(202);
  }
  await createProducer().send([{ topic: env.scansTopic, key: "around-the-edge", value: "{not json" }]);
  await waitFor(
    "the 5 events in scan_events and the undecodable record in dead_letters",
    async () => {
      const [row] = await db.sql<{ events: number; dead: number }[]>`
        select (select count(*)::int from scan_events) as events, (select count(*)::int from dead_letters) as dead`;
      return row;
    },
    (row) => row?.events === events.length && row?.dead === 1,
    60_000,
    250,
  );
  // Rates need two scrapes after the traffic; recording rules an evaluation after that.
  const ready = [
    'sum(rate(http_requests_total{route="/v1/scans", status="202"}[5m])) > 0',
    "sum(increase(worker_dead_letters_total[15m])) > 0",
    "sum(rate(worker_rows_inserted_total[5m])) > 0",
    "qrscan:http_request_slow_ratio:rate5m >= 0",
  ];
  await waitFor(
    `Prometheus to see the traffic: ${ready.join("; ")}`,
    () => Promise.all(ready.map((q) => query(promUrl, q).then((r) => r.length))),
    (counts) => counts.every((n) => n > 0),
    60_000,
    500,
  );

  const runEnv: Record<string, string> = {
    PROMETHEUS_URL: promUrl,
    // The stack's: this test's Prometheus sends it nothing, so it answers with what it holds.
    ALERTMANAGER_URL: `http://127.0.0.1:${stack.alertmanagerPort}`,
    SERVER_URL: `http://127.0.0.1:${serverPort}`,
    SERVER_METRICS_URL: `http://127.0.0.1:${serverMetricsPort}`,
    WORKER_URL: workerUrls[0] as string,
    SUPERVISOR_URL: `http://127.0.0.1:${supervisorPort}`,
    DATABASE_URL: db.url,
    DATABASE_DIRECT_URL: db.directUrl,
    PGBOUNCER_ADMIN_URL: `postgres://${stack.user}:${stack.password}@127.0.0.1:${stack.pgbouncerPort}/pgbouncer`,
    DATABASE_ADMIN_URL: stack.adminDatabaseUrl,
    KAFKA_BROKERS: stack.brokers,
    SCANS_TOPIC: env.scansTopic,
    DEAD_LETTER_TOPIC: env.deadLetterTopic,
    CONSUMER_GROUP: env.group,
    LOG_DIR: logDir,
    STACK_DIR: stack.dir,
  };
  const options = { env: runEnv, timeoutMs: 30_000 };

  const reports: string[] = [];
  let ran = 0;
  const outputs = new Map<string, string>();
  for (const [file, blocks] of docs) {
    const results = await runBlocks(blocks, options);
    expect(results).toHaveLength(EXPECTED[file]?.examples ?? -1);
    ran += results.length;
    for (const r of results) outputs.set(`${r.block.file}:${r.block.line}`, r.stdout);
    const report = failureReport(results);
    if (report) reports.push(report);
  }
  // No silently dropped diagnostics: every example of every runbook ran.
  expect(ran).toBe(Object.values(EXPECTED).reduce((n, e) => n + e.examples, 0));
  expect(reports.join("\n")).toBe("");

  // The dead letter this test made is the one `bun run dlq list` shows.
  const dlqList = (docs.get("dead-letters.md") ?? []).find((b) => b.kind === "example" && b.code.includes("dlq list"));
  expect(dlqList).toBeDefined();
  const listed = outputs.get(`${dlqList?.file}:${dlqList?.line}`) ?? "";
  expect(listed).toStartWith("1 pending dead letter(s); newest first:\n");
  expect(listed).toContain(`\t${env.scansTopic}/`);

  // A diagnostic whose metric is misspelt fails (the promql helper's empty-result check).
  const stalled = docs.get("consumer-stalled.md") as DocBlock[];
  const setup = stalled.filter((b) => b.kind === "setup");
  const first = stalled.find((b) => b.kind === "example" && b.code.includes("consumer_group_stalled_seconds"));
  expect(first).toBeDefined();
  const broken = await runBlock(
    {
      ...(first as DocBlock),
      code: (first as DocBlock).code.replaceAll("consumer_group_stalled_seconds", "consumer_group_stalled_secondz"),
    },
    setup,
    options,
  );
  expect(broken.problems).toEqual(["exited 5"]);
  expect(broken.stderr).toContain("no series: max by (topic, partition) (consumer_group_stalled_secondz)");
}, 300_000);
