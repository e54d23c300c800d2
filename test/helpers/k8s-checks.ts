// Checks of one rendered overlay (test/unit/k8s-manifests.test.ts): each object against its schema
// (the kubernetes-models packages' validate(), and their TypeScript interfaces for unknown fields),
// then the cross-object rules, each returning what is wrong as a sentence so a failing test says
// which object and why.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: unknown;
  data?: Record<string, string>;
}

interface Port {
  name?: string;
  containerPort: number;
}
interface Probe {
  httpGet?: { path: string; port: number | string };
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  seccompProfile?: { type?: string };
  runAsUser?: number;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  capabilities?: { drop?: string[] };
}
interface EnvSource {
  configMapRef?: { name: string };
  secretRef?: { name: string };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { configMapKeyRef?: { name: string; key: string }; secretKeyRef?: { name: string; key: string } };
}
export interface Container {
  name: string;
  image: string;
  command?: string[];
  ports?: Port[];
  env?: EnvVar[];
  envFrom?: EnvSource[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: SecurityContext;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
export interface PodTemplate {
  metadata?: { labels?: Record<string, string> };
  spec: {
    serviceAccountName?: string;
    automountServiceAccountToken?: boolean;
    containers: Container[];
    securityContext?: SecurityContext;
    volumes?: {
      name: string;
      configMap?: { name: string };
      secret?: { secretName: string; items?: { key: string; path: string }[] };
    }[];
  };
}
interface LabelSelector {
  matchLabels?: Record<string, string>;
}
interface TargetRef {
  apiVersion?: string;
  kind?: string;
  name: string;
}

export interface CheckContext {
  /** The namespace the overlay puts everything in. */
  namespace: string;
  /** TOPICS.scans.partitions: the most consumers that can share the topic. */
  partitions: number;
  /** server/metrics.ts, whose metric names the canary analysis may query. */
  serverMetrics: string;
  /** docs/deployment.md, which must name every Secret the manifests reference (they are created outside). */
  deploymentDoc: string;
  /** The Dockerfile when there is one: its numeric USER must be the pods' runAsUser. */
  dockerfile: string | null;
  /** The images the build makes: Dockerfile target → image name (tools/images/names.ts). */
  images: Record<string, string>;
}

/** The ConfigMaps the manifests reference and do not create (docs/deployment.md documents them). */
export const EXTERNAL_CONFIGMAPS: Record<string, string[]> = {
  // The backup stanza's settings: the database host and the repository differ per cluster.
  "qrscan-pgbackrest": ["pgbackrest.conf"],
};

/** Container ports Prometheus scrapes (deploy/k8s/prometheus/prometheus.yml): open to it alone. */
export const METRICS_PORT_NAMES = ["metrics", "supervisor"];

/** Owners of pod templates that run to completion: no probes, no Service, no metrics. */
const RUN_TO_COMPLETION = ["Job", "CronJob"];

/** The Secrets the manifests reference and do not create, with their keys (docs/deployment.md documents them). */
export const EXTERNAL_SECRETS: Record<string, string[]> = {
  // One per database role (docs/security.md, "Database roles"): no pod holds another's password.
  "qrscan-database-owner": ["DATABASE_DIRECT_URL"],
  "qrscan-database-edge": ["DATABASE_URL", "API_KEYS_DATABASE_URL"],
  "qrscan-database-worker": ["DATABASE_URL"],
  "qrscan-kafka-ca": ["ca.crt"],
  "qrscan-kafka-edge": ["password"],
  "qrscan-kafka-worker": ["password"],
  "qrscan-kafka-ops": ["password"],
  // The backup CronJobs: the repository's keys (env) and pgBackRest's TLS client certificate.
  "qrscan-backup-repo": ["PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET"],
  "qrscan-backup-tls": ["tls.crt", "tls.key", "ca.crt"],
};

/** apiVersion/kind → the module of its model. */
function modelModule(apiVersion: string, kind: string): string | null {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "keda.sh") return `@kubernetes-models/keda/${apiVersion}/${kind}`;
  if (group === "argoproj.io") return `@kubernetes-models/argo-rollouts/${apiVersion}/${kind}`;
  if (group === "postgresql.cnpg.io") return `@kubernetes-models/cloudnative-pg/${apiVersion}/${kind}`;
  if (group === "") return `kubernetes-models/${version}/${kind}`;
  if (/^[a-z0-9.]+$/.test(group ?? "") && /^v\d+(alpha\d+|beta\d+)?$/.test(version ?? ""))
    return `kubernetes-models/${apiVersion}/${kind}`;
  return null;
}

/** Schema problems of one object: its model's validate(), or "no model" for a kind we cannot check. */
export async function schemaProblems(o: K8sObject): Promise<string[]> {
  const where = `${o.kind}/${o.metadata?.name}`;
  const mod = modelModule(o.apiVersion, o.kind);
  if (!mod) return [`${where}: no schema model for ${o.apiVersion} ${o.kind}`];
  let Model: new (data: unknown) => { validate(): void };
  try {
    Model = (await import(mod))[o.kind];
  } catch {
    return [`${where}: no schema model for ${o.apiVersion} ${o.kind} (${mod})`];
  }
  if (typeof Model !== "function") return [`${where}: ${mod} exports no ${o.kind}`];
  try {
    new Model(o).validate();
    return [];
  } catch (error) {
    return [`${where}: schema: ${(error as Error).message}`];
  }
}

const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** Every check; [] when the overlay is right. */
export async function checkManifests(objects: K8sObject[], ctx: CheckContext): Promise<string[]> {
  const problems: string[] = [];
  for (const o of objects) problems.push(...(await schemaProblems(o)));

  const byKind = (kind: string) => objects.filter((o) => o.kind === kind);
  const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
  const where = (o: K8sObject) => `${o.kind}/${o.metadata.name}`;

  for (const o of objects) {
    if (o.metadata.namespace !== ctx.namespace)
      problems.push(`${where(o)}: namespace ${o.metadata.namespace} (expected ${ctx.namespace})`);
  }

  // Pod templates: Deployments, Jobs, CronJobs (their jobTemplate), Rollouts with an inline template.
  const templates: { owner: K8sObject; t: PodTemplate }[] = [];
  for (const o of objects) {
    const t = podTemplateOf(o);
    if (t?.spec?.containers) templates.push({ owner: o, t });
  }
  const completes = (o: K8sObject) => RUN_TO_COMPLETION.includes(o.kind);
  if (templates.length === 0) problems.push("no pod templates rendered");
  const podsSelectedBy = (sel: Record<string, string> | undefined) =>
    templates.filter(({ t }) => matches(sel, t.metadata?.labels));

  // Workload selectors select their own template.
  for (const { owner, t } of templates) {
    const sel = (owner.spec as { selector?: LabelSelector }).selector?.matchLabels;
    if (!completes(owner) && !matches(sel, t.metadata?.labels))
      problems.push(`${where(owner)}: selector ${JSON.stringify(sel)} does not match its template's labels`);
  }

  // Containers: probes on declared ports, references that exist, security and resources.
  const runAsUsers = new Set<number | undefined>();
  for (const { owner, t } of templates) {
    const psc = t.spec.securityContext ?? {};
    if (psc.runAsNonRoot !== true) problems.push(`${where(owner)}: pod securityContext.runAsNonRoot is not true`);
    if (!psc.runAsUser) problems.push(`${where(owner)}: pod securityContext.runAsUser is not a non-zero number`);
    if (psc.seccompProfile?.type !== "RuntimeDefault")
      problems.push(`${where(owner)}: pod securityContext.seccompProfile is not RuntimeDefault`);
    runAsUsers.add(psc.runAsUser);
    // Its own identity, never the namespace's default (which any later grant would reach), and no
    // API token: none of these processes talks to the Kubernetes API.
    const sa = t.spec.serviceAccountName;
    const account = sa ? find("ServiceAccount", sa) : undefined;
    if (!sa) problems.push(`${where(owner)}: no serviceAccountName (it would run as the namespace's default)`);
    else if (!account) problems.push(`${where(owner)}: ServiceAccount ${sa} is not rendered`);
    else if ((account as { automountServiceAccountToken?: boolean }).automountServiceAccountToken !== false)
      problems.push(`ServiceAccount/${sa}: automountServiceAccountToken is not false`);
    if (t.spec.automountServiceAccountToken !== false)
      problems.push(`${where(owner)}: automountServiceAccountToken is not false`);
    for (const c of t.spec.containers) {
      const cw = `${where(owner)} container ${c.name}`;
      const portOk = (p: number | string) =>
        typeof p === "number"
          ? (c.ports ?? []).some((x) => x.containerPort === p)
          : (c.ports ?? []).some((x) => x.name === p);
      for (const kind of ["livenessProbe", "readinessProbe", "startupProbe"] as const) {
        const probe = c[kind];
        if (probe?.httpGet && !portOk(probe.httpGet.port))
          problems.push(`${cw}: ${kind} port ${probe.httpGet.port} is not a port of the container`);
      }
      if (!completes(owner) && (!c.livenessProbe || !c.readinessProbe))
        problems.push(`${cw}: needs a liveness and a readiness probe`);
      const [imageName] = c.image.split(":");
      const target = Object.entries(ctx.images).find(([, name]) => name === imageName)?.[0];
      if (!target) problems.push(`${cw}: image ${c.image} is not one the build makes (${Object.values(ctx.images)})`);
      else if (ctx.dockerfile && !new RegExp(`^FROM\\s+\\S+\\s+AS\\s+${target}\\s*$`, "mi").test(ctx.dockerfile))
        problems.push(`${cw}: image ${imageName}'s target ${target} is not a stage of the Dockerfile`);
      for (const src of c.envFrom ?? []) {
        if (src.configMapRef && !find("ConfigMap", src.configMapRef.name))
          problems.push(`${cw}: envFrom ConfigMap ${src.configMapRef.name} does not exist`);
        if (src.secretRef && !EXTERNAL_SECRETS[src.secretRef.name] && !find("Secret", src.secretRef.name))
          problems.push(
            `${cw}: envFrom Secret ${src.secretRef.name} is neither rendered nor a documented external Secret`,
          );
      }
      for (const e of c.env ?? []) {
        const cm = e.valueFrom?.configMapKeyRef;
        if (cm && find("ConfigMap", cm.name)?.data?.[cm.key] === undefined)
          problems.push(`${cw}: env ${e.name} reads ConfigMap ${cm.name} key ${cm.key}, which does not exist`);
        const s = e.valueFrom?.secretKeyRef;
        if (s && !find("Secret", s.name) && !EXTERNAL_SECRETS[s.name]?.includes(s.key))
          problems.push(
            `${cw}: env ${e.name} reads Secret ${s.name} key ${s.key}, not a documented external Secret key`,
          );
      }
      const sc = c.securityContext ?? {};
      if (sc.readOnlyRootFilesystem !== true) problems.push(`${cw}: readOnlyRootFilesystem is not true`);
      if (sc.allowPrivilegeEscalation !== false) problems.push(`${cw}: allowPrivilegeEscalation is not false`);
      if (!sc.capabilities?.drop?.includes("ALL")) problems.push(`${cw}: capabilities do not drop ALL`);
      for (const part of ["requests", "limits"] as const) {
        for (const r of ["cpu", "memory"]) {
          if (!c.resources?.[part]?.[r]) problems.push(`${cw}: no ${part}.${r}`);
        }
      }
    }
    for (const v of t.spec.volumes ?? []) {
      if (v.configMap && !find("ConfigMap", v.configMap.name) && !EXTERNAL_CONFIGMAPS[v.configMap.name])
        problems.push(`${where(owner)}: volume ${v.name}: ConfigMap ${v.configMap.name} does not exist`);
      if (v.secret && !find("Secret", v.secret.secretName) && !EXTERNAL_SECRETS[v.secret.secretName])
        problems.push(`${where(owner)}: volume ${v.name}: Secret ${v.secret.secretName} is not documented`);
      for (const item of v.secret?.items ?? []) {
        const keys = EXTERNAL_SECRETS[v.secret?.secretName ?? ""];
        if (keys && !keys.includes(item.key))
          problems.push(
            `${where(owner)}: volume ${v.name}: Secret ${v.secret?.secretName} has no documented key ${item.key}`,
          );
      }
    }
  }
  if (runAsUsers.size !== 1) problems.push(`pods run as different users: ${[...runAsUsers].join(", ")}`);
  const dockerUser = ctx.dockerfile?.match(/^USER\s+(\d+)/m)?.[1];
  if (ctx.dockerfile && dockerUser && !runAsUsers.has(Number(dockerUser)))
    problems.push(`the Dockerfile's USER ${dockerUser} is not the pods' runAsUser (${[...runAsUsers].join(", ")})`);

  for (const [name, keys] of Object.entries(EXTERNAL_CONFIGMAPS)) {
    for (const key of keys)
      if (!ctx.deploymentDoc.includes(`\`${name}\``) || !ctx.deploymentDoc.includes(`\`${key}\``))
        problems.push(`docs/deployment.md does not document the external ConfigMap ${name} (key ${key})`);
  }
  for (const name of Object.keys(EXTERNAL_SECRETS)) {
    for (const key of EXTERNAL_SECRETS[name] ?? []) {
      if (!ctx.deploymentDoc.includes(`\`${name}\``) || !ctx.deploymentDoc.includes(`\`${key}\``))
        problems.push(`docs/deployment.md does not document the external Secret ${name} (key ${key})`);
    }
  }

  // Services select pods and target a port those pods declare.
  for (const s of byKind("Service")) {
    const spec = s.spec as { selector?: Record<string, string>; ports?: { targetPort?: number | string }[] };
    const selected = podsSelectedBy(spec.selector);
    if (selected.length === 0) problems.push(`${where(s)}: selector ${JSON.stringify(spec.selector)} selects no pods`);
    for (const p of spec.ports ?? []) {
      const ok = selected.some(({ t }) =>
        t.spec.containers.some((c) =>
          (c.ports ?? []).some((x) => (typeof p.targetPort === "number" ? x.containerPort : x.name) === p.targetPort),
        ),
      );
      if (!ok) problems.push(`${where(s)}: targetPort ${p.targetPort} is not a port of the pods it selects`);
    }
  }

  // PDBs and NetworkPolicies select real pods.
  for (const o of [...byKind("PodDisruptionBudget"), ...byKind("NetworkPolicy")]) {
    const sel =
      o.kind === "NetworkPolicy"
        ? (o.spec as { podSelector: LabelSelector }).podSelector
        : (o.spec as { selector: LabelSelector }).selector;
    if (podsSelectedBy(sel?.matchLabels).length === 0)
      problems.push(`${where(o)}: selector ${JSON.stringify(sel?.matchLabels)} selects no pods`);
  }

  // Metrics ports: reachable only from Prometheus. Every container port named "metrics" is covered
  // by a rule whose every peer is the Prometheus pod selector; no open rule (no from) names it.
  interface Rule {
    from?: { namespaceSelector?: LabelSelector; podSelector?: LabelSelector; ipBlock?: unknown }[];
    ports?: { port: number | string }[];
  }
  for (const { owner, t } of templates) {
    const policies = byKind("NetworkPolicy").filter((np) =>
      matches((np.spec as { podSelector: LabelSelector }).podSelector.matchLabels, t.metadata?.labels),
    );
    if (policies.length === 0) problems.push(`${where(owner)}: no NetworkPolicy selects its pods`);
    const rules = policies.flatMap((np) => ((np.spec as { ingress?: Rule[] }).ingress ?? []) as Rule[]);
    for (const c of t.spec.containers) {
      for (const p of (c.ports ?? []).filter((x) => METRICS_PORT_NAMES.includes(x.name ?? ""))) {
        const names = (r: Rule) => (r.ports ?? []).some((x) => x.port === p.containerPort || x.port === p.name);
        const fromPrometheus = (r: Rule) =>
          !!r.from?.length &&
          r.from.every(
            (f) =>
              !f.ipBlock &&
              f.podSelector?.matchLabels?.["app.kubernetes.io/name"] === "prometheus" &&
              !!f.namespaceSelector?.matchLabels,
          );
        if (!rules.some((r) => names(r) && fromPrometheus(r)))
          problems.push(`${where(owner)}: metrics port ${p.containerPort} is not opened to Prometheus`);
        if (rules.some((r) => (names(r) || !r.ports?.length) && !fromPrometheus(r)))
          problems.push(`${where(owner)}: metrics port ${p.containerPort} is reachable from more than Prometheus`);
      }
    }
  }

  // Autoscalers and the Rollout target objects that exist.
  const scalable = (ref: TargetRef | undefined) =>
    !!ref &&
    objects.some(
      (o) =>
        o.kind === ref.kind &&
        o.metadata.name === ref.name &&
        o.apiVersion === ref.apiVersion &&
        ["Deployment", "Rollout", "StatefulSet"].includes(o.kind),
    );
  for (const h of byKind("HorizontalPodAutoscaler")) {
    const ref = (h.spec as { scaleTargetRef?: TargetRef }).scaleTargetRef;
    if (!scalable(ref)) problems.push(`${where(h)}: scaleTargetRef ${JSON.stringify(ref)} does not exist`);
  }
  for (const so of byKind("ScaledObject")) {
    const spec = so.spec as {
      scaleTargetRef?: TargetRef;
      maxReplicaCount?: number;
      minReplicaCount?: number;
      advanced?: {
        horizontalPodAutoscalerConfig?: { behavior?: { scaleDown?: { stabilizationWindowSeconds?: number } } };
      };
      triggers?: { type: string; metadata: Record<string, string> }[];
    };
    const ref = { apiVersion: "apps/v1", kind: "Deployment", ...spec.scaleTargetRef } as TargetRef;
    if (!scalable(ref)) problems.push(`${where(so)}: scaleTargetRef ${JSON.stringify(ref)} does not exist`);
    if (spec.maxReplicaCount !== ctx.partitions)
      problems.push(
        `${where(so)}: maxReplicaCount ${spec.maxReplicaCount} is not the partition count ${ctx.partitions}`,
      );
    if ((spec.minReplicaCount ?? 0) < 1 || (spec.minReplicaCount ?? 0) > ctx.partitions)
      problems.push(`${where(so)}: minReplicaCount ${spec.minReplicaCount} is outside 1..${ctx.partitions}`);
    const window = spec.advanced?.horizontalPodAutoscalerConfig?.behavior?.scaleDown?.stabilizationWindowSeconds;
    if (!window || window < 60) problems.push(`${where(so)}: no scale-down stabilisation window of a minute or more`);
    const target = objects.find((o) => o.kind === ref.kind && o.metadata.name === ref.name);
    const container = (target?.spec as { template?: PodTemplate } | undefined)?.template?.spec.containers[0];
    const env = new Map<string, string>();
    for (const src of container?.envFrom ?? [])
      for (const [k, v] of Object.entries(find("ConfigMap", src.configMapRef?.name ?? "")?.data ?? {})) env.set(k, v);
    for (const e of container?.env ?? []) if (e.value !== undefined) env.set(e.name, e.value);
    const kafka = (spec.triggers ?? []).filter((t) => t.type === "kafka");
    if (kafka.length !== 1) problems.push(`${where(so)}: expected one kafka trigger, found ${kafka.length}`);
    for (const t of kafka) {
      for (const [k, v] of Object.entries(t.metadata)) {
        if (k.endsWith("FromEnv") && !env.has(v))
          problems.push(`${where(so)}: trigger ${k}=${v} is not in the target container's environment`);
      }
      if (!("lagThreshold" in t.metadata)) problems.push(`${where(so)}: the kafka trigger has no lagThreshold`);
    }
  }

  // KEDA's credentials: documented external Secret keys, and an existing TriggerAuthentication.
  for (const ta of byKind("TriggerAuthentication")) {
    for (const ref of (ta.spec as { secretTargetRef?: { name: string; key: string }[] }).secretTargetRef ?? []) {
      if (!find("Secret", ref.name) && !EXTERNAL_SECRETS[ref.name]?.includes(ref.key))
        problems.push(`${where(ta)}: Secret ${ref.name} key ${ref.key} is not a documented external Secret key`);
    }
  }
  for (const so of byKind("ScaledObject")) {
    for (const t of (so.spec as { triggers?: { authenticationRef?: { name: string } }[] }).triggers ?? []) {
      if (t.authenticationRef && !find("TriggerAuthentication", t.authenticationRef.name))
        problems.push(`${where(so)}: authenticationRef ${t.authenticationRef.name} does not exist`);
    }
  }

  for (const r of byKind("Rollout")) {
    const spec = r.spec as {
      selector?: LabelSelector;
      workloadRef?: TargetRef;
      strategy?: {
        canary?: {
          steps?: { setWeight?: number }[];
          analysis?: { templates?: { templateName: string }[]; args?: { name: string }[] };
        };
      };
    };
    if (spec.workloadRef) {
      const w = objects.find(
        (o) =>
          o.kind === spec.workloadRef?.kind &&
          o.metadata.name === spec.workloadRef?.name &&
          o.apiVersion === spec.workloadRef?.apiVersion,
      );
      const labels = (w?.spec as { template?: PodTemplate } | undefined)?.template?.metadata?.labels;
      if (!w) problems.push(`${where(r)}: workloadRef ${JSON.stringify(spec.workloadRef)} does not exist`);
      else if (!matches(spec.selector?.matchLabels, labels))
        problems.push(`${where(r)}: selector does not match the labels of ${where(w)}'s template`);
      else if ((w.spec as { replicas?: number }).replicas !== 0)
        problems.push(`${where(r)}: the referenced ${where(w)} must keep 0 replicas (the Rollout runs the pods)`);
    }
    const canary = spec.strategy?.canary;
    const weights = (canary?.steps ?? []).flatMap((s) => (s.setWeight === undefined ? [] : [s.setWeight]));
    if (JSON.stringify(weights) !== JSON.stringify([10, 50, 100]))
      problems.push(`${where(r)}: canary weights ${JSON.stringify(weights)} (expected 10, 50, 100)`);
    const given = new Set((canary?.analysis?.args ?? []).map((a) => a.name));
    if (!canary?.analysis?.templates?.length) problems.push(`${where(r)}: the canary runs no analysis`);
    for (const { templateName } of canary?.analysis?.templates ?? []) {
      const at = find("AnalysisTemplate", templateName);
      if (!at) {
        problems.push(`${where(r)}: AnalysisTemplate ${templateName} does not exist`);
        continue;
      }
      if (!(at.spec as { args?: { name: string }[] }).args?.some((a) => a.name === "namespace"))
        problems.push(`${where(r)}: ${templateName} takes no namespace argument`);
      const nsArg = (canary?.analysis?.args ?? []) as {
        name: string;
        valueFrom?: { fieldRef?: { fieldPath?: string } };
      }[];
      if (nsArg.find((a) => a.name === "namespace")?.valueFrom?.fieldRef?.fieldPath !== "metadata.namespace")
        problems.push(`${where(r)}: passes ${templateName}'s namespace argument not from its own metadata.namespace`);
      for (const a of (at.spec as { args?: { name: string; value?: string }[] }).args ?? []) {
        if (a.value === undefined && !given.has(a.name))
          problems.push(`${where(r)}: passes no value for ${templateName}'s argument ${a.name}`);
      }
    }
  }

  problems.push(...analysisProblems(byKind("AnalysisTemplate"), ctx.serverMetrics));
  return problems;
}

/** The pod template of a workload: spec.template, or a CronJob's spec.jobTemplate.spec.template. */
export function podTemplateOf(o: K8sObject): PodTemplate | undefined {
  const spec = o.spec as { template?: PodTemplate; jobTemplate?: { spec?: { template?: PodTemplate } } } | undefined;
  return spec?.template ?? spec?.jobTemplate?.spec?.template;
}

/**
 * The canary analysis: each query names only metrics server/metrics.ts exports (histograms with
 * their _bucket/_count/_sum series), selects the canary's pods, reads POST /v1/scans, and fails at
 * the SLOs' thresholds: error rate above 1%, p95 above 0.4 s.
 */
export function analysisProblems(templates: K8sObject[], serverMetrics: string): string[] {
  const problems: string[] = [];
  const exported = new Set<string>();
  for (const m of serverMetrics.matchAll(/name:\s*"([a-z_:][a-z0-9_:]*)"/g)) {
    const name = m[1] as string;
    exported.add(name);
    for (const suffix of ["_bucket", "_count", "_sum"]) exported.add(`${name}${suffix}`);
  }
  const PROMQL_WORDS = new Set([
    "sum",
    "rate",
    "by",
    "le",
    "histogram_quantile",
    "without",
    "on",
    "ignoring",
    "or",
    "and",
    "vector",
  ]);
  const found = { errorRate: false, p95: false };
  for (const t of templates) {
    for (const m of (
      t.spec as {
        metrics?: { name: string; failureCondition?: string; provider?: { prometheus?: { query: string } } }[];
      }
    ).metrics ?? []) {
      const q = m.provider?.prometheus?.query;
      const mw = `AnalysisTemplate/${t.metadata.name} metric ${m.name}`;
      if (!q) {
        problems.push(`${mw}: not a Prometheus query`);
        continue;
      }
      // Metric names: identifiers directly before a { selector.
      const names = [...q.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{/g)].map((x) => x[1] as string);
      if (names.length === 0) problems.push(`${mw}: names no metric`);
      for (const n of names) {
        if (!PROMQL_WORDS.has(n) && !exported.has(n)) problems.push(`${mw}: ${n} is not a metric of server/metrics.ts`);
      }
      // Selectors: what is between a metric's { and its }, the {{args.…}} placeholders included.
      const selectors = [...q.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*\s*\{((?:[^{}]|\{\{[^{}]*\}\})*)\}/g)].map(
        (x) => x[1] as string,
      );
      if (selectors.length !== names.length) problems.push(`${mw}: a metric without a selector`);
      for (const s of selectors) {
        if (!s.includes('rollouts_pod_template_hash="{{args.canary-hash}}"'))
          problems.push(`${mw}: selector {${s}} does not restrict to the canary's pods`);
        // The templates are the same in every overlay: the hash alone matches every environment's pods.
        if (!/(^|[,\s])namespace="\{\{args\.namespace\}\}"/.test(s))
          problems.push(`${mw}: selector {${s}} does not restrict to the Rollout's namespace`);
        if (!s.includes('route="/v1/scans"')) problems.push(`${mw}: selector {${s}} is not POST /v1/scans`);
      }
      if (names.includes("http_requests_total")) {
        found.errorRate = true;
        if (m.failureCondition !== "result[0] > 0.01")
          problems.push(`${mw}: failureCondition ${m.failureCondition} (the error-rate bar is result[0] > 0.01)`);
        if (!q.includes('status=~"5.."') || !q.includes('status!~"4.."'))
          problems.push(`${mw}: not the availability SLI (5xx among the non-4xx answers)`);
      }
      if (names.includes("http_request_duration_seconds_bucket")) {
        found.p95 = true;
        if (!q.includes("histogram_quantile(0.95,")) problems.push(`${mw}: not a p95`);
        if (m.failureCondition !== "result[0] > 0.4")
          problems.push(`${mw}: failureCondition ${m.failureCondition} (the latency SLO is p95 <= 0.4 s)`);
      }
    }
  }
  if (!found.errorRate) problems.push("no AnalysisTemplate checks the canary's error rate");
  if (!found.p95) problems.push("no AnalysisTemplate checks the canary's p95 latency");
  return problems;
}

/**
 * Unknown fields: the models' validate() accepts fields their schemas do not have (a misspelt
 * `readinesProbe` passes), so every object is also type-checked as an object literal of its
 * model's interface (I<Kind>), where TypeScript refuses any property the type does not declare.
 * One file for all the objects given, one tsc run; the answer names each wrong object.
 */
export function unknownFieldProblems(objects: { label: string; object: K8sObject }[], root: string): string[] {
  const dir = join(root, "node_modules/.cache/k8s-typecheck");
  mkdirSync(dir, { recursive: true });
  const imports = new Map<string, string>();
  const lines: string[] = [];
  const labels: string[] = [];
  const problems: string[] = [];
  for (const [i, { label, object }] of objects.entries()) {
    const mod = modelModule(object.apiVersion, object.kind);
    if (!mod) {
      problems.push(`${label}: no model for ${object.apiVersion} ${object.kind}`);
      continue;
    }
    const type = `T${imports.size}`;
    const alias = imports.get(mod) ?? type;
    if (!imports.has(mod)) imports.set(mod, alias);
    lines.push(`export const o${i}: ${alias} = ${JSON.stringify(object)};`);
    labels.push(label);
  }
  const header = [...imports].map(([mod, alias]) => {
    const kind = mod.slice(mod.lastIndexOf("/") + 1);
    return `import type { I${kind} as ${alias} } from "${mod}";`;
  });
  const file = join(dir, "manifests.ts");
  writeFileSync(file, [...header, ...lines, ""].join("\n"));
  const tsc = join(root, "node_modules/.bin/tsc");
  const args = ["--noEmit", "--strict", "--skipLibCheck", "--module", "esnext", "--moduleResolution", "bundler"];
  const res = spawnSync(tsc, [...args, "--target", "es2022", "--types", "bun", file], {
    encoding: "utf8",
    timeout: 120_000,
  });
  if (res.status === 0) return problems;
  for (const line of `${res.stdout}${res.stderr}`.split("\n")) {
    const m = line.match(/manifests\.ts\((\d+),\d+\): error TS\d+: (.*)$/);
    if (!m) continue;
    const at = Number(m[1]) - header.length - 1;
    problems.push(`${labels[at] ?? `line ${m[1]}`}: ${m[2]}`);
  }
  if (problems.length === 0) problems.push(`tsc failed: ${(res.stdout || res.stderr || String(res.error)).trim()}`);
  return problems;
}

/**
 * The cluster-wide log shipping (deploy/k8s/monitoring/, rendered): promtail's DaemonSet reads the
 * kubelet's files read-only with the generated config (`promtailConfig`, promtail-config.yaml),
 * as tightly as a root log reader can be (no capability, read-only root, no escalation, the
 * runtime's seccomp), with a token that only reads pods, its positions on the node, and its
 * HOSTNAME the node's name. Schemas are checked by the caller (schemaProblems).
 */
export function promtailProblems(objects: K8sObject[], promtailConfig: string): string[] {
  const problems: string[] = [];
  const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
  const clusterScoped = ["ClusterRole", "ClusterRoleBinding"];
  for (const o of objects) {
    const expected = clusterScoped.includes(o.kind) ? undefined : "monitoring";
    if (o.metadata.namespace !== expected)
      problems.push(`${o.kind}/${o.metadata.name}: namespace ${o.metadata.namespace} (expected ${expected})`);
  }
  const ds = objects.find((o) => o.kind === "DaemonSet" && o.metadata.name === "promtail");
  if (!ds) return [...problems, "no DaemonSet promtail"];
  interface Mount {
    name: string;
    mountPath: string;
    readOnly?: boolean;
  }
  interface Volume {
    name: string;
    configMap?: { name: string };
    hostPath?: { path: string; type?: string };
  }
  const spec = ds.spec as {
    selector?: LabelSelector;
    template: {
      metadata?: { labels?: Record<string, string> };
      spec: {
        serviceAccountName?: string;
        automountServiceAccountToken?: boolean;
        securityContext?: SecurityContext;
        volumes?: Volume[];
        containers: (Omit<Container, "volumeMounts" | "securityContext" | "env"> & {
          args?: string[];
          volumeMounts?: Mount[];
          securityContext?: SecurityContext & { capabilities?: { drop?: string[]; add?: string[] } };
          env?: { name: string; valueFrom?: { fieldRef?: { fieldPath?: string } } }[];
        })[];
      };
    };
  };
  const pod = spec.template.spec;
  if (!matches(spec.selector?.matchLabels, spec.template.metadata?.labels))
    problems.push("DaemonSet/promtail: selector does not match its template's labels");
  if (pod.securityContext?.seccompProfile?.type !== "RuntimeDefault")
    problems.push("DaemonSet/promtail: pod securityContext.seccompProfile is not RuntimeDefault");

  // Its token: a ServiceAccount bound to a ClusterRole that reads pods and nothing else.
  const sa = pod.serviceAccountName ?? "default";
  if (!find("ServiceAccount", sa)) problems.push(`DaemonSet/promtail: ServiceAccount ${sa} is not rendered`);
  if (pod.automountServiceAccountToken === false)
    problems.push("DaemonSet/promtail: no API token mounted, so no pod discovery");
  const bindings = objects.filter(
    (o) =>
      o.kind === "ClusterRoleBinding" &&
      ((o as unknown as { subjects?: { kind: string; name: string; namespace?: string }[] }).subjects ?? []).some(
        (s) => s.kind === "ServiceAccount" && s.name === sa && s.namespace === "monitoring",
      ),
  );
  if (bindings.length === 0) problems.push(`ServiceAccount ${sa}: no ClusterRoleBinding binds it`);
  for (const b of bindings) {
    const ref = (b as unknown as { roleRef: { kind: string; name: string } }).roleRef;
    const role = find(ref.kind, ref.name) as unknown as
      | { rules?: { apiGroups?: string[]; resources?: string[]; verbs?: string[] }[] }
      | undefined;
    if (!role) {
      problems.push(`ClusterRoleBinding/${b.metadata.name}: ${ref.kind} ${ref.name} is not rendered`);
      continue;
    }
    const rules = role.rules ?? [];
    const grants = rules.flatMap((r) =>
      (r.resources ?? []).flatMap((res) =>
        (r.verbs ?? []).map((v) => `${(r.apiGroups ?? [""]).join(",")}/${res}:${v}`),
      ),
    );
    const extra = grants.filter((g) => !["/pods:get", "/pods:list", "/pods:watch"].includes(g));
    if (extra.length > 0) problems.push(`${ref.kind}/${ref.name}: grants more than reading pods: ${extra.join(" ")}`);
    for (const v of ["list", "watch"])
      if (!grants.includes(`/pods:${v}`)) problems.push(`${ref.kind}/${ref.name}: cannot ${v} pods (discovery)`);
  }

  const config = Bun.YAML.parse(promtailConfig) as {
    server: { http_listen_port: number };
    positions: { filename: string };
    scrape_configs: { relabel_configs?: { target_label?: string; replacement?: string }[] }[];
  };
  if (pod.containers.length !== 1) problems.push("DaemonSet/promtail: expected one container");
  const c = pod.containers[0];
  if (!c) return problems;
  const cw = `DaemonSet/promtail container ${c.name}`;
  const sc = c.securityContext ?? {};
  if (sc.readOnlyRootFilesystem !== true) problems.push(`${cw}: readOnlyRootFilesystem is not true`);
  if (sc.allowPrivilegeEscalation !== false) problems.push(`${cw}: allowPrivilegeEscalation is not false`);
  if (!sc.capabilities?.drop?.includes("ALL")) problems.push(`${cw}: capabilities do not drop ALL`);
  if (sc.capabilities?.add?.length) problems.push(`${cw}: adds capabilities ${sc.capabilities.add.join(", ")}`);
  for (const part of ["requests", "limits"] as const)
    for (const r of ["cpu", "memory"]) if (!c.resources?.[part]?.[r]) problems.push(`${cw}: no ${part}.${r}`);
  if (!/^[\w./-]+\/promtail:\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?$/.test(c.image))
    problems.push(`${cw}: image ${c.image} is not a released promtail version`);

  const volume = (m: Mount | undefined) => pod.volumes?.find((v) => v.name === m?.name);
  const mountOf = (path: string) =>
    (c.volumeMounts ?? [])
      .filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`))
      .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  // The config: the file -config.file names is the generated config, from a rendered ConfigMap.
  const file = (c.args ?? []).find((a) => a.startsWith("-config.file="))?.slice("-config.file=".length);
  const configMount = file ? mountOf(file) : undefined;
  const configMap = volume(configMount)?.configMap?.name;
  const data = configMap ? find("ConfigMap", configMap)?.data : undefined;
  const key = file && configMount ? file.slice(configMount.mountPath.length + 1) : "";
  if (!file) problems.push(`${cw}: no -config.file argument`);
  else if (data?.[key] !== promtailConfig)
    problems.push(
      `${cw}: ${file} is not deploy/k8s/monitoring/promtail-config.yaml (ConfigMap ${configMap} key ${key})`,
    );
  // The kubelet's files: read-only, from the node.
  for (const p of config.scrape_configs.flatMap((s) => s.relabel_configs ?? []))
    if (p.target_label === "__path__") {
      const m = mountOf(p.replacement ?? "");
      const v = volume(m);
      if (!m || v?.hostPath?.path !== m.mountPath)
        problems.push(`${cw}: ${p.replacement} is not on a hostPath mount of the same path`);
      else if (m.readOnly !== true) problems.push(`${cw}: ${m.mountPath} is not mounted read-only`);
    }
  // Positions: on the node, so a new pod resumes where the last one stopped.
  const positions = mountOf(config.positions.filename);
  if (!volume(positions)?.hostPath)
    problems.push(`${cw}: the positions file ${config.positions.filename} is not on a hostPath volume`);
  for (const m of c.volumeMounts ?? [])
    if (volume(m)?.hostPath && m !== positions && m.readOnly !== true)
      problems.push(`${cw}: hostPath ${m.mountPath} is writable (only the positions' directory may be)`);
  if (c.env?.find((e) => e.name === "HOSTNAME")?.valueFrom?.fieldRef?.fieldPath !== "spec.nodeName")
    problems.push(`${cw}: HOSTNAME is not the node's name (spec.nodeName): promtail would keep no pod`);
  const port = c.ports?.find((p) => p.containerPort === config.server.http_listen_port);
  if (!port) problems.push(`${cw}: promtail's port ${config.server.http_listen_port} is not a container port`);
  const ready = c.readinessProbe?.httpGet;
  if (!ready || (ready.port !== port?.name && ready.port !== port?.containerPort) || ready.path !== "/ready")
    problems.push(`${cw}: the readiness probe is not promtail's /ready on its port`);
  return problems;
}

/**
 * The metric names monitoring/pgbouncer-exporter/run.py exports (the image the environments run
 * beside the app): the launcher itself runs, as its image runs it (Debian's python3 and
 * prometheus-pgbouncer-exporter, installed here and by .ci/run), on a stand-in connection that
 * answers every SHOW (no pools, every list 0) and a web server that returns at once; then everything
 * registered is written in the exposition format, whose names are read back. So whatever run.py
 * renames, adds or registers is in the answer, and nothing else.
 */
export function pgbouncerExporterMetrics(runPy: string): string[] {
  const harness = `
import runpy, sys
from prometheus_client import generate_latest
from prometheus_client.core import REGISTRY
from prometheus_pgbouncer_exporter import cli, collectors, utils

class Cursor:
    description = []
    query = ""
    def __enter__(self): return self
    def __exit__(self, *exc): return False
    def execute(self, query, *args): self.query = query
    def fetchall(self):
        # SHOW LISTS is read by name (one row per item); the others by column, here with no row.
        if "LISTS" in self.query: return [(key, 0) for key in collectors.ListsCollector.metrics]
        return []
    def fetchone(self): return None
    def close(self): pass

class Connection:
    closed = 0
    def cursor(self): return Cursor()
    def close(self): pass
    def set_session(self, **kwargs): pass

utils.get_connection = cli.get_connection = lambda *args, **kwargs: Connection()

class Server:
    def __init__(self, *args, **kwargs): pass
    def serve_forever(self): raise KeyboardInterrupt

cli.HTTPServer = Server
sys.argv = [sys.argv[1], "--pgbouncer-host", "127.0.0.1", "--port", "0"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
sys.stdout.write(generate_latest(REGISTRY).decode())
`;
  const res = spawnSync("/usr/bin/python3", ["-c", harness, runPy], { encoding: "utf8", timeout: 60_000 });
  if (res.status !== 0)
    throw new Error(
      `could not run ${runPy} (needs Debian's python3 and prometheus-pgbouncer-exporter, which .ci/run installs): ${res.stderr || res.error}`,
    );
  const names = new Set<string>();
  for (const line of res.stdout.split("\n")) {
    const m = /^# TYPE (\S+)/.exec(line) ?? /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (m?.[1]?.startsWith("pgbouncer_")) names.add(m[1]);
  }
  return [...names].sort();
}
