// Prometheus, Alertmanager and the exporters of the local stack, run from Debian's packages with
// our own config and data under $STACK_DIR/monitoring (never the packages' system services or
// default ports). The configuration is the committed monitoring/ folder, shared with compose.yaml:
// $STACK_DIR/monitoring/prometheus/ holds symlinks to monitoring/prometheus/prometheus.yml and its
// rules/, and a targets/ folder written here (file_sd), the only part that depends on the ports.
// Alertmanager starts as compose starts it, through monitoring/alertmanager/start.sh, which renders
// the committed alertmanager.yml with the receivers' URLs from secret files; here those point at the
// stack's own receiver (tools/stack/alert-receiver.ts), which writes each alert to alerts.log.
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import * as v from "valibot";
import { ServerConfigSchema } from "../../server/config.ts";
import { loadConfig } from "../../shared/config.ts";
import type { LocalStack } from "../../shared/local-stack.ts";
import { SupervisorConfigSchema, WorkerConfigSchema } from "../../worker/config.ts";
import { portOpen, readPid, run, startDetached, stopPidFile, waitForService, writePid } from "./processes.ts";

export const MONITORING_DIR = new URL("../../monitoring", import.meta.url).pathname;
export const PROMETHEUS_CONFIG = join(MONITORING_DIR, "prometheus", "prometheus.yml");
export const PROMETHEUS_RULES = join(MONITORING_DIR, "prometheus", "rules");
/** The routing template: only start.sh runs Alertmanager on it, with the receivers' URLs filled in. */
export const ALERTMANAGER_CONFIG = join(MONITORING_DIR, "alertmanager", "alertmanager.yml");
export const ALERTMANAGER_START = join(MONITORING_DIR, "alertmanager", "start.sh");
const ALERT_RECEIVER = new URL("./alert-receiver.ts", import.meta.url).pathname;
export const JMX_EXPORTER_CONFIG = join(MONITORING_DIR, "jmx-exporter", "kafka.yml");
const JMX_EXPORTER_POM = join(MONITORING_DIR, "jmx-exporter", "pom.xml");
/** This checkout's runbooks, which every alert's runbook_url names (prometheusEnv). */
export const RUNBOOKS_DIR = join(MONITORING_DIR, "..", "docs", "runbooks");
/** Debian's pgbouncer exporter, with the fix-up that lets it read pgbouncer 1.18's SHOW STATS. */
export const PGBOUNCER_EXPORTER = join(MONITORING_DIR, "pgbouncer-exporter", "run.py");

export function monitoringPaths(stack: LocalStack) {
  const root = join(stack.dir, "monitoring");
  const prometheus = join(root, "prometheus");
  return {
    root,
    prometheusDir: prometheus,
    prometheusConfig: join(prometheus, "prometheus.yml"),
    targets: join(prometheus, "targets"),
    prometheusData: join(root, "prometheus-data"),
    prometheusLog: join(root, "prometheus.log"),
    prometheusPid: join(root, "prometheus.pid"),
    alertmanagerData: join(root, "alertmanager-data"),
    /** start.sh's output: alertmanager.yml with the receivers' URLs. */
    alertmanagerConfig: join(root, "alertmanager.yml"),
    /** The secret files start.sh reads (ALERTMANAGER_*_URL_FILE), unless set in the environment. */
    pagerUrlFile: join(root, "secrets", "alertmanager_pager_url"),
    ticketUrlFile: join(root, "secrets", "alertmanager_ticket_url"),
    alertmanagerLog: join(root, "alertmanager.log"),
    alertmanagerPid: join(root, "alertmanager.pid"),
    /** Every alert the stack's receiver got, one line each. */
    alertsLog: join(root, "alerts.log"),
    alertReceiverLog: join(root, "alert-receiver.log"),
    alertReceiverPid: join(root, "alert-receiver.pid"),
    pgExporterLog: join(root, "postgres-exporter.log"),
    pgExporterPid: join(root, "postgres-exporter.pid"),
    bouncerExporterLog: join(root, "pgbouncer-exporter.log"),
    bouncerExporterPid: join(root, "pgbouncer-exporter.pid"),
    jmxLibs: join(root, "jmx-exporter"),
  };
}

/** `bun run dev`'s pool size when WORKER_POOL_SIZE is unset (the supervisor's own default is one per CPU). */
export const DEV_WORKER_POOL_SIZE = 2;

/**
 * The metrics ports `bun run dev` gives the server, the workers and the supervisor, resolved from
 * the processes' own schemas (their defaults and validation); the workers' first port is
 * WORKER_METRICS_PORT there, since METRICS_PORT is the server's. tools/dev.ts uses this too.
 */
export function appMetricsPorts(env: Record<string, string | undefined> = process.env) {
  const server = loadConfig(v.object({ METRICS_PORT: ServerConfigSchema.entries.METRICS_PORT }), env);
  const worker = loadConfig(v.object({ METRICS_PORT: WorkerConfigSchema.entries.METRICS_PORT }), {
    METRICS_PORT: env.WORKER_METRICS_PORT,
  });
  const pool = loadConfig(
    v.object({
      WORKER_POOL_SIZE: SupervisorConfigSchema.entries.WORKER_POOL_SIZE,
      SUPERVISOR_METRICS_PORT: SupervisorConfigSchema.entries.SUPERVISOR_METRICS_PORT,
    }),
    { ...env, WORKER_POOL_SIZE: env.WORKER_POOL_SIZE || String(DEV_WORKER_POOL_SIZE) },
  );
  return {
    server: server.METRICS_PORT,
    firstWorker: worker.METRICS_PORT,
    workers: pool.WORKER_POOL_SIZE,
    supervisor: pool.SUPERVISOR_METRICS_PORT,
  };
}

export type AppMetricsPorts = ReturnType<typeof appMetricsPorts>;

/** Scrape targets per job (file_sd YAML), the only part of Prometheus's configuration that depends on ports. */
export function prometheusTargets(stack: LocalStack, app: AppMetricsPorts): Record<string, string> {
  const group = (addresses: string[], labels?: Record<string, string>) =>
    `- targets: [${addresses.map((a) => `"${a}"`).join(", ")}]\n${
      labels
        ? `  labels: {${Object.entries(labels)
            .map(([k, v]) => `${k}: "${v}"`)
            .join(", ")}}\n`
        : ""
    }`;
  const at = (port: number) => `127.0.0.1:${port}`;
  const header = "# Written by tools/stack/monitoring.ts (prometheusTargets); do not edit by hand.\n";
  return {
    server: header + group([at(app.server)]),
    worker:
      header +
      Array.from({ length: app.workers }, (_, i) => group([at(app.firstWorker + i)], { worker: String(i) })).join(""),
    supervisor: header + group([at(app.supervisor)]),
    kafka: header + group(stack.kafkaNodes.map((n) => at(n.jmxExporterPort))),
    postgres: header + group([at(stack.postgresExporterPort)]),
    pgbouncer: header + group([at(stack.pgbouncerExporterPort)]),
    alertmanager: header + group([at(stack.alertmanagerPort)]),
    prometheus: header + group([at(stack.prometheusPort)]),
  };
}

/** Writes the file_sd targets; Prometheus re-reads them on change, so a running one follows. */
export function writeTargets(dir: string, targets: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const [job, text] of Object.entries(targets)) writeFileSync(join(dir, `${job}.yml`), text);
}

/** A symlink at `link` to `target`, replacing whatever was there. */
function linkTo(target: string, link: string): void {
  if (existsSync(link) || isSymlink(link)) rmSync(link, { recursive: true, force: true });
  symlinkSync(target, link);
}

const isSymlink = (path: string) => {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
};

/**
 * A directory Prometheus can run from with the committed prometheus.yml and rules (symlinked, so
 * relative paths resolve here) and the given targets. `configText` replaces the prometheus.yml link
 * with a file (tests: the committed text with shorter intervals); the rules stay the committed ones.
 */
export function preparePrometheusDir(dir: string, targets: Record<string, string>, configText?: string): string {
  mkdirSync(dir, { recursive: true });
  if (configText === undefined) linkTo(PROMETHEUS_CONFIG, join(dir, "prometheus.yml"));
  else {
    // Never write through an earlier symlink into the committed file.
    rmSync(join(dir, "prometheus.yml"), { force: true });
    writeFileSync(join(dir, "prometheus.yml"), configText);
  }
  linkTo(PROMETHEUS_RULES, join(dir, "rules"));
  writeTargets(join(dir, "targets"), targets);
  return join(dir, "prometheus.yml");
}

/** The JMX exporter javaagent jar, copied from Maven Central once (version in monitoring/jmx-exporter/pom.xml). */
export function ensureJmxExporterJar(stack: LocalStack): string {
  const dir = monitoringPaths(stack).jmxLibs;
  const find = () =>
    existsSync(dir) ? readdirSync(dir).find((f) => /^jmx_prometheus_javaagent-.*\.jar$/.test(f)) : undefined;
  let jar = find();
  if (!jar) {
    mkdirSync(dir, { recursive: true });
    console.log("stack: fetching the JMX exporter javaagent with Maven (first run only)...");
    run("mvn", [
      "-q",
      "-B",
      "-f",
      JMX_EXPORTER_POM,
      "dependency:copy-dependencies",
      `-DoutputDirectory=${dir}`,
      "-DexcludeTransitive=true",
    ]);
    jar = find();
    if (!jar) throw new Error(`Maven ran but no jmx_prometheus_javaagent jar is in ${dir}`);
  }
  return join(dir, jar);
}

/** The JVM flag that loads the exporter into a broker, serving on 127.0.0.1:port (node 1's by default). */
export function jmxExporterAgentFlag(stack: LocalStack, port = stack.kafkaJmxExporterPort): string {
  return `-javaagent:${ensureJmxExporterJar(stack)}=127.0.0.1:${port}:${JMX_EXPORTER_CONFIG}`;
}

async function answers(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  return res.ok;
}

async function startOne(opts: {
  name: string;
  pidFile: string;
  port: number;
  portVar: string;
  log: string;
  cmd: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  readyUrl: string;
  /** Re-reads its configuration on SIGHUP (Prometheus, Alertmanager): a running one is told to, so edited rules apply. */
  reloadsOnHup?: boolean;
  /** Runs before that SIGHUP (Alertmanager: render the configuration again). */
  beforeReload?: () => void;
}): Promise<void> {
  // Running but not answering (e.g. an exporter wedged by a restart of what it watches): start it anew.
  if (readPid(opts.pidFile) !== null && !(await answers(opts.readyUrl).catch(() => false))) {
    console.log(`stack: ${opts.name} runs but does not answer ${opts.readyUrl}; restarting it`);
    await stopPidFile(opts.pidFile, "SIGTERM");
  }
  if (readPid(opts.pidFile) === null) {
    if (await portOpen(opts.port)) {
      throw new Error(`port ${opts.port} is in use by another process; set ${opts.portVar} to a free port`);
    }
    writePid(opts.pidFile, startDetached(opts.cmd, opts.args, opts.log, opts.env));
  } else if (opts.reloadsOnHup) {
    opts.beforeReload?.();
    process.kill(readPid(opts.pidFile) as number, "SIGHUP");
  }
  await waitForService(`${opts.name} at ${opts.readyUrl}`, () => answers(opts.readyUrl), 60_000, opts.log);
}

/** Starts the exporters, Alertmanager and Prometheus (after Postgres and pgbouncer are up). */
export async function startMonitoring(stack: LocalStack): Promise<void> {
  const p = monitoringPaths(stack);
  mkdirSync(p.root, { recursive: true });
  preparePrometheusDir(p.prometheusDir, prometheusTargets(stack, appMetricsPorts()));
  mkdirSync(p.prometheusData, { recursive: true });
  mkdirSync(p.alertmanagerData, { recursive: true });
  const amEnv = alertmanagerEnv({
    pagerUrlFile: process.env.ALERTMANAGER_PAGER_URL_FILE || p.pagerUrlFile,
    ticketUrlFile: process.env.ALERTMANAGER_TICKET_URL_FILE || p.ticketUrlFile,
    configOut: p.alertmanagerConfig,
  });
  // The stack receiver's URLs; ALERTMANAGER_PAGER_URL_FILE / _TICKET_URL_FILE in the environment
  // name other files instead (a developer's own webhooks).
  writeReceiverUrls(p, stack.alertReceiverPort);
  // An Alertmanager started before start.sh ran on the template itself: a reload would keep it
  // there, its receivers placeholders. Start it anew, through start.sh.
  const amPid = readPid(p.alertmanagerPid);
  if (amPid !== null && !runsWith(amPid, `--config.file=${p.alertmanagerConfig}`))
    await stopPidFile(p.alertmanagerPid, "SIGTERM");
  // A Prometheus started without the feature keeps its runbook_base unexpanded through a reload.
  const promPid = readPid(p.prometheusPid);
  if (promPid !== null && !runsWith(promPid, EXPAND_EXTERNAL_LABELS)) await stopPidFile(p.prometheusPid, "SIGTERM");
  await Promise.all([
    startOne({
      name: "alert receiver",
      pidFile: p.alertReceiverPid,
      port: stack.alertReceiverPort,
      portVar: "STACK_ALERT_RECEIVER_PORT",
      log: p.alertReceiverLog,
      cmd: process.execPath,
      args: [ALERT_RECEIVER, String(stack.alertReceiverPort), p.alertsLog],
      readyUrl: `http://127.0.0.1:${stack.alertReceiverPort}/`,
    }),
    startOne({
      name: "postgres-exporter",
      pidFile: p.pgExporterPid,
      port: stack.postgresExporterPort,
      portVar: "STACK_PG_EXPORTER_PORT",
      log: p.pgExporterLog,
      cmd: "prometheus-postgres-exporter",
      args: [`--web.listen-address=127.0.0.1:${stack.postgresExporterPort}`, "--log.level=warn"],
      // The cluster's superuser over loopback (trust auth, our own cluster only).
      env: {
        ...process.env,
        DATA_SOURCE_NAME: `postgresql://postgres@127.0.0.1:${stack.pgPort}/postgres?sslmode=disable`,
      },
      readyUrl: `http://127.0.0.1:${stack.postgresExporterPort}/metrics`,
    }),
    startOne({
      name: "pgbouncer-exporter",
      pidFile: p.bouncerExporterPid,
      port: stack.pgbouncerExporterPort,
      portVar: "STACK_PGBOUNCER_EXPORTER_PORT",
      log: p.bouncerExporterLog,
      // The packaged exporter's own interpreter (it is a Debian python3 module), not whatever python3 is first.
      cmd: "/usr/bin/python3",
      args: [
        PGBOUNCER_EXPORTER,
        "--host",
        "127.0.0.1",
        "--port",
        String(stack.pgbouncerExporterPort),
        "--pgbouncer-host",
        "127.0.0.1",
        "--pgbouncer-port",
        String(stack.pgbouncerPort),
        "--pgbouncer-user",
        stack.logins.monitor.user,
      ],
      // The user is pgbouncer's stats_users (tools/stack/postgres.ts); libpq reads PGPASSWORD.
      env: { ...process.env, PGPASSWORD: stack.logins.monitor.password },
      readyUrl: `http://127.0.0.1:${stack.pgbouncerExporterPort}/metrics`,
    }),
    startOne({
      name: "Alertmanager",
      pidFile: p.alertmanagerPid,
      port: stack.alertmanagerPort,
      portVar: "STACK_ALERTMANAGER_PORT",
      log: p.alertmanagerLog,
      cmd: "sh",
      args: [ALERTMANAGER_START, ...alertmanagerArgs(p.alertmanagerData, stack.alertmanagerPort)],
      env: { ...process.env, ...amEnv },
      readyUrl: `http://127.0.0.1:${stack.alertmanagerPort}/-/ready`,
      reloadsOnHup: true,
      // SIGHUP re-reads the rendered file: render it from the template (and secrets) as they are now.
      beforeReload: () =>
        run("sh", [ALERTMANAGER_START], { env: { ...process.env, ...amEnv, ALERTMANAGER_RENDER_ONLY: "1" } }),
    }),
    startOne({
      name: "Prometheus",
      pidFile: p.prometheusPid,
      port: stack.prometheusPort,
      portVar: "STACK_PROMETHEUS_PORT",
      log: p.prometheusLog,
      cmd: "prometheus",
      args: prometheusArgs(p.prometheusConfig, p.prometheusData, stack.prometheusPort),
      env: { ...process.env, ...prometheusEnv() },
      readyUrl: `http://127.0.0.1:${stack.prometheusPort}/-/ready`,
      reloadsOnHup: true,
    }),
  ]);
}

/**
 * How long Prometheus keeps samples: the SLO dashboard's error-budget panels query 30 days, so
 * anything shorter shows a budget over whatever is left; the margin covers a month of 31 days.
 * test/unit/dashboards.test.ts checks this and compose.yaml's flag against the panels' ranges.
 */
export const PROMETHEUS_RETENTION = "35d";

/**
 * Lets prometheus.yml's external label runbook_base be ${RUNBOOK_BASE} from Prometheus'
 * environment (prometheusEnv); without it the label would be that text itself.
 */
export const EXPAND_EXTERNAL_LABELS = "--enable-feature=expand-external-labels";

export function prometheusArgs(config: string, data: string, port: number): string[] {
  return [
    `--config.file=${config}`,
    `--storage.tsdb.path=${data}`,
    `--web.listen-address=127.0.0.1:${port}`,
    `--storage.tsdb.retention.time=${PROMETHEUS_RETENTION}`,
    EXPAND_EXTERNAL_LABELS,
    "--web.enable-lifecycle",
    "--log.level=warn",
  ];
}

/**
 * Prometheus' environment on this machine: every alert's runbook_url is
 * {{ $externalLabels.runbook_base }}/<runbook>.md, and here the base is this checkout's
 * docs/runbooks as a file URL, which a browser on this machine opens.
 */
export function prometheusEnv(): Record<string, string> {
  return { RUNBOOK_BASE: pathToFileURL(RUNBOOKS_DIR).href };
}

/**
 * The environment of monitoring/alertmanager/start.sh for Debian's Alertmanager: where the
 * receivers' URLs are, where to write the rendered configuration, and (tests) another template.
 */
export function alertmanagerEnv(opts: {
  pagerUrlFile: string;
  ticketUrlFile: string;
  configOut: string;
  template?: string;
}): Record<string, string> {
  return {
    ALERTMANAGER_BIN: "prometheus-alertmanager",
    ALERTMANAGER_PAGER_URL_FILE: opts.pagerUrlFile,
    ALERTMANAGER_TICKET_URL_FILE: opts.ticketUrlFile,
    ALERTMANAGER_CONFIG_OUT: opts.configOut,
    ...(opts.template ? { ALERTMANAGER_TEMPLATE: opts.template } : {}),
  };
}

/** Whether process `pid` was started with the argument `arg` (Linux: its /proc command line). */
function runsWith(pid: number, arg: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(arg);
  } catch {
    return true; // no /proc: leave it to the reload
  }
}

/** The stack receiver's URL for each route, written where start.sh reads them by default here. */
function writeReceiverUrls(p: ReturnType<typeof monitoringPaths>, port: number): void {
  mkdirSync(dirname(p.pagerUrlFile), { recursive: true, mode: 0o700 });
  writeFileSync(p.pagerUrlFile, `http://127.0.0.1:${port}/pager\n`);
  writeFileSync(p.ticketUrlFile, `http://127.0.0.1:${port}/ticket\n`);
}

/** Alertmanager's flags after start.sh's --config.file: storage, loopback listener, no cluster. */
export function alertmanagerArgs(data: string, port: number): string[] {
  return [
    `--storage.path=${data}`,
    `--web.listen-address=127.0.0.1:${port}`,
    // No cluster: the default gossip port (9094) is not ours to take.
    "--cluster.listen-address=",
    "--log.level=warn",
  ];
}

export async function stopMonitoring(stack: LocalStack): Promise<void> {
  const p = monitoringPaths(stack);
  await Promise.all(
    [p.prometheusPid, p.alertmanagerPid, p.pgExporterPid, p.bouncerExporterPid, p.alertReceiverPid].map((f) =>
      stopPidFile(f, "SIGTERM"),
    ),
  );
}

export function monitoringStatus(stack: LocalStack) {
  const p = monitoringPaths(stack);
  return [
    {
      name: "prometheus",
      pid: readPid(p.prometheusPid),
      where: `PROMETHEUS_URL=http://127.0.0.1:${stack.prometheusPort}`,
    },
    {
      name: "alertmanager",
      pid: readPid(p.alertmanagerPid),
      where: `ALERTMANAGER_URL=http://127.0.0.1:${stack.alertmanagerPort}`,
    },
    {
      name: "alert-rx",
      pid: readPid(p.alertReceiverPid),
      where: `alerts in ${p.alertsLog}`,
    },
    {
      name: "pg-export",
      pid: readPid(p.pgExporterPid),
      where: `http://127.0.0.1:${stack.postgresExporterPort}/metrics`,
    },
    {
      name: "pgb-export",
      pid: readPid(p.bouncerExporterPid),
      where: `http://127.0.0.1:${stack.pgbouncerExporterPort}/metrics`,
    },
  ];
}
