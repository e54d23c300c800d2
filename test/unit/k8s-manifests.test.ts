// The Kubernetes manifests (deploy/k8s/): every overlay renders with Debian's kubectl 1.20
// (kustomize v2.0.3) and, where installed, the current kubectl (kustomize v5), to the same objects;
// every object passes its schema (kubernetes-models, @kubernetes-models/keda and /argo-rollouts);
// and the objects agree with each other and with the product: selectors select pods, probes and
// Services name ports that exist, referenced ConfigMaps exist and Secrets are the documented
// external ones, autoscaler and rollout targets exist, KEDA stops at the partition count, and the
// canary analysis queries metrics the server exports with the SLOs' thresholds.
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
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServerConfigSchema, loadServerConfig } from "../../server/config.ts";
import { TrustedProxies } from "../../server/trusted-proxies.ts";
import { loadConfig } from "../../shared/config.ts";
import { TOPICS } from "../../shared/local-stack.ts";
import { legacyKubectl } from "../../tools/kubectl-legacy.ts";
import { WorkerConfigSchema } from "../../worker/config.ts";
import { type K8sObject, type PodTemplate, checkManifests, unknownFieldProblems } from "../helpers/k8s-checks.ts";

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
        // The v2 rendering is still checked by every test below; say that v5 was not compared.
        console.warn("kubectl not on PATH: only Debian's kubectl 1.20 rendered the overlays");
        return;
      }
      expect(sorted(render(modern, join(K8S, "overlays", env)))).toEqual(sorted(old));
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
      const t = (o.spec as { template?: PodTemplate } | undefined)?.template;
      if (t?.spec?.containers) out.set(`${o.kind}/${o.metadata.name}`, t);
    }
    return out;
  };

  test("the ConfigMaps' ports are the containers' ports, and the listeners bind the pod's address", () => {
    for (const env of OVERLAYS) {
      const objs = rendered.get(env) ?? [];
      const data = (name: string) =>
        (objs.find((o) => o.kind === "ConfigMap" && o.metadata.name === name)?.data ?? {}) as Record<string, string>;
      const server = pods(env).get("Deployment/qrscan-server")?.spec.containers[0];
      const worker = pods(env).get("Deployment/qrscan-worker")?.spec.containers[0];
      const port = (c: typeof server, name: string) => c?.ports?.find((p) => p.name === name)?.containerPort;
      const s = data("qrscan-server-config");
      const w = data("qrscan-worker-config");
      expect([port(server, "http"), port(server, "metrics")]).toEqual([Number(s.PORT), Number(s.METRICS_PORT)]);
      expect(port(worker, "metrics")).toBe(Number(w.METRICS_PORT));
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
      expect(unread(w, WorkerConfigSchema.entries)).toEqual([]);
    }
  });

  test("the server says where client addresses come from: the ingress's pod network in TRUSTED_PROXIES, a valid CIDR", () => {
    for (const env of OVERLAYS) {
      const data = ((rendered.get(env) ?? []).find(
        (o) => o.kind === "ConfigMap" && o.metadata.name === "qrscan-server-config",
      )?.data ?? {}) as Record<string, string>;
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
        const data = (objs.find((o) => o.kind === "ConfigMap" && o.metadata.name === config)?.data ?? {}) as Record<
          string,
          string
        >;
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

  test("one worker process per pod: the worker entry, not the supervisor", () => {
    for (const env of OVERLAYS) {
      const worker = pods(env).get("Deployment/qrscan-worker")?.spec.containers[0];
      expect(worker?.command).toEqual(["bun", "worker/main.ts"]);
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

  test("the images are the two the build makes, at the overlay's release tag", () => {
    const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    for (const env of OVERLAYS) {
      const images = [...pods(env).values()].flatMap((t) => t.spec.containers.map((c) => c.image)).sort();
      expect(images).toEqual([`qrscan-server:${version}`, `qrscan-worker:${version}`, `qrscan-worker:${version}`]);
    }
  });
});

describe("Prometheus in Kubernetes (deploy/k8s/prometheus/prometheus.yml)", () => {
  interface Relabel {
    source_labels?: string[];
    regex?: string;
    action?: string;
    target_label?: string;
  }
  const config = Bun.YAML.parse(readFileSync(join(K8S, "prometheus/prometheus.yml"), "utf8")) as {
    rule_files: string[];
    scrape_configs: {
      kubernetes_sd_configs: { role: string; namespaces: { names: string[] } }[];
      relabel_configs: Relabel[];
    }[];
  };
  const [job] = config.scrape_configs;
  const relabel = job?.relabel_configs ?? [];
  const keep = (meta: string) =>
    new RegExp(`^(?:${relabel.find((r) => r.action === "keep" && r.source_labels?.[0] === meta)?.regex})$`);

  test("it scrapes the metrics port of every qrscan pod in every environment, and nothing else", () => {
    expect(job?.kubernetes_sd_configs[0]?.namespaces.names.sort()).toEqual(OVERLAYS.map((e) => `qrscan-${e}`).sort());
    for (const env of OVERLAYS) {
      for (const o of rendered.get(env) ?? []) {
        const t = (o.spec as { template?: PodTemplate } | undefined)?.template;
        if (!t || o.kind === "Job") continue;
        expect(t.metadata?.labels?.["app.kubernetes.io/part-of"] ?? "").toMatch(
          keep("__meta_kubernetes_pod_label_app_kubernetes_io_part_of"),
        );
        const ports = t.spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.name ?? ""));
        const scraped = ports.filter((p) => keep("__meta_kubernetes_pod_container_port_name").test(p));
        // The metrics port only: never the API port.
        expect(scraped).toEqual(["metrics"]);
      }
    }
  });

  test("it keeps the pod labels (the canary's rollouts_pod_template_hash) and names the jobs as the rules do", () => {
    expect(relabel).toContainEqual({ action: "labelmap", regex: "__meta_kubernetes_pod_label_(.+)" });
    const job = relabel.find((r) => r.target_label === "job");
    expect(job?.source_labels).toEqual(["__meta_kubernetes_pod_label_app_kubernetes_io_name"]);
    expect("qrscan-server".replace(new RegExp(`^${job?.regex}$`), "$1")).toBe("server");
    expect(config.rule_files).toEqual(["../../../monitoring/prometheus/rules/*.yml"]);
    expect(existsSync(join(K8S, "prometheus", "../../../monitoring/prometheus/rules/edge.yml"))).toBe(true);
  });
});
