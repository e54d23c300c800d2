// deploy/k8s/monitoring/promtail-config.yaml, the Kubernetes DaemonSet's promtail config, run by
// test/helpers/promtail-pipeline.ts on the kubelet's lines (CRI format) of a server pod and a worker
// pod: the app's real pino lines (shared/logger.ts, with the request and trace ids the server and
// the worker write), librdkafka's stderr diagnostics, a line the kubelet split. Then the
// evaluator's `cri` stage and pod discovery against promtail's semantics. The file is generated
// from compose's config (tools/k8s-promtail.ts): a stale file fails here too.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { createLogger } from "../../shared/logger.ts";
import { OUTPUT, REGENERATE, jsonStages, renderPromtailConfig } from "../../tools/k8s-promtail.ts";
import {
  HIGH_CARDINALITY_FIELDS,
  type Pod,
  PromtailConfig,
  PromtailUnsupported,
  criLine,
} from "../helpers/promtail-pipeline.ts";

const TEXT = existsSync(OUTPUT) ? readFileSync(OUTPUT, "utf8") : "";
const JOB = "kubernetes-pods";
const NODE = "node-a";

/** Pods as the overlays render them (deploy/k8s/base): their labels and containers. */
const SERVER: Pod = {
  namespace: "qrscan-prod",
  name: "qrscan-server-6d5f7b9c8d-x7k2p",
  uid: "0f6c1f2e-5b9a-4d0e-9a7c-3e2d1c0b9a88",
  nodeName: NODE,
  labels: {
    "app.kubernetes.io/name": "qrscan-server",
    "app.kubernetes.io/part-of": "qrscan",
    "pod-template-hash": "6d5f7b9c8d",
    "rollouts-pod-template-hash": "6d5f7b9c8d",
  },
  controller: { kind: "ReplicaSet", name: "qrscan-server-6d5f7b9c8d" },
  containers: [
    {
      name: "server",
      image: "qrscan-server:0.1.0",
      ports: [
        { name: "http", containerPort: 8080 },
        { name: "metrics", containerPort: 9464 },
      ],
    },
  ],
};
const WORKER: Pod = {
  ...SERVER,
  name: "qrscan-worker-7c9d8b6f5-m2q4z",
  uid: "5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
  labels: { "app.kubernetes.io/name": "qrscan-worker", "app.kubernetes.io/part-of": "qrscan" },
  controller: { kind: "ReplicaSet", name: "qrscan-worker-7c9d8b6f5" },
  containers: [
    {
      name: "worker",
      image: "qrscan-worker:0.1.0",
      ports: [
        { name: "metrics", containerPort: 9470 },
        { name: "supervisor", containerPort: 9469 },
      ],
    },
  ],
};

const REQUEST_ID = "99c51752-8a5d-4f9b-b33c-b7d0e058e8d5";
const TRACE_ID = "bc7fdb67e3c0b09598ae87e66fc0a4dd";

/** The lines the processes write (shared/logger.ts), one per call, without their end of line. */
function appLines(): { server: string[]; worker: string[] } {
  const out = { server: [] as string[], worker: [] as string[] };
  const sink = (into: string[]) =>
    new Writable({
      write(chunk, _encoding, done) {
        into.push(String(chunk).replace(/\n$/, ""));
        done();
      },
    });
  const server = createLogger("server", "info", sink(out.server));
  // server/app.ts's 401 line and a request failure, with the request's and the trace's ids.
  server.warn(
    { reason: "unknown_key", key_prefix: "qrs_NX4L", request_id: REQUEST_ID, trace_id: TRACE_ID },
    "authentication failed; answered 401",
  );
  server.error({ err: new Error("Kafka did not acknowledge"), request_id: REQUEST_ID, trace_id: TRACE_ID }, "failed");
  const workerSink = sink(out.worker);
  createLogger("supervisor", "info", workerSink).info({ worker: 0, pid: 19 }, "worker started");
  // worker/main.ts's failed-batch line: the batch's offsets and the ids of its requests and traces.
  createLogger("worker", "info", workerSink).fatal(
    {
      err: new Error("connection terminated"),
      worker: 0,
      batch_id: 17,
      offsets: [{ topic: "scans", partition: 3, offset: 42 }],
      request_ids: [REQUEST_ID, "0b6f7f1e-8d0a-4c2e-9a55-5d3c1f0e2a11"],
      trace_ids: [TRACE_ID],
    },
    "worker failed; exiting for the supervisor to restart it",
  );
  return out;
}

// librdkafka's diagnostics on stderr (copied from a compose run's server container).
const RDKAFKA =
  "%4|1796572518.153|GETPID|rdkafka#producer-1| [thrd:main]: Failed to acquire idempotence PID from broker sasl_ssl://kafka-3:9094/3: Broker: Coordinator load in progress: retrying";

/** The kubelet writes a line this long after the line's own time. */
const LAG_NS = 4_626_526n;
const kubeletTime = (line: string) => BigInt(JSON.parse(line).time) * 1_000_000n + LAG_NS;

interface Shipped {
  pod: Pod;
  container: string;
  /** The process's line (the kubelet's content). */
  line: string;
  kubeletNs: bigint;
  pushed: ReturnType<PromtailConfig["runPipeline"]>;
}

/** What promtail on NODE pushes for each of a container's kubelet lines. */
function ship(
  config: PromtailConfig,
  pod: Pod,
  lines: { line: string; stream?: "stdout" | "stderr"; timeNs?: bigint }[],
): Shipped[] {
  const container = pod.containers[0]!.name;
  const labels = config.podEntryLabels(JOB, pod, container, NODE);
  if (!labels) throw new Error(`promtail tails no file of ${pod.name}/${container}`);
  return lines.map(({ line, stream = "stdout", timeNs = kubeletTime(line) }) => ({
    pod,
    container,
    line,
    kubeletNs: timeNs,
    // The file target's own time (when promtail read it) is never the one pushed.
    pushed: config.runPipeline(JOB, labels, criLine(timeNs, stream, line), 0n),
  }));
}

/** What is wrong with the shipped entries, as sentences (none: all is well). */
function problems(entries: Shipped[]): string[] {
  const out: string[] = [];
  for (const e of entries) {
    const at = `${e.pod.name} ${JSON.stringify(e.line.slice(0, 60))}`;
    if (!e.pushed) {
      out.push(`${at}: dropped`);
      continue;
    }
    const { labels, timestampNs, line } = e.pushed;
    if (line !== e.line) out.push(`${at}: line ${JSON.stringify(line.slice(0, 60))}, not the process's`);
    for (const [l, v] of [
      ["namespace", e.pod.namespace],
      ["pod", e.pod.name],
      ["container", e.container],
      ["job", JOB],
    ])
      if (labels[l!] !== v) out.push(`${at}: ${l} label ${labels[l!]}, not ${v}`);
    const fields = (() => {
      try {
        return JSON.parse(e.line) as Record<string, unknown>;
      } catch {
        return null;
      }
    })();
    // Ids and other per-request values: in the line, never labels.
    for (const f of [...HIGH_CARDINALITY_FIELDS, "request_ids", "trace_ids"])
      if (f in labels) out.push(`${at}: ${f} is a label`);
    if (fields) {
      if (!e.pushed.jsonParsed) out.push(`${at}: JSON line not parsed`);
      if (labels.level !== fields.level) out.push(`${at}: level label ${labels.level}, line's ${fields.level}`);
      if (labels.app !== fields.service) out.push(`${at}: app label ${labels.app}, line's service ${fields.service}`);
      if (timestampNs !== BigInt(fields.time as number) * 1_000_000n)
        out.push(`${at}: timestamp ${timestampNs}, not the line's time ${fields.time} ms`);
    } else {
      if (e.pushed.jsonParsed || "level" in labels) out.push(`${at}: parsed, though not JSON`);
      if (timestampNs !== e.kubeletNs) out.push(`${at}: timestamp ${timestampNs}, not the kubelet's ${e.kubeletNs}`);
    }
  }
  return out;
}

/** The server's and the worker's lines through `config`: every entry. */
function shipAll(config: PromtailConfig): Shipped[] {
  const { server, worker } = appLines();
  return [
    ...ship(config, SERVER, [
      ...server.map((line) => ({ line })),
      { line: RDKAFKA, stream: "stderr" as const, timeNs: 1796572518190521007n },
    ]),
    ...ship(
      config,
      WORKER,
      worker.map((line) => ({ line })),
    ),
  ];
}

const shipped = () => new PromtailConfig(TEXT, OUTPUT);

describe("deploy/k8s/monitoring/promtail-config.yaml on the kubelet's lines", () => {
  test(`it is the one generated from compose's JSON stages (regenerate: ${REGENERATE})`, () => {
    expect(TEXT).toBe(renderPromtailConfig());
    const config = Bun.YAML.parse(TEXT) as {
      scrape_configs: { pipeline_stages: { match?: { stages: unknown[] } }[] }[];
    };
    const match = config.scrape_configs[0]?.pipeline_stages.find((s) => s.match)?.match;
    expect(match?.stages).toEqual(jsonStages());
  });

  test("server and worker lines: namespace, pod, container, app and level labels, the line's own time, ids in the line", () => {
    const entries = shipAll(shipped());
    expect(entries.length).toBe(5);
    expect(problems(entries)).toEqual([]);
    const [warn, , rdkafka, supervisor, fatal] = entries.map((e) => e.pushed!);
    expect(warn).toEqual({
      labels: {
        namespace: "qrscan-prod",
        pod: SERVER.name,
        container: "server",
        app: "server",
        job: JOB,
        filename: `/var/log/pods/qrscan-prod_${SERVER.name}_${SERVER.uid}/server/0.log`,
        stream: "stdout",
        level: "warn",
      },
      timestampNs: BigInt(JSON.parse(warn!.line).time) * 1_000_000n,
      line: warn!.line,
      jsonParsed: true,
    });
    // The ids are fields of the line, for `| json | request_id="…"`.
    expect(JSON.parse(warn!.line)).toMatchObject({ request_id: REQUEST_ID, trace_id: TRACE_ID });
    expect(JSON.parse(fatal!.line)).toMatchObject({
      request_ids: [REQUEST_ID, expect.any(String)],
      trace_ids: [TRACE_ID],
    });
    // librdkafka's stderr line: unparsed, at the kubelet's time, stream stderr, app from the pod.
    const { level: _level, ...podLabels } = warn!.labels;
    expect(rdkafka).toEqual({
      labels: { ...podLabels, stream: "stderr" },
      timestampNs: 1796572518190521007n,
      line: RDKAFKA,
      jsonParsed: false,
    });
    // The worker pod: the supervisor's and the worker's lines, each under its own app.
    expect([supervisor!.labels.app, supervisor!.labels.level, fatal!.labels.app, fatal!.labels.level]).toEqual([
      "supervisor",
      "info",
      "worker",
      "fatal",
    ]);
  });

  test("a line the kubelet split (P, P, F) is one entry, parsed whole, at the last part's time", () => {
    const config = shipped();
    const labels = config.podEntryLabels(JOB, SERVER, "server", NODE)!;
    const [line] = appLines().server;
    const long = line!.replace('"msg":', `"padding":"${"x".repeat(40_000)}","msg":`);
    const parts = [long.slice(0, 16_384), long.slice(16_384, 32_768), long.slice(32_768)];
    const t = kubeletTime(long);
    const out = parts.map((p, i) =>
      config.runPipeline(JOB, labels, criLine(t + BigInt(i), "stdout", p, i < 2 ? "P" : "F"), 0n),
    );
    expect(out.slice(0, 2)).toEqual([null, null]);
    expect(out[2]).toMatchObject({ line: long, jsonParsed: true, labels: { level: "warn", app: "server" } });
  });

  test("pods elsewhere: another node's are left to its promtail; a non-qrscan pod's JSON is not parsed", () => {
    const config = shipped();
    expect(config.podEntryLabels(JOB, { ...SERVER, nodeName: "node-b" }, "server", NODE)).toBeNull();
    // A pod of another namespace with a container named "server": its labels, its lines as they are.
    const other: Pod = {
      ...SERVER,
      namespace: "shop",
      name: "api-0",
      labels: { app: "api" },
      controller: { kind: "StatefulSet", name: "api" },
    };
    const labels = config.podEntryLabels(JOB, other, "server", NODE)!;
    expect(labels.app).toBe("api");
    const line = '{"level":"info","time":1796572517868,"service":"api"}';
    expect(config.runPipeline(JOB, labels, criLine(1796572517870000000n, "stdout", line), 0n)).toEqual({
      labels: { ...labels, stream: "stdout" },
      timestampNs: 1796572517870000000n,
      line,
      jsonParsed: false,
    });
  });

  // The checks above catch a broken config: each of these edits of the file fails them.
  const edit =
    (...pairs: [string, string][]) =>
    (text: string) =>
      pairs.reduce((t, [from, to]) => {
        expect(t).toContain(from);
        return t.replace(from, to);
      }, text);
  test.each([
    ["no cri stage (the kubelet's prefix stays in the line)", edit(["      - cri: {}\n", ""])],
    [
      "no json stage",
      edit([
        "            - json:\n                expressions:\n                  level: level\n                  app: service\n                  time: time\n",
        "",
      ]),
    ],
    ["no labels stage", edit(["            - labels:\n                level: null\n                app: null\n", ""])],
    [
      "no timestamp stage",
      edit(["            - timestamp:\n                source: time\n                format: UnixMs\n", ""]),
    ],
    ["a selector that misses the workers", edit(['container=~\\"server|worker\\"', 'container=~\\"server\\"'])],
    ["no namespace label", edit(["target_label: namespace", "target_label: __namespace"])],
    ["no pod label", edit(["target_label: pod\n", "target_label: __pod\n"])],
    ["every node's pods on each node", edit(["target_label: __host__", "target_label: __node"])],
    [
      "a request id as a label",
      edit(
        ["                  time: time\n", "                  time: time\n                  request_id: request_id\n"],
        ["                app: null\n", "                app: null\n                request_id: null\n"],
      ),
    ],
  ])("the check fails with %s", (_what, breakIt) => {
    const broken = new PromtailConfig(breakIt(TEXT), "broken config");
    expect(configProblems(shipped())).toEqual([]);
    expect(configProblems(broken).length).toBeGreaterThan(0);
  });
});

/** The checks of this file's tests on a config: [] when it ships the lines right. */
function configProblems(config: PromtailConfig): string[] {
  const found: string[] = [];
  try {
    found.push(...problems(shipAll(config)));
  } catch (error) {
    found.push(String(error));
  }
  if (config.podEntryLabels(JOB, { ...SERVER, nodeName: "node-b" }, "server", NODE))
    found.push("tails another node's pod");
  return found;
}

// ---------------------------------------------------------------------------------------------

const T0 = 1_000_000_000_000_000_000n;
const criConfig = (stages = "      - cri: {}\n") =>
  new PromtailConfig(
    `scrape_configs:\n  - job_name: j\n    static_configs: [{targets: [localhost], labels: {job: j}}]\n    pipeline_stages:\n${stages}`,
  );

describe("the evaluator follows promtail's cri stage and pod discovery", () => {
  test("cri: the stream label, the kubelet's time, the content as the line; a line not in the format passes", () => {
    const config = criConfig();
    expect(config.runPipeline("j", { job: "j" }, "2026-12-06T15:55:18.190521007Z stderr F a b  c", T0)).toEqual({
      labels: { job: "j", stream: "stderr" },
      timestampNs: 1796572518190521007n,
      line: "a b  c",
      jsonParsed: false,
    });
    // An empty content, and a line of another format (a time, no stream): kept as it is.
    expect(config.runPipeline("j", {}, "2026-12-06T15:55:18Z stdout F ", T0)?.line).toBe("");
    for (const line of ["2026-12-06T15:55:18Z F stdout x", "plain text"])
      expect(config.runPipeline("j", { job: "j" }, line, T0)).toEqual({
        labels: { job: "j" },
        timestampNs: T0,
        line,
        jsonParsed: false,
      });
  });

  test("cri: partial lines are joined per stream (label set), without a separator", () => {
    const config = criConfig();
    const run = (line: string) => config.runPipeline("j", {}, line, T0)?.line ?? null;
    expect(run("2026-12-06T15:55:18.1Z stdout P ab")).toBeNull();
    expect(run("2026-12-06T15:55:18.2Z stderr F err")).toBe("err");
    expect(run("2026-12-06T15:55:18.3Z stdout P cd")).toBeNull();
    expect(run("2026-12-06T15:55:18.4Z stdout F ef")).toBe("abcdef");
    expect(run("2026-12-06T15:55:18.5Z stdout F gh")).toBe("gh");
  });

  test("pod discovery: one target per container port, the pod's labels and annotations sanitized", () => {
    const config = new PromtailConfig(`scrape_configs:
  - job_name: k
    kubernetes_sd_configs: [{role: pod}]
    relabel_configs:
      - {source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name, __meta_kubernetes_pod_container_port_name], target_label: x}
      - {source_labels: [__meta_kubernetes_pod_annotationpresent_kubernetes_io_config_hash], target_label: static}
      - {source_labels: [__meta_kubernetes_pod_uid, __meta_kubernetes_pod_container_name], separator: /, target_label: __path__, replacement: "/var/log/pods/*$1/*.log"}
`);
    // The first kept target of the container: its first port.
    expect(config.podEntryLabels("k", SERVER, "server", NODE)).toEqual({
      x: "qrscan-server;http",
      filename: `/var/log/pods/qrscan-prod_${SERVER.name}_${SERVER.uid}/server/0.log`,
    });
    const mirror = { ...SERVER, annotations: { "kubernetes.io/config.hash": "abc" } };
    expect(config.podEntryLabels("k", mirror, "server", NODE, 2)).toMatchObject({
      static: "true",
      filename: expect.stringMatching(/\/server\/2\.log$/),
    });
    // No __host__ rule: every node's promtail would tail it (the API query is by node; not modeled).
    expect(config.podEntryLabels("k", { ...SERVER, nodeName: "node-b" }, "server", NODE)).not.toBeNull();
    expect(config.podEntryLabels("k", SERVER, "sidecar", NODE)).toBeNull();
  });

  test.each([
    [
      "cri options",
      "    static_configs: [{targets: [a]}]\n    pipeline_stages: [{cri: {max_partial_lines: 5}}]\n",
      /max_partial_lines/,
    ],
    ["another role", "    kubernetes_sd_configs: [{role: node}]\n", /role node/],
    ["a namespaces filter", "    kubernetes_sd_configs: [{role: pod, namespaces: {names: [a]}}]\n", /namespaces/],
    [
      "an unmodeled discovered label",
      "    kubernetes_sd_configs: [{role: pod}]\n    relabel_configs: [{source_labels: [__meta_kubernetes_pod_container_id], target_label: id}]\n",
      /__meta_kubernetes_pod_container_id/,
    ],
  ])("refuses %s", (_what, body, message) => {
    const make = () => new PromtailConfig(`scrape_configs:\n  - job_name: k\n${body}`);
    expect(make).toThrow(PromtailUnsupported);
    expect(make).toThrow(message);
  });
});
