// Promtail's config for the Kubernetes DaemonSet (deploy/k8s/monitoring/), written to
// deploy/k8s/monitoring/promtail-config.yaml, whose configMapGenerator makes it the DaemonSet's
// ConfigMap. The JSON stages (level and the line's service as labels, the line's own time) are
// taken from monitoring/promtail/config.yaml, compose's config, which stays their one source: this
// wraps them for the kubelet's files (discovery of this node's pods, the `cri` stage) and
// test/unit/promtail-k8s.test.ts fails when the file is out of date.
//   bun tools/k8s-promtail.ts           (write it)
//   bun tools/k8s-promtail.ts --check   (exit 1 when it differs from what the compose config gives)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { writeOrCheck } from "./generated.ts";

const ROOT = new URL("..", import.meta.url).pathname;
export const SOURCE = join(ROOT, "monitoring/promtail/config.yaml");
export const OUTPUT = join(ROOT, "deploy/k8s/monitoring/promtail-config.yaml");
export const REGENERATE = "bun tools/k8s-promtail.ts";

/** The push URL: a Loki in the namespace `monitoring` (docs/deployment.md, "Logs"); change it there. */
export const LOKI_PUSH_URL = "http://loki.monitoring:3100/loki/api/v1/push";
/** Promtail's own HTTP port (/ready for the probe, /metrics), the DaemonSet's port `http-metrics`. */
export const HTTP_PORT = 3101;
/** The positions file, on the hostPath volume mounted at its directory (promtail.yaml). */
export const POSITIONS_FILE = "/run/promtail/positions.yaml";
/**
 * The qrscan pods' containers whose lines are the app's JSON (shared/logger.ts): the server and the
 * worker pods' supervisor and worker. migrate and maintain print plain text (console.log), and the
 * operator's jobs in qrscan-ops write to the exec session, not the container's log.
 */
export const APP_SELECTOR = '{namespace=~"qrscan-.+", container=~"server|worker"}';

interface Stage {
  [name: string]: unknown;
}
interface ScrapeConfig {
  job_name: string;
  pipeline_stages?: Stage[];
}

/**
 * The app's JSON stages in compose's config: the `containers` job's match stage's, which must be
 * the `app` job's too (the same lines, written to files by `bun run dev`).
 */
export function jsonStages(text = readFileSync(SOURCE, "utf8")): Stage[] {
  const config = Bun.YAML.parse(text) as { scrape_configs: ScrapeConfig[] };
  const job = (name: string) => config.scrape_configs.find((j) => j.job_name === name);
  const matches = (job("containers")?.pipeline_stages ?? []).filter((s) => "match" in s);
  if (matches.length !== 1) throw new Error(`${SOURCE}: expected one match stage in job containers`);
  const stages = (matches[0]?.match as { stages?: Stage[] }).stages ?? [];
  const app = job("app")?.pipeline_stages ?? [];
  if (stages.length === 0) throw new Error(`${SOURCE}: the containers job's match stage has no stages`);
  if (JSON.stringify(app) !== JSON.stringify(stages))
    throw new Error(`${SOURCE}: the app job's stages differ from the containers job's JSON stages`);
  return stages;
}

/** The file's text: deterministic, from compose's config. */
export function renderPromtailConfig(source = readFileSync(SOURCE, "utf8")): string {
  const config = {
    server: { http_listen_address: "0.0.0.0", http_listen_port: HTTP_PORT, grpc_listen_port: 0 },
    positions: { filename: POSITIONS_FILE },
    clients: [{ url: LOKI_PUSH_URL }],
    scrape_configs: [
      {
        job_name: "kubernetes-pods",
        kubernetes_sd_configs: [{ role: "pod" }],
        relabel_configs: [
          // This node's pods only (promtail also asks the API for them alone): HOSTNAME is the node.
          { source_labels: ["__meta_kubernetes_pod_node_name"], target_label: "__host__" },
          { source_labels: ["__meta_kubernetes_namespace"], target_label: "namespace" },
          { source_labels: ["__meta_kubernetes_pod_name"], target_label: "pod" },
          { source_labels: ["__meta_kubernetes_pod_container_name"], target_label: "container" },
          // app: app.kubernetes.io/name (else the pod's `app` label); qrscan's without "qrscan-",
          // the names the lines' own `service` field uses, which the JSON stages set (supervisor).
          {
            source_labels: ["__meta_kubernetes_pod_label_app_kubernetes_io_name", "__meta_kubernetes_pod_label_app"],
            regex: "^;*([^;]+)(;.*)?$",
            target_label: "app",
          },
          {
            source_labels: ["__meta_kubernetes_pod_label_app_kubernetes_io_part_of", "app"],
            regex: "qrscan;qrscan-(.+)",
            target_label: "app",
          },
          { target_label: "job", replacement: "kubernetes-pods" },
          // The kubelet's files: /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log
          // (a static pod's directory has its config hash instead of the uid).
          {
            source_labels: ["__meta_kubernetes_pod_uid", "__meta_kubernetes_pod_container_name"],
            separator: "/",
            target_label: "__path__",
            replacement: "/var/log/pods/*$1/*.log",
          },
          {
            source_labels: [
              "__meta_kubernetes_pod_annotationpresent_kubernetes_io_config_hash",
              "__meta_kubernetes_pod_annotation_kubernetes_io_config_hash",
              "__meta_kubernetes_pod_container_name",
            ],
            separator: "/",
            regex: "true/(.*)",
            target_label: "__path__",
            replacement: "/var/log/pods/*$1/*.log",
          },
        ],
        pipeline_stages: [{ cri: {} }, { match: { selector: APP_SELECTOR, stages: jsonStages(source) } }],
      },
    ],
  };
  const header = [
    `# GENERATED by \`${REGENERATE}\` from monitoring/promtail/config.yaml: do not edit, regenerate.`,
    "# Promtail on every node (deploy/k8s/monitoring/promtail.yaml): the kubelet's files of this node's",
    "# pods, in the CRI format (the `cri` stage: the stream label, the kubelet's time, partial lines",
    "# joined), labelled namespace, pod, container, app, job, stream (and filename). The qrscan pods'",
    "# server and worker lines then go through compose's JSON stages: labels level and app",
    "# (the line's service: server, worker, supervisor), the line's own time; request_id, trace_id,",
    "# batch_id stay in the line. Other lines (librdkafka's stderr, migrate's and maintain's plain",
    "# text) pass unparsed, at the kubelet's time.",
    `# Pushed to ${LOKI_PUSH_URL} (docs/deployment.md, "Logs").`,
  ];
  return `${header.join("\n")}\n${Bun.YAML.stringify(config, null, 2).trimEnd()}\n`;
}

if (import.meta.main)
  writeOrCheck([{ path: OUTPUT, text: renderPromtailConfig(), source: "monitoring/promtail/config.yaml" }], REGENERATE);
