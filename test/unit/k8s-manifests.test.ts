// The Kubernetes manifests (deploy/k8s/): every overlay renders with Debian's kubectl 1.20
// (kustomize v2.0.3) and, where installed, the current kubectl (kustomize v5), to the same objects;
// every object passes its schema (kubernetes-models, @kubernetes-models/keda and /argo-rollouts);
// and the objects agree with each other and with the product: selectors select pods, probes and
// Services name ports that exist, referenced ConfigMaps exist and Secrets are the documented
// external ones, autoscaler and rollout targets exist, KEDA stops at the partition count, and the
// canary analysis queries metrics the server exports with the SLOs' thresholds, in its namespace.
// Also: the CronJobs run images the Dockerfile builds; a config change renames the generated
// ConfigMap and so changes the pod template (the canary); the server stays Ready during a Kafka
// outage; the Prometheus config scrapes Kafka, Postgres and pgbouncer and labels the namespace;
// the PrometheusRule objects are the rule files'. deploy/k8s/monitoring (promtail and
// Alertmanager, once per cluster) renders the same with both kubectl versions, passes its schemas
// and the DaemonSet's checks (promtailProblems), its config discovers each overlay's pods and
// parses their lines, and Alertmanager's start.sh renders a config amtool accepts from its Secret.
//
// Mutations, each applied alone and caught (2026-11-26): `patches:` with a target in an overlay
// (v2.0.3 refuses it); HPA minReplicas "2"; a kafka trigger without type; setWeight "50"; unknown
// fields readinesProbe, abortScaleDownDelay, pollInterval, consecutiveErrorLimits; the Service's
// selector or targetPort; a probe on an undeclared port; a ConfigMap name or Secret key that does
// not exist; the HPA's, KEDA's or the Rollout's target renamed; maxReplicaCount 16; no scale-down
// window; topicFromEnv naming an unset variable; the analysis template renamed; weights 20/50/100;
// http_request_total; a query over all pods; p95 > 1; the server's metrics port open to all; a
// NetworkPolicy or PDB selecting nothing; readOnlyRootFilesystem false; another runAsUser; no CPU
// limit; the worker as the supervisor; METRICS_PORT 9471 or 127.0.0.1 in a ConfigMap; the Secret
// undocumented; the Prometheus job without its labelmap. 2026-12-06: the worker reading the edge's
// Secret; the documented key-refresh URL with sslmode=require; TRUSTED_PROXIES "" (start-up
// refused), "10.0.0.0/33" (refused), or "10.0.0.1" (the pod network's address not trusted); the server mounting the
// worker's Kafka Secret; the worker's ConfigMap without KAFKA_SECURITY_PROTOCOL.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { KafkaProducer } from "bun-rdkafka";
import type { Sql } from "postgres";
import { ruleExpressions, selectors } from "../../dashboards/src/promql.ts";
import { MaintainConfigSchema } from "../../jobs/retention/config.ts";
import { createApp } from "../../server/app.ts";
import { ServerConfigSchema, loadServerConfig } from "../../server/config.ts";
import { createServerMetrics } from "../../server/metrics.ts";
import { TrustedProxies } from "../../server/trusted-proxies.ts";
import { newSecret } from "../../shared/api-keys.ts";
import { loadConfig } from "../../shared/config.ts";
import { TOPICS } from "../../shared/local-stack.ts";
import { createLogger } from "../../shared/logger.ts";
import { createRegistry } from "../../shared/metrics.ts";
import { IMAGES } from "../../tools/images/names.ts";
import { COPIES as ALERTMANAGER_COPIES, REGENERATE as REGENERATE_ALERTMANAGER } from "../../tools/k8s-alertmanager.ts";
import { REGENERATE as REGENERATE_PROMTAIL, renderPromtailConfig } from "../../tools/k8s-promtail.ts";
import { REGENERATE, renderPrometheusRules } from "../../tools/k8s-rules.ts";
import { legacyKubectl } from "../../tools/kubectl-legacy.ts";
import { POSTGRES_SETTINGS } from "../../tools/stack/postgres.ts";
import { SupervisorConfigSchema, WorkerConfigSchema } from "../../worker/config.ts";
import {
  type Container,
  type K8sObject,
  type PodTemplate,
  checkManifests,
  pgbouncerExporterMetrics,
  podTemplateOf,
  promtailProblems,
  schemaProblems,
  unknownFieldProblems,
} from "../helpers/k8s-checks.ts";
import { PromtailConfig, criLine } from "../helpers/promtail-pipeline.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const K8S = join(ROOT, "deploy/k8s");
const OVERLAYS = ["dev", "staging", "prod"] as const;

/** What kustomize v5 says about the v2-compatible dialect; anything else on stderr is a failure. */
const KNOWN_WARNINGS = [
  /^# Warning: 'bases' is deprecated\..*$/,
  /^# Warning: 'patchesStrategicMerge' is deprecated\..*$/,
];

function render(kubectl: string, dir: string): K8sObject[] {
  const res = spawnSync(kubectl, ["kustomize", dir], { encoding: "utf8", timeout: 60_000 });
  const unexpected = res.stderr
    .split("\n")
    .filter((l) => l.trim() && !KNOWN_WARNINGS.some((w) => w.test(l)))
    .join("\n");
  if (res.status !== 0 || unexpected) {
    throw new Error(`${kubectl} kustomize ${dir}: exit ${res.status ?? res.signal}\n${unexpected || res.stderr}`);
  }
  const docs = Bun.YAML.parse(res.stdout) as K8sObject | K8sObject[];
  return Array.isArray(docs) ? docs : [docs];
}

const sorted = (objs: K8sObject[]) =>
  [...objs].sort((a, b) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`));

/** The ConfigMaps the kustomizations generate (their names get a hash of their data appended). */
const GENERATED = [
  "qrscan-server-config",
  "qrscan-worker-config",
  "qrscan-maintain-config",
  "promtail-config",
  "alertmanager-config",
];
const HASHED = new RegExp(`\\b(${GENERATED.join("|")})-[a-z0-9]{10}\\b`, "g");
/**
 * kustomize v2.0.3 and v5 hash a generated ConfigMap's data differently (both from its data, so both
 * rename it on a change), and v2.0.3 writes empty labels/annotations on a merged one: the rest must
 * be equal. Each version's own names are checked to be consistent by the checks below (references
 * resolve) and by the config-change test.
 */
function comparable(objs: K8sObject[]): K8sObject[] {
  const text = JSON.stringify(sorted(objs)).replace(HASHED, "$1-<hash>");
  const empty = (v: unknown) => typeof v === "object" && v !== null && Object.keys(v).length === 0;
  return (JSON.parse(text) as K8sObject[]).map((o) => ({
    ...o,
    metadata: Object.fromEntries(
      Object.entries(o.metadata).filter(([k, v]) => !(["labels", "annotations"].includes(k) && empty(v))),
    ) as K8sObject["metadata"],
  }));
}

/** A generated ConfigMap's data by its name before the hash suffix. */
const configMapData = (objs: K8sObject[], name: string) =>
  (objs.find((o) => o.kind === "ConfigMap" && new RegExp(`^${name}(-[a-z0-9]{10})?$`).test(o.metadata.name))?.data ??
    {}) as Record<string, string>;

let legacy = "";
const modern = spawnSync("sh", ["-c", "command -v kubectl"], { encoding: "utf8" }).stdout.trim();
const rendered = new Map<string, K8sObject[]>();

beforeAll(() => {
  // Fetched once (apt-get download + dpkg-deb), outside the tests' own time.
  legacy = legacyKubectl();
  for (const env of OVERLAYS) rendered.set(env, render(legacy, join(K8S, "overlays", env)));
}, 240_000);

describe("kustomize renders every overlay", () => {
  test("Debian's kubectl is 1.20 (kustomize v2.0.3), the oldest dialect promised", () => {
    const res = spawnSync(legacy, ["version", "--client", "--short"], { encoding: "utf8", timeout: 30_000 });
    expect(res.stdout).toContain("v1.20.");
  });

  for (const env of OVERLAYS) {
    test(`${env}: kustomize v2 and the installed kubectl render the same objects`, () => {
      const old = rendered.get(env) ?? [];
      expect(old.length).toBeGreaterThan(10);
      if (!modern) {
        // CI installs kubectl: there, a missing one is a failure, never a skipped comparison.
        if (process.env.CI)
          throw new Error("kubectl is not on PATH in CI: the kustomize v5 rendering was not compared");
        // The v2 rendering is still checked by every test below; say that v5 was not compared.
        console.warn("kubectl not on PATH: only Debian's kubectl 1.20 rendered the overlays");
        return;
      }
      expect(comparable(render(modern, join(K8S, "overlays", env)))).toEqual(comparable(old));
    });
  }
});

describe("every object passes its schema and the cross-object checks", () => {
  for (const env of OVERLAYS) {
    test(`${env}`, async () => {
      const problems = await checkManifests(rendered.get(env) ?? [], {
        namespace: `qrscan-${env}`,
        partitions: TOPICS.scans.partitions,
        serverMetrics: readFileSync(join(ROOT, "server/metrics.ts"), "utf8"),
        deploymentDoc: readFileSync(join(ROOT, "docs/deployment.md"), "utf8"),
        dockerfile: existsSync(join(ROOT, "Dockerfile")) ? readFileSync(join(ROOT, "Dockerfile"), "utf8") : null,
        images: IMAGES,
      });
      expect(problems).toEqual([]);
    });
  }
});

test("no object has a field its kind does not define (TypeScript's excess-property check on the models' types)", () => {
  const objects = OVERLAYS.flatMap((env) =>
    (rendered.get(env) ?? []).map((object) => ({ label: `${env}: ${object.kind}/${object.metadata.name}`, object })),
  );
  expect(unknownFieldProblems(objects, ROOT)).toEqual([]);
}, 120_000);

/** Files in place of the Kafka Secrets the pods mount (a CA certificate and a password). */
const kafkaSecretsDir = mkdtempSync(join(tmpdir(), "k8s-kafka-secrets-"));
afterAll(() => rmSync(kafkaSecretsDir, { recursive: true, force: true }));
function mountedKafkaSecrets(): Record<string, string> {
  const ca = join(kafkaSecretsDir, "ca.crt");
  const password = join(kafkaSecretsDir, "password");
  writeFileSync(ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  writeFileSync(password, "not-a-real-password\n");
  return { KAFKA_SSL_CA_FILE: ca, KAFKA_SASL_PASSWORD_FILE: password };
}

describe("the manifests run the product as configured", () => {
  const pods = (env: string) => {
    const out = new Map<string, PodTemplate>();
    for (const o of rendered.get(env) ?? []) {
      const t = podTemplateOf(o);
      if (t?.spec?.containers) out.set(`${o.kind}/${o.metadata.name}`, t);
    }
    return out;
  };

  test("the ConfigMaps' ports are the containers' ports, and the listeners bind the pod's address", () => {
    for (const env of OVERLAYS) {
      const objs = rendered.get(env) ?? [];
      const data = (name: string) => configMapData(objs, name);
      const server = pods(env).get("Deployment/qrscan-server")?.spec.containers[0];
      const worker = pods(env).get("Deployment/qrscan-worker")?.spec.containers[0];
      const port = (c: typeof server, name: string) => c?.ports?.find((p) => p.name === name)?.containerPort;
      const s = data("qrscan-server-config");
      const w = data("qrscan-worker-config");
      expect([port(server, "http"), port(server, "metrics")]).toEqual([Number(s.PORT), Number(s.METRICS_PORT)]);
      expect(port(worker, "metrics")).toBe(Number(w.METRICS_PORT));
      expect(port(worker, "supervisor")).toBe(Number(w.SUPERVISOR_METRICS_PORT));
      // The ConfigMaps parse with the processes' own schemas, and keep their default ports
      // (the ones docs/operations.md and the Prometheus targets name).
      const sc = loadConfig(ServerConfigSchema, s);
      const wc = loadConfig(WorkerConfigSchema, w);
      const defaults = { server: loadConfig(ServerConfigSchema, {}), worker: loadConfig(WorkerConfigSchema, {}) };
      expect([sc.PORT, sc.METRICS_PORT]).toEqual([defaults.server.PORT, defaults.server.METRICS_PORT]);
      expect(wc.METRICS_PORT).toBe(defaults.worker.METRICS_PORT);
      expect([sc.HOST, sc.METRICS_HOST, wc.METRICS_HOST]).toEqual(["0.0.0.0", "0.0.0.0", "0.0.0.0"]);
      // KEDA's trigger reads the worker's own topic and group.
      expect(wc.SCANS_TOPIC).toBe(TOPICS.scans.name);
      expect(wc.CONSUMER_GROUP).toBe(defaults.worker.CONSUMER_GROUP);
      // Every key is a variable the process reads: one it no longer reads (RATE_LIMIT_REPLICAS,
      // now counted at run time) would be a setting that silently does nothing.
      const unread = (data: Record<string, string>, entries: object) =>
        Object.keys(data).filter((k) => !(k in entries) && !k.startsWith("KAFKA_OPT_"));
      expect(unread(s, ServerConfigSchema.entries)).toEqual([]);
      expect(unread(w, { ...WorkerConfigSchema.entries, ...SupervisorConfigSchema.entries })).toEqual([]);
      // The maintain job's settings: its own schema's, parsed.
      const m = data("qrscan-maintain-config");
      expect(unread(m, MaintainConfigSchema.entries)).toEqual([]);
      expect(loadConfig(MaintainConfigSchema, m).ARCHIVE_DIR).toBe("/archive");
    }
  });

  test("the server says where client addresses come from: the ingress's pod network in TRUSTED_PROXIES, a valid CIDR", () => {
    for (const env of OVERLAYS) {
      const data = configMapData(rendered.get(env) ?? [], "qrscan-server-config");
      // The whole start-up check (HOST 0.0.0.0 needs TRUSTED_PROXIES or CLIENTS_CONNECT_DIRECTLY),
      // with a static key standing in for the database Secret's settings and files standing in for
      // the mounted Kafka Secrets.
      const c = loadServerConfig({ ...data, ...mountedKafkaSecrets(), API_KEY_SHA256: "ab".repeat(32) });
      expect({ env, direct: c.CLIENTS_CONNECT_DIRECTLY }).toEqual({ env, direct: false });
      expect(c.TRUSTED_PROXIES.length).toBeGreaterThan(0);
      // A pod of the cluster's network (kubeadm's flannel default) is trusted; the internet is not.
      const trusted = new TrustedProxies(c.TRUSTED_PROXIES);
      expect([trusted.has("10.244.1.17"), trusted.has("203.0.113.7")]).toEqual([true, false]);
    }
  });

  test("the server and the workers reach Kafka over SASL_SSL as their own principal, password and CA from mounted Secrets", () => {
    for (const env of OVERLAYS) {
      const objs = rendered.get(env) ?? [];
      for (const [name, config, principal] of [
        ["Deployment/qrscan-server", "qrscan-server-config", "edge"],
        ["Deployment/qrscan-worker", "qrscan-worker-config", "worker"],
      ] as const) {
        const data = configMapData(objs, config);
        expect({ env, config, protocol: data.KAFKA_SECURITY_PROTOCOL, user: data.KAFKA_SASL_USERNAME }).toEqual({
          env,
          config,
          protocol: "sasl_ssl",
          user: principal,
        });
        // Not a password in sight: the file's directory is a volume of the principal's own Secret.
        expect(Object.keys(data).filter((k) => /PASSWORD(?!_FILE)/.test(k))).toEqual([]);
        const pod = pods(env).get(name);
        const mounts = pod?.spec.containers[0]?.volumeMounts ?? [];
        const secretOf = (file: string | undefined) => {
          const mount = mounts.find((m) => file?.startsWith(`${m.mountPath}/`));
          const volume = pod?.spec.volumes?.find((v) => v.name === mount?.name);
          const key = file?.slice((mount?.mountPath.length ?? 0) + 1);
          const item = volume?.secret?.items?.find((i) => i.path === key);
          return `${volume?.secret?.secretName}/${item?.key}`;
        };
        expect(secretOf(data.KAFKA_SASL_PASSWORD_FILE)).toBe(`qrscan-kafka-${principal}/password`);
        expect(secretOf(data.KAFKA_SSL_CA_FILE)).toBe("qrscan-kafka-ca/ca.crt");
      }
      // KEDA reads the lag as the worker, over TLS.
      const so = objs.find((o) => o.kind === "ScaledObject");
      const trigger = (
        so?.spec as { triggers: { metadata: Record<string, string>; authenticationRef?: { name: string } }[] }
      ).triggers[0];
      expect([trigger?.metadata.sasl, trigger?.metadata.tls]).toEqual(["scram_sha512", "enable"]);
      const auth = objs.find(
        (o) => o.kind === "TriggerAuthentication" && o.metadata.name === trigger?.authenticationRef?.name,
      );
      expect(auth?.spec).toMatchObject({
        secretTargetRef: expect.arrayContaining([
          { parameter: "password", name: "qrscan-kafka-worker", key: "password" },
        ]),
      });
    }
  });

  test("each worker pod runs the supervisor with one worker, so the group's lag is exported", () => {
    for (const env of OVERLAYS) {
      const worker = pods(env).get("Deployment/qrscan-worker")?.spec.containers[0];
      expect(worker?.command).toEqual(["bun", "worker/supervisor.ts"]);
      const w = configMapData(rendered.get(env) ?? [], "qrscan-worker-config");
      expect(loadConfig(SupervisorConfigSchema, w).WORKER_POOL_SIZE).toBe(1);
      expect(pods(env).get("CronJob/qrscan-maintain")?.spec.containers[0]?.command).toEqual([
        "bun",
        "jobs/maintain.ts",
      ]);
      expect(pods(env).get("Deployment/qrscan-server")?.spec.containers[0]?.command).toEqual(["bun", "server/main.ts"]);
      expect(pods(env).get("Job/qrscan-migrate")?.spec.containers[0]?.command).toEqual(["bun", "sql/migrate.ts"]);
    }
  });

  test("each process reads its own database role's Secret: migrate the owner's, the server the edge's, the workers the worker's", () => {
    const secretsOf = (pod: string, env: string) =>
      (pods(env).get(pod)?.spec.containers[0]?.env ?? [])
        .filter((e) => e.valueFrom?.secretKeyRef)
        .map((e) => `${e.name}=${e.valueFrom?.secretKeyRef?.name}/${e.valueFrom?.secretKeyRef?.key}`)
        .sort();
    for (const env of OVERLAYS) {
      expect(secretsOf("Job/qrscan-migrate", env)).toEqual([
        "DATABASE_DIRECT_URL=qrscan-database-owner/DATABASE_DIRECT_URL",
      ]);
      expect(secretsOf("Deployment/qrscan-server", env)).toEqual([
        "API_KEYS_DATABASE_URL=qrscan-database-edge/API_KEYS_DATABASE_URL",
        "DATABASE_URL=qrscan-database-edge/DATABASE_URL",
      ]);
      expect(secretsOf("Deployment/qrscan-worker", env)).toEqual(["DATABASE_URL=qrscan-database-worker/DATABASE_URL"]);
      expect(secretsOf("CronJob/qrscan-maintain", env)).toEqual([
        "DATABASE_DIRECT_URL=qrscan-database-owner/DATABASE_DIRECT_URL",
      ]);
      // The operator's toolbox: the owner's URL for every job, in no running pod by default.
      expect(secretsOf("Deployment/qrscan-ops", env)).toEqual([
        "DATABASE_DIRECT_URL=qrscan-database-owner/DATABASE_DIRECT_URL",
        "DATABASE_URL=qrscan-database-owner/DATABASE_DIRECT_URL",
      ]);
      const ops = (rendered.get(env) ?? []).find((o) => o.kind === "Deployment" && o.metadata.name === "qrscan-ops");
      expect((ops?.spec as { replicas?: number } | undefined)?.replicas).toBe(0);
    }
    // The documented Secrets: every URL verifies the server's certificate and name, and each role
    // has its own login (the key refresh on pgbouncer's `_keys` alias).
    const doc = readFileSync(join(ROOT, "docs/deployment.md"), "utf8");
    const urls = [...doc.matchAll(/--from-literal=([A-Z_]+)='(postgres[^']*)'/g)].map((m) => ({
      key: m[1],
      url: m[2],
    }));
    expect(urls.map((u) => u.key).sort()).toEqual(
      ["API_KEYS_DATABASE_URL", "DATABASE_DIRECT_URL", "DATABASE_URL", "DATABASE_URL"].sort(),
    );
    for (const u of urls) expect(u).toEqual({ key: u.key, url: expect.stringMatching(/[?&]sslmode=verify-full(&|$)/) });
    expect(new Set(urls.map((u) => /^postgres:\/\/([^:]+):/.exec(u.url ?? "")?.[1])).size).toBe(3);
    expect(urls.find((u) => u.key === "API_KEYS_DATABASE_URL")?.url).toMatch(/\/qrscan_keys\?/);
  });

  test("the images are the ones the build makes, at the overlay's release tag; the jobs included", () => {
    const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    for (const env of OVERLAYS) {
      const images = Object.fromEntries(
        [...pods(env)].map(([owner, t]) => [owner, t.spec.containers.map((c) => c.image).join(",")]),
      );
      expect(images).toEqual({
        "Deployment/qrscan-server": `${IMAGES.server}:${version}`,
        "Deployment/qrscan-worker": `${IMAGES.worker}:${version}`,
        "Job/qrscan-migrate": `${IMAGES.worker}:${version}`,
        "CronJob/qrscan-maintain": `${IMAGES.worker}:${version}`,
        "Deployment/qrscan-ops": `${IMAGES.worker}:${version}`,
        "CronJob/qrscan-backup-full": `${IMAGES.backup}:${version}`,
        "CronJob/qrscan-backup-diff": `${IMAGES.backup}:${version}`,
      });
    }
  });

  test("a Kafka outage keeps the server Ready, answering POST /v1/scans with 503 and Retry-After (the edge SLI counts it)", async () => {
    for (const env of OVERLAYS) {
      const server = pods(env).get("Deployment/qrscan-server")?.spec.containers[0];
      const data = configMapData(rendered.get(env) ?? [], "qrscan-server-config");
      const key = newSecret();
      const keySha = createHash("sha256").update(key).digest("hex");
      const config = loadServerConfig({ ...data, ...mountedKafkaSecrets(), API_KEY_SHA256: keySha });
      // The readiness probe's endpoint, run by the app with the pod's settings and a producer
      // that connected once and is not connected now (Kafka down): the pod stays in the Service.
      const producer = { connected: false, hasConnected: true, fatalError: null } as unknown as KafkaProducer;
      const app = createApp({
        config,
        producer,
        sql: {} as Sql,
        metrics: createServerMetrics(createRegistry("k8s-test"), () => null),
        logger: createLogger("k8s-test", "silent"),
        isDraining: () => false,
      });
      const path = server?.readinessProbe?.httpGet?.path ?? "";
      expect({ env, path, status: (await app.request(path)).status }).toEqual({ env, path: "/ready", status: 200 });
      const scan = await app.request("/v1/scans", {
        method: "POST",
        headers: { "x-api-key": key, "content-type": "application/json" },
        body: "{}",
      });
      expect({ env, status: scan.status, retryAfter: scan.headers.get("retry-after") }).toEqual({
        env,
        status: 503,
        retryAfter: String(config.RETRY_AFTER_SECONDS),
      });
    }
  });
});

describe("Prometheus in Kubernetes (deploy/k8s/prometheus/prometheus.yml)", () => {
  interface Relabel {
    source_labels?: string[];
    regex?: string;
    action?: string;
    target_label?: string;
    replacement?: string;
  }
  interface ScrapeConfig {
    job_name: string;
    honor_labels?: boolean;
    kubernetes_sd_configs: { role: string; namespaces?: { names: string[] } }[];
    relabel_configs: Relabel[];
  }
  const config = Bun.YAML.parse(readFileSync(join(K8S, "prometheus/prometheus.yml"), "utf8")) as {
    rule_files: string[];
    alerting?: { alertmanagers?: { static_configs?: { targets: string[] }[] }[] };
    scrape_configs: ScrapeConfig[];
  };
  const pods = config.scrape_configs.find((j) => j.job_name === "qrscan-pods");
  const relabel = pods?.relabel_configs ?? [];
  const keepIn = (rules: Relabel[], meta: string) =>
    new RegExp(`^(?:${rules.find((r) => r.action === "keep" && r.source_labels?.[0] === meta)?.regex})$`);
  const keep = (meta: string) => keepIn(relabel, meta);

  /**
   * Prometheus' relabelling of one target (replace, keep, labelmap: what these jobs use), then its
   * default job label; null when dropped. Enough to say which job and namespace a pod's series get.
   */
  function relabelTarget(
    job: ScrapeConfig,
    meta: Record<string, string>,
    keepMeta = false,
  ): Record<string, string> | null {
    let labels: Record<string, string> = { job: job.job_name, __metrics_path__: "/metrics", ...meta };
    for (const r of job.relabel_configs) {
      const value = (r.source_labels ?? []).map((l) => labels[l] ?? "").join(";");
      const re = new RegExp(`^(?:${r.regex ?? "(.*)"})$`);
      if (r.action === "keep") {
        if (!re.test(value)) return null;
      } else if (r.action === "labelmap") {
        for (const [k, v] of Object.entries(labels)) if (re.test(k)) labels[k.replace(re, "$1")] = v;
      } else if (re.test(value) && r.target_label) {
        labels[r.target_label] = value.replace(re, r.replacement ?? "$1");
      } else if (!r.action && !r.target_label) throw new Error(`unmodelled relabel rule ${JSON.stringify(r)}`);
    }
    if (!keepMeta) labels = Object.fromEntries(Object.entries(labels).filter(([k]) => !k.startsWith("__")));
    return labels;
  }
  const podMeta = (namespace: string, podLabels: Record<string, string>, port: string) => ({
    __meta_kubernetes_namespace: namespace,
    __meta_kubernetes_pod_name: "p-0",
    __meta_kubernetes_pod_container_port_name: port,
    ...Object.fromEntries(
      Object.entries(podLabels).map(([k, v]) => [`__meta_kubernetes_pod_label_${k.replace(/[^a-zA-Z0-9_]/g, "_")}`, v]),
    ),
  });
  /**
   * The targets the jobs make of one discovered object: only jobs discovering its role (pod unless
   * given), in its namespace where they list namespaces.
   */
  const scrapedBy = (meta: Record<string, string>, role = "pod", keepMeta = false) =>
    config.scrape_configs.flatMap((j) => {
      const sd = j.kubernetes_sd_configs.find((c) => c.role === role);
      const ns = meta.__meta_kubernetes_namespace;
      if (!sd || (sd.namespaces && ns !== undefined && !sd.namespaces.names.includes(ns))) return [];
      const l = relabelTarget(j, meta, keepMeta);
      return l ? [l] : [];
    });

  test("it scrapes the metrics ports of every qrscan pod in every environment, and nothing else", () => {
    expect(pods?.kubernetes_sd_configs[0]?.namespaces?.names.sort()).toEqual(OVERLAYS.map((e) => `qrscan-${e}`).sort());
    for (const env of OVERLAYS) {
      for (const o of rendered.get(env) ?? []) {
        const t = podTemplateOf(o);
        if (!t || o.kind === "Job" || o.kind === "CronJob") continue;
        expect(t.metadata?.labels?.["app.kubernetes.io/part-of"] ?? "").toMatch(
          keep("__meta_kubernetes_pod_label_app_kubernetes_io_part_of"),
        );
        const ports = t.spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.name ?? ""));
        const scraped = ports.filter((p) => keep("__meta_kubernetes_pod_container_port_name").test(p));
        // The metrics ports only: never the API port.
        expect({ owner: o.metadata.name, scraped }).toEqual({
          owner: o.metadata.name,
          scraped:
            o.metadata.name === "qrscan-worker"
              ? ["metrics", "supervisor"]
              : o.metadata.name === "qrscan-ops" // the idle toolbox exports nothing
                ? []
                : ["metrics"],
        });
      }
    }
  });

  test("every series carries its pod's namespace, and the jobs are named as the rules name them", () => {
    expect(relabel).toContainEqual({ action: "labelmap", regex: "__meta_kubernetes_pod_label_(.+)" });
    const seen: Record<string, string>[] = [];
    for (const env of OVERLAYS) {
      for (const o of rendered.get(env) ?? []) {
        const t = podTemplateOf(o);
        for (const c of t?.spec.containers ?? [])
          for (const p of c.ports ?? [])
            for (const l of scrapedBy(podMeta(`qrscan-${env}`, t?.metadata?.labels ?? {}, p.name ?? "")))
              seen.push({ job: l.job ?? "", namespace: l.namespace ?? "", port: String(p.containerPort) });
      }
    }
    expect(new Set(seen.map((s) => `${s.namespace} ${s.job} ${s.port}`))).toEqual(
      new Set(
        OVERLAYS.flatMap((e) => [`qrscan-${e} server 9464`, `qrscan-${e} worker 9470`, `qrscan-${e} supervisor 9469`]),
      ),
    );
    // The rules read consumer_group_* from the supervisor job: the name in the local stack too.
    const local = readFileSync(join(ROOT, "monitoring/prometheus/prometheus.yml"), "utf8");
    for (const job of ["server", "worker", "supervisor", "kafka", "postgres", "pgbouncer"])
      expect(local).toContain(`job_name: ${job}\n`);
  });

  test("Kafka's JMX exporter, postgres_exporter and pgbouncer_exporter are scraped as kafka, postgres, pgbouncer, with their environment's namespace", () => {
    // A broker's series carry the namespace of the environment it serves, so that Alertmanager's
    // equal: [namespace] inhibitions (TargetDown{job="kafka"} over EdgeUnavailable) and the
    // dashboards' $namespace match the app's series; the pod's own namespace stays as kafka_namespace.
    const kafkaNamespaces = config.scrape_configs.find((j) => j.job_name === "kafka")?.kubernetes_sd_configs[0]
      ?.namespaces?.names;
    expect(kafkaNamespaces?.sort()).toEqual(OVERLAYS.map((e) => `kafka-${e}`).sort());
    for (const env of OVERLAYS) {
      const got = scrapedBy(podMeta(`kafka-${env}`, { "app.kubernetes.io/name": "kafka" }, "metrics"));
      expect(got.map((l) => ({ job: l.job, namespace: l.namespace, kafka_namespace: l.kafka_namespace }))).toEqual([
        { job: "kafka", namespace: `qrscan-${env}`, kafka_namespace: `kafka-${env}` },
      ]);
    }
    const inhibitions = (
      Bun.YAML.parse(readFileSync(join(ROOT, "monitoring/alertmanager/alertmanager.yml"), "utf8")) as {
        inhibit_rules?: { source_matchers?: string[]; equal?: string[] }[];
      }
    ).inhibit_rules?.filter((r) => r.source_matchers?.some((m) => /job\s*=~?\s*"?[^,]*kafka/.test(m)));
    // The inhibitions a broker's alert makes match on the namespace this job gives it.
    expect(inhibitions?.length).toBeGreaterThan(0);
    for (const r of inhibitions ?? []) expect(r.equal).toContain("namespace");
    const cases = [
      [podMeta("kafka-prod", { "app.kubernetes.io/name": "kafka" }, "metrics"), "kafka", "qrscan-prod"],
      [podMeta("qrscan-prod", { "app.kubernetes.io/name": "postgres-exporter" }, "metrics"), "postgres", "qrscan-prod"],
      [podMeta("qrscan-dev", { "app.kubernetes.io/name": "pgbouncer-exporter" }, "metrics"), "pgbouncer", "qrscan-dev"],
    ] as const;
    for (const [meta, job, namespace] of cases) {
      const got = scrapedBy(meta).map((l) => ({ job: l.job, namespace: l.namespace }));
      expect(got).toEqual([{ job, namespace }]);
    }
    // Only the exporters' metrics port.
    expect(scrapedBy(podMeta("kafka-prod", { "app.kubernetes.io/name": "kafka" }, "tcp-clients"))).toEqual([]);
    // Every job of pods in the app's or Kafka's namespaces labels the pod's namespace.
    for (const j of config.scrape_configs.filter((c) => c.kubernetes_sd_configs.some((sd) => sd.role === "pod")))
      expect({
        job: j.job_name,
        namespace: j.relabel_configs.some(
          (r) => r.source_labels?.[0] === "__meta_kubernetes_namespace" && r.target_label === "namespace",
        ),
      }).toEqual({ job: j.job_name, namespace: true });
  });

  // The cluster's exporters as their standard manifests run them: kube-state-metrics' Service in
  // kube-system (port http-metrics; the Helm chart's is http), and every node.
  const ksmEndpoint = (port: string, namespace = "kube-system") => ({
    __meta_kubernetes_namespace: namespace,
    __meta_kubernetes_service_name: "kube-state-metrics",
    __meta_kubernetes_service_label_app_kubernetes_io_name: "kube-state-metrics",
    __meta_kubernetes_endpoint_port_name: port,
  });
  const NODE = { __meta_kubernetes_node_name: "node-1" };

  test("kube-state-metrics by its Service, each node's kubelet and cAdvisor through the API server, their series' own namespace kept", () => {
    expect(scrapedBy(ksmEndpoint("http-metrics"), "endpoints").map((l) => l.job)).toEqual(["kube-state-metrics"]);
    expect(scrapedBy(ksmEndpoint("http"), "endpoints").map((l) => l.job)).toEqual(["kube-state-metrics"]);
    // Not its own telemetry port, nor a copy elsewhere.
    expect(scrapedBy(ksmEndpoint("telemetry"), "endpoints")).toEqual([]);
    expect(scrapedBy(ksmEndpoint("http-metrics", "default"), "endpoints")).toEqual([]);
    const nodes = scrapedBy(NODE, "node", true).sort((a, b) => (a.job ?? "").localeCompare(b.job ?? ""));
    expect(
      nodes.map((l) => ({ job: l.job, instance: l.instance, address: l.__address__, path: l.__metrics_path__ })),
    ).toEqual([
      {
        job: "cadvisor",
        instance: "node-1",
        address: "kubernetes.default.svc:443",
        path: "/api/v1/nodes/node-1/proxy/metrics/cadvisor",
      },
      {
        job: "kubelet",
        instance: "node-1",
        address: "kubernetes.default.svc:443",
        path: "/api/v1/nodes/node-1/proxy/metrics",
      },
    ]);
    type Https = ScrapeConfig & {
      scheme?: string;
      authorization?: { credentials_file?: string };
      tls_config?: { ca_file?: string };
    };
    for (const job of ["kubelet", "cadvisor"]) {
      const j = config.scrape_configs.find((c) => c.job_name === job) as Https | undefined;
      expect({ job, scheme: j?.scheme, token: j?.authorization?.credentials_file, ca: j?.tls_config?.ca_file }).toEqual(
        {
          job,
          scheme: "https",
          token: "/var/run/secrets/kubernetes.io/serviceaccount/token",
          ca: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        },
      );
    }
    // Their series name the pod, container and namespace they describe: a target label of the same
    // name would rename the series' own (exported_namespace) and the rules would group by the
    // exporter's namespace.
    for (const l of [...scrapedBy(ksmEndpoint("http-metrics"), "endpoints"), ...scrapedBy(NODE, "node")])
      expect({ job: l.job, clashing: ["namespace", "pod", "container"].filter((k) => k in l) }).toEqual({
        job: l.job,
        clashing: [],
      });
  });

  test("every metric and job the rules read is scraped by a job of this config", () => {
    // The job label of every target the config makes of the objects the rules need series from.
    const targets = [
      ...OVERLAYS.flatMap((env) =>
        (rendered.get(env) ?? []).flatMap((o) => {
          const t = podTemplateOf(o);
          return (t?.spec.containers ?? []).flatMap((c) =>
            (c.ports ?? []).flatMap((p) =>
              scrapedBy(podMeta(`qrscan-${env}`, t?.metadata?.labels ?? {}, p.name ?? "")),
            ),
          );
        }),
      ),
      ...scrapedBy(podMeta("kafka-prod", { "app.kubernetes.io/name": "kafka" }, "metrics")),
      ...scrapedBy(podMeta("qrscan-prod", { "app.kubernetes.io/name": "postgres-exporter" }, "metrics")),
      ...scrapedBy(podMeta("qrscan-prod", { "app.kubernetes.io/name": "pgbouncer-exporter" }, "metrics")),
      ...scrapedBy(ksmEndpoint("http-metrics"), "endpoints"),
      ...scrapedBy(NODE, "node"),
    ];
    const jobs = new Set(targets.map((l) => l.job));
    // The app's own metrics: a name its source registers (histograms: without _bucket/_count/_sum).
    const sourceOf = (dir: string) =>
      readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })
        .filter((f) => f.endsWith(".ts"))
        .map((f) => readFileSync(join(ROOT, dir, f), "utf8"))
        .join("\n");
    const APP: [string, string[]][] = [
      [sourceOf("server"), ["server"]],
      [sourceOf("worker"), ["worker", "supervisor"]],
    ];
    // Everything else by the exporter that names it so.
    const EXPORTERS: [RegExp, string][] = [
      [/^kube_/, "kube-state-metrics"],
      [/^kubelet_volume_/, "kubelet"],
      [/^container_/, "cadvisor"],
      [/^pg_/, "postgres"],
      [/^pgbouncer_/, "pgbouncer"],
      [/^kafka_/, "kafka"],
    ];
    const expressions = ruleExpressions();
    const recorded = new Set(expressions.filter((e) => e.kind === "record").map((e) => e.source.split(": ")[1]));
    // The pgbouncer job is the project's exporter (docs/deployment.md, "Prometheus"): its names
    // exactly, since the public Go exporter has pgbouncer_* names of its own.
    const pgbouncer = pgbouncerExporterMetrics(join(ROOT, "monitoring/pgbouncer-exporter/run.py"));
    expect(pgbouncer).toContain("pgbouncer_waiting_clients");
    const problems: string[] = [];
    for (const e of expressions) {
      for (const sel of selectors(e.expr)) {
        for (const m of sel.matchers.matchAll(/\bjob\s*=\s*"([^"]*)"/g))
          if (!jobs.has(m[1])) problems.push(`${e.source}: no job ${m[1]}`);
        const name = sel.name;
        // up and scrape_duration_seconds: Prometheus' own series of every target (job checked above).
        if (!name || name === "up" || name === "scrape_duration_seconds" || recorded.has(name)) continue;
        const base = name.replace(/_(bucket|count|sum)$/, "");
        const app = APP.find(([text]) => text.includes(`"${name}"`) || text.includes(`"${base}"`));
        const from = app ? app[1] : EXPORTERS.filter(([re]) => re.test(name)).map(([, job]) => job);
        if (from.length === 0) problems.push(`${e.source}: ${name} comes from no known exporter`);
        if (name.startsWith("pgbouncer_") && !pgbouncer.includes(name))
          problems.push(`${e.source}: ${name} is not a metric monitoring/pgbouncer-exporter/run.py exports`);
        for (const job of from) if (!jobs.has(job)) problems.push(`${e.source}: ${name} needs job ${job}`);
      }
    }
    expect(problems).toEqual([]);
    // The check reads the Kubernetes rules too.
    expect(expressions.some((e) => e.expr.includes("kube_job_failed"))).toBe(true);
  });

  test("alerts go to Alertmanager, and the rules are loaded from the cluster, not a repository path", () => {
    expect(config.alerting?.alertmanagers?.[0]?.static_configs?.[0]?.targets).toEqual([
      "alertmanager.monitoring.svc:9093",
    ]);
    for (const f of config.rule_files) expect(f).toMatch(/^\/etc\/prometheus\//);
  });

  test(`the PrometheusRule objects are the rule files' (regenerate: ${REGENERATE})`, () => {
    const path = join(K8S, "monitoring/prometheus-rules.yaml");
    const current = existsSync(path) ? readFileSync(path, "utf8") : "";
    const expected = renderPrometheusRules();
    if (current !== expected)
      throw new Error(
        `deploy/k8s/monitoring/prometheus-rules.yaml is out of date with monitoring/prometheus/rules/*.yml: run \`${REGENERATE}\``,
      );
    const objects = Bun.YAML.parse(current) as { kind: string; apiVersion: string; spec: { groups: unknown[] } }[];
    const files = readdirSync(join(ROOT, "monitoring/prometheus/rules")).filter((f) => f.endsWith(".yml"));
    expect(objects.length).toBe(files.length);
    for (const o of objects) expect([o.apiVersion, o.kind]).toEqual(["monitoring.coreos.com/v1", "PrometheusRule"]);
  });
});

describe("a config change goes through the canary", () => {
  test("a changed value renames the generated ConfigMap, so the pod template changes (with kustomize v2 and v5)", () => {
    const tmp = mkdtempSync(join(tmpdir(), "k8s-config-change-"));
    try {
      cpSync(join(ROOT, "deploy"), join(tmp, "deploy"), { recursive: true });
      const base = join(tmp, "deploy/k8s/base/kustomization.yaml");
      const text = readFileSync(base, "utf8");
      expect(text).toContain("- DRAIN_TIMEOUT_MS=10000\n");
      writeFileSync(base, text.replace("- DRAIN_TIMEOUT_MS=10000\n", "- DRAIN_TIMEOUT_MS=12000\n"));
      const template = (objs: K8sObject[], kind: string, name: string) =>
        JSON.stringify(podTemplateOf(objs.find((o) => o.kind === kind && o.metadata.name === name) as K8sObject));
      // CI installs kubectl: there, both dialects are checked, never only v2.
      if (!modern && process.env.CI) throw new Error("kubectl is not on PATH in CI: kustomize v5 not rendered");
      for (const kubectl of [legacy, ...(modern ? [modern] : [])]) {
        const before = render(kubectl, join(K8S, "overlays/prod"));
        const after = render(kubectl, join(tmp, "deploy/k8s/overlays/prod"));
        expect(configMapData(after, "qrscan-server-config").DRAIN_TIMEOUT_MS).toBe("12000");
        expect(template(after, "Deployment", "qrscan-server")).not.toBe(
          template(before, "Deployment", "qrscan-server"),
        );
        // Only what reads it: the workers' template stays.
        expect(template(after, "Deployment", "qrscan-worker")).toBe(template(before, "Deployment", "qrscan-worker"));
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("logs: promtail's DaemonSet (deploy/k8s/monitoring/, once per cluster)", () => {
  // The cluster-wide kustomization, rendered here so that its absence fails these tests alone.
  let monitoring: K8sObject[] = [];
  beforeAll(() => {
    monitoring = render(legacy, join(K8S, "monitoring"));
  }, 60_000);
  const promtailConfigText = () =>
    configMapData(monitoring, "promtail-config")["config.yaml"] ?? "(no promtail-config ConfigMap)";

  test("kustomize v2 and the installed kubectl render the same objects", () => {
    expect(monitoring.map((o) => `${o.kind}/${o.metadata.name.replace(HASHED, "$1-<hash>")}`).sort()).toEqual([
      "ClusterRole/qrscan-promtail",
      "ClusterRoleBinding/qrscan-promtail",
      "ConfigMap/alertmanager-config-<hash>",
      "ConfigMap/promtail-config-<hash>",
      "DaemonSet/promtail",
      "Deployment/alertmanager",
      "Service/alertmanager",
      "ServiceAccount/alertmanager",
      "ServiceAccount/promtail",
    ]);
    if (!modern) {
      if (process.env.CI) throw new Error("kubectl is not on PATH in CI: the kustomize v5 rendering was not compared");
      console.warn("kubectl not on PATH: only Debian's kubectl 1.20 rendered deploy/k8s/monitoring");
      return;
    }
    expect(comparable(render(modern, join(K8S, "monitoring")))).toEqual(comparable(monitoring));
  });

  test("every object passes its schema, has only fields its kind defines, and the DaemonSet is as tight as a log reader can be", async () => {
    const problems = (await Promise.all(monitoring.map((o) => schemaProblems(o)))).flat();
    problems.push(...promtailProblems(monitoring, renderPromtailConfig()));
    problems.push(
      ...unknownFieldProblems(
        monitoring.map((object) => ({ label: `monitoring: ${object.kind}/${object.metadata.name}`, object })),
        ROOT,
      ),
    );
    expect(problems).toEqual([]);
  }, 120_000);

  test(`its config is generated from compose's JSON stages (regenerate: ${REGENERATE_PROMTAIL})`, () => {
    expect(promtailConfigText()).toBe(renderPromtailConfig());
  });

  test("each overlay's pods are discovered on their node, labelled namespace, pod, container, app; the app's JSON lines get level and their own time", () => {
    const config = new PromtailConfig(promtailConfigText(), "the rendered promtail-config");
    for (const env of OVERLAYS) {
      for (const o of rendered.get(env) ?? []) {
        const t = podTemplateOf(o);
        if (!t) continue;
        for (const c of t.spec.containers) {
          const pod = {
            namespace: `qrscan-${env}`,
            name: `${o.metadata.name}-6d5f7b9c8d-x7k2p`,
            uid: "0f6c1f2e-5b9a-4d0e-9a7c-3e2d1c0b9a88",
            nodeName: "node-a",
            labels: t.metadata?.labels ?? {},
            containers: t.spec.containers.map((x) => ({ name: x.name, image: x.image, ports: x.ports })),
          };
          const labels = config.podEntryLabels("kubernetes-pods", pod, c.name, "node-a");
          const name = o.metadata.labels?.["app.kubernetes.io/name"] ?? "";
          expect({ owner: o.metadata.name, labels }).toEqual({
            owner: o.metadata.name,
            labels: {
              namespace: pod.namespace,
              pod: pod.name,
              container: c.name,
              app: name.replace(/^qrscan-/, ""),
              job: "kubernetes-pods",
              filename: `/var/log/pods/${pod.namespace}_${pod.name}_${pod.uid}/${c.name}/0.log`,
            },
          });
          // Another node's promtail leaves it alone.
          expect(config.podEntryLabels("kubernetes-pods", pod, c.name, "node-b")).toBeNull();
          // A JSON line of the process (the supervisor's in a worker pod): its level, its service as app.
          const service = c.name === "worker" ? "supervisor" : c.name;
          const json = `{"level":"warn","time":1796572567500,"service":"${service}","pid":7,"request_id":"r-1","msg":"m"}`;
          const pushed = config.runPipeline(
            "kubernetes-pods",
            labels ?? {},
            criLine(1796572567506626526n, "stdout", json),
            0n,
          );
          // Only the containers that print the app's JSON: migrate's plain text is left as it is.
          const parsed = ["server", "worker"].includes(c.name);
          expect({ owner: o.metadata.name, pushed }).toEqual({
            owner: o.metadata.name,
            pushed: {
              labels: {
                ...labels,
                stream: "stdout",
                ...(parsed ? { level: "warn", app: service } : {}),
              },
              timestampNs: parsed ? 1796572567500000000n : 1796572567506626526n,
              line: json,
              jsonParsed: parsed,
            },
          });
        }
      }
    }
  });
});

describe("Alertmanager (deploy/k8s/monitoring/, once per cluster)", () => {
  let monitoring: K8sObject[] = [];
  beforeAll(() => {
    monitoring = render(legacy, join(K8S, "monitoring"));
  }, 60_000);
  const find = (kind: string, name: string) =>
    monitoring.find((o) => o.kind === kind && o.metadata.name.replace(HASHED, "$1") === name);
  interface Pod {
    serviceAccountName?: string;
    automountServiceAccountToken?: boolean;
    securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type?: string } };
    volumes: {
      name: string;
      configMap?: { name: string };
      secret?: { secretName: string; items?: { key: string; path: string }[] };
    }[];
    containers: (Container & { args?: string[] })[];
  }
  const pod = () =>
    (find("Deployment", "alertmanager")?.spec as { template?: { spec: Pod } } | undefined)?.template?.spec;
  /** The volume a path in the container is on, and the path inside it. */
  const fileOf = (path: string) => {
    const c = pod()?.containers[0];
    const m = (c?.volumeMounts ?? []).find((v) => path.startsWith(`${v.mountPath}/`));
    return { volume: pod()?.volumes.find((v) => v.name === m?.name), key: path.slice((m?.mountPath.length ?? 0) + 1) };
  };
  const env = (name: string) => pod()?.containers[0]?.env?.find((e) => e.name === name)?.value ?? "";

  test(`its config and start script are monitoring/alertmanager's, unchanged (regenerate: ${REGENERATE_ALERTMANAGER})`, () => {
    const data = find("ConfigMap", "alertmanager-config")?.data ?? {};
    for (const { file, source } of ALERTMANAGER_COPIES)
      if (data[file] !== readFileSync(source, "utf8"))
        throw new Error(
          `deploy/k8s/monitoring/alertmanager/${file} is out of date: run \`${REGENERATE_ALERTMANAGER}\``,
        );
    expect(Object.keys(data).sort()).toEqual(["alertmanager.yml", "start.sh"]);
  });

  test("it runs start.sh from that ConfigMap, the receivers' URLs from the Secret alertmanager-receivers, as the compose image does", () => {
    const c = pod()?.containers[0];
    const [shell, script] = c?.command ?? [];
    expect(shell).toBe("/bin/sh");
    const start = fileOf(script ?? "");
    expect([start.volume?.configMap?.name.replace(HASHED, "$1"), start.key]).toEqual([
      "alertmanager-config",
      "start.sh",
    ]);
    // start.sh reads alertmanager.yml beside itself: the same ConfigMap.
    expect(env("ALERTMANAGER_TEMPLATE")).toBe("");
    for (const [variable, key] of [
      ["ALERTMANAGER_PAGER_URL_FILE", "pager-url"],
      ["ALERTMANAGER_TICKET_URL_FILE", "ticket-url"],
    ] as const) {
      const f = fileOf(env(variable));
      expect({
        variable,
        secret: f.volume?.secret?.secretName,
        key: f.volume?.secret?.items?.find((i) => i.path === f.key)?.key,
      }).toEqual({
        variable,
        secret: "alertmanager-receivers",
        key,
      });
    }
    // The rendered config goes to a writable volume, not the read-only root.
    expect(fileOf(env("ALERTMANAGER_CONFIG_OUT")).volume).toMatchObject({ name: "tmp" });
    // The image compose runs, by its released tag; the same flags.
    const compose = Bun.YAML.parse(readFileSync(join(ROOT, "compose.yaml"), "utf8")) as {
      services: { alertmanager: { image: string; command: string[] } };
    };
    expect(c?.image).toBe(compose.services.alertmanager.image);
    expect(c?.image).toMatch(/^prom\/alertmanager:v\d+\.\d+\.\d+$/);
    expect(c?.args?.filter((a) => !a.startsWith("--web.listen-address="))).toEqual(
      compose.services.alertmanager.command.filter((a) => !a.startsWith("--web.listen-address=")),
    );
    // Tight: its own identity without a token, non-root, read-only root, nothing added.
    const p = pod();
    expect([p?.serviceAccountName, p?.automountServiceAccountToken]).toEqual(["alertmanager", false]);
    expect(find("ServiceAccount", "alertmanager")).toBeDefined();
    expect([p?.securityContext?.runAsNonRoot, p?.securityContext?.seccompProfile?.type]).toEqual([
      true,
      "RuntimeDefault",
    ]);
    expect(c?.securityContext).toEqual({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
  });

  test("Prometheus' target is its Service: alertmanager.monitoring.svc:9093 reaches the port Alertmanager listens on", () => {
    const prometheus = Bun.YAML.parse(readFileSync(join(K8S, "prometheus/prometheus.yml"), "utf8")) as {
      alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
    };
    const [host, port] = (prometheus.alerting.alertmanagers[0]?.static_configs[0]?.targets[0] ?? "").split(":");
    const [name, namespace] = (host ?? "").split(".");
    const svc = find("Service", name ?? "");
    expect(svc?.metadata.namespace).toBe(namespace);
    const spec = svc?.spec as { selector: Record<string, string>; ports: { port: number; targetPort: string }[] };
    const sp = spec.ports.find((p) => p.port === Number(port));
    const c = pod()?.containers[0];
    const containerPort = c?.ports?.find((p) => p.name === sp?.targetPort)?.containerPort;
    expect(containerPort).toBeDefined();
    const labels = (
      find("Deployment", "alertmanager")?.spec as { template: { metadata: { labels: Record<string, string> } } }
    ).template.metadata.labels;
    expect(Object.entries(spec.selector).every(([k, v]) => labels[k] === v)).toBe(true);
    expect((c as { args?: string[] }).args).toContain(`--web.listen-address=0.0.0.0:${containerPort}`);
    for (const probe of [c?.readinessProbe, c?.livenessProbe]) expect(probe?.httpGet?.port).toBe(sp?.targetPort);
  });

  test("start.sh, as the pod runs it (its env, its mounts), writes a config amtool accepts, with the Secret's URLs", () => {
    const tmp = mkdtempSync(join(tmpdir(), "k8s-alertmanager-"));
    try {
      // The pod's files under a scratch root: the ConfigMap's and the Secret's at their mount paths.
      const data = find("ConfigMap", "alertmanager-config")?.data ?? {};
      const at = (path: string) => join(tmp, path);
      const start = pod()?.containers[0]?.command?.[1] ?? "";
      mkdirSync(at(dirname(start)), { recursive: true });
      for (const [k, v] of Object.entries(data)) writeFileSync(join(at(dirname(start)), k), v);
      const urls: Record<string, string> = {
        ALERTMANAGER_PAGER_URL_FILE: "https://pager.example.test/hook?k=1",
        ALERTMANAGER_TICKET_URL_FILE: "https://tickets.example.test/hook",
      };
      for (const [variable, url] of Object.entries(urls)) {
        mkdirSync(at(dirname(env(variable))), { recursive: true });
        writeFileSync(at(env(variable)), `${url}\n`);
      }
      mkdirSync(at(dirname(env("ALERTMANAGER_CONFIG_OUT"))), { recursive: true });
      const res = spawnSync("/bin/sh", [at(start)], {
        encoding: "utf8",
        timeout: 30_000,
        env: {
          PATH: process.env.PATH,
          ALERTMANAGER_RENDER_ONLY: "1",
          ...Object.fromEntries(
            ["ALERTMANAGER_PAGER_URL_FILE", "ALERTMANAGER_TICKET_URL_FILE", "ALERTMANAGER_CONFIG_OUT"].map((v) => [
              v,
              at(env(v)),
            ]),
          ),
        },
      });
      expect({ status: res.status, stderr: res.stderr }).toEqual({
        status: 0,
        stderr: expect.stringContaining("wrote"),
      });
      const out = at(env("ALERTMANAGER_CONFIG_OUT"));
      const text = readFileSync(out, "utf8");
      for (const url of Object.values(urls)) expect(text).toContain(url);
      const check = spawnSync("amtool", ["check-config", out], { encoding: "utf8", timeout: 30_000 });
      expect({ status: check.status, out: check.stdout + check.stderr }).toEqual({
        status: 0,
        out: expect.stringContaining("SUCCESS"),
      });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test("docs/deployment.md says how to run it: the Secret, its keys, the Service", () => {
    const doc = readFileSync(join(ROOT, "docs/deployment.md"), "utf8");
    for (const word of [
      "alertmanager-receivers",
      "pager-url",
      "ticket-url",
      "alertmanager.monitoring.svc:9093",
      "monitoring/alertmanager/start.sh",
    ])
      expect({ word, documented: doc.includes(word) }).toEqual({ word, documented: true });
  });
});

describe("Postgres with high availability (deploy/k8s/postgres/, CloudNativePG, per environment)", () => {
  let pg: K8sObject[] = [];
  beforeAll(() => {
    pg = render(legacy, join(K8S, "postgres"));
  }, 60_000);
  const find = (kind: string) => pg.filter((o) => o.kind === kind);
  interface ClusterSpec {
    instances: number;
    postgresql: { parameters: Record<string, string>; synchronous: { number: number; dataDurability?: string } };
    affinity?: { enablePodAntiAffinity?: boolean; podAntiAffinityType?: string; topologyKey?: string };
    backup?: { target?: string };
  }

  test("kustomize v2 and the installed kubectl render the same objects: one Cluster, its two Poolers, its nightly backup", () => {
    expect(pg.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      "Cluster/qrscan-pg",
      "Pooler/qrscan-pg-pooler-keys",
      "Pooler/qrscan-pg-pooler-rw",
      "ScheduledBackup/qrscan-pg-nightly",
    ]);
    if (!modern) {
      if (process.env.CI) throw new Error("kubectl is not on PATH in CI: the kustomize v5 rendering was not compared");
      console.warn("kubectl not on PATH: only Debian's kubectl 1.20 rendered deploy/k8s/postgres");
      return;
    }
    expect(comparable(render(modern, join(K8S, "postgres")))).toEqual(comparable(pg));
  });

  test("every object passes the operator's schema and has only fields its kind defines", async () => {
    const problems = (await Promise.all(pg.map((o) => schemaProblems(o)))).flat();
    problems.push(
      ...unknownFieldProblems(
        pg.map((object) => ({ label: `postgres: ${object.kind}/${object.metadata.name}`, object })),
        ROOT,
      ),
    );
    expect(problems).toEqual([]);
  }, 120_000);

  test("a primary and synchronous standbys on separate zones, every commit confirmed by one, the local stack's server settings", () => {
    const [cluster] = find("Cluster");
    const spec = cluster?.spec as ClusterSpec;
    // Three instances: losing one node or zone still leaves a primary and a synchronous standby.
    expect(spec.instances).toBeGreaterThanOrEqual(3);
    expect(spec.postgresql.synchronous.number).toBeGreaterThanOrEqual(1);
    // "preferred" would let the primary commit alone, and a failover then lose what it had answered.
    expect(spec.postgresql.synchronous.dataDurability).toBe("required");
    expect(spec.affinity).toMatchObject({
      enablePodAntiAffinity: true,
      podAntiAffinityType: "required",
      topologyKey: "topology.kubernetes.io/zone",
    });
    const settings = Object.fromEntries(POSTGRES_SETTINGS.map((s) => s.split("=") as [string, string]));
    expect(spec.postgresql.parameters).toEqual(settings);
  });

  test("the Poolers follow the primary in transaction mode with compose's pgbouncer settings; backups are read from a standby", () => {
    const ini = readFileSync(join(ROOT, "compose/pgbouncer/pgbouncer.ini"), "utf8");
    const composeSetting = (key: string) => ini.match(new RegExp(`^${key} = (.*)$`, "m"))?.[1];
    const clusterName = find("Cluster")[0]?.metadata.name;
    for (const p of find("Pooler")) {
      const spec = p.spec as {
        cluster: { name: string };
        type: string;
        instances: number;
        pgbouncer: { poolMode: string; parameters: Record<string, string> };
      };
      expect({
        pooler: p.metadata.name,
        cluster: spec.cluster.name,
        type: spec.type,
        mode: spec.pgbouncer.poolMode,
      }).toEqual({ pooler: p.metadata.name, cluster: clusterName as string, type: "rw", mode: "transaction" });
      // Two pods: a pooler restart or a node drain is not an outage.
      expect(spec.instances).toBeGreaterThanOrEqual(2);
      for (const key of ["query_wait_timeout", "server_login_retry", "ignore_startup_parameters"])
        expect({ key, value: spec.pgbouncer.parameters[key] }).toEqual({ key, value: composeSetting(key) });
    }
    const keys = find("Pooler").find((p) => p.metadata.name.endsWith("-keys"))?.spec as {
      pgbouncer: { parameters: Record<string, string> };
    };
    // The key refresh's own small pool, as pgbouncer's qrscan_keys alias (pool_size=2) elsewhere.
    expect(keys.pgbouncer.parameters.default_pool_size).toBe(ini.match(/^qrscan_keys = .*pool_size=(\d+)/m)?.[1]);
    const backup = find("ScheduledBackup")[0]?.spec as { cluster: { name: string }; target?: string };
    expect(backup.cluster.name).toBe(clusterName as string);
    expect(backup.target).toBe("prefer-standby");
    expect((find("Cluster")[0]?.spec as ClusterSpec).backup?.target).toBe("prefer-standby");
  });

  test("docs/deployment.md names every Secret the Cluster reads, and the Pooler services the product's URLs point at", () => {
    const doc = readFileSync(join(ROOT, "docs/deployment.md"), "utf8");
    const secrets = [...JSON.stringify(find("Cluster")[0]?.spec).matchAll(/"name":"(qrscan-pg-[a-z-]+)"/g)]
      .map((m) => m[1] as string)
      .filter((n) => !find("Pooler").some((p) => p.metadata.name === n));
    expect(secrets.length).toBeGreaterThan(0);
    for (const word of [...new Set(secrets), ...find("Pooler").map((p) => p.metadata.name)])
      expect({ word, documented: doc.includes(word) }).toEqual({ word, documented: true });
  });
});
