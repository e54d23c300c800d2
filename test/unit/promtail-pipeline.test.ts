// monitoring/promtail/config.yaml, run by test/helpers/promtail-pipeline.ts (promtail itself cannot
// run here) on real lines: the app's pino lines made by shared/logger.ts, and records copied from
// the engine's json-file logs of compose's containers (librdkafka's stderr, Kafka's log4j,
// Postgres, pgbouncer, migrate) with the labels compose 1.29 puts on them. Then the evaluator
// itself, against promtail's semantics, and its refusal of what it does not implement.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { createLogger } from "../../shared/logger.ts";
import {
  type ContainerLogs,
  PromtailConfig,
  PromtailConfigInvalid,
  PromtailUnsupported,
  checkContainerLines,
  containerLogProblems,
  goRegexp,
  loadPromtailConfig,
  parseRfc3339,
} from "../helpers/promtail-pipeline.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const CONFIG_PATH = `${ROOT}/monitoring/promtail/config.yaml`;
const CONFIG_TEXT = readFileSync(CONFIG_PATH, "utf8");
const APP_SERVICES = ["server", "worker"];

/** The labels compose 1.29.2 put on the server container (docker inspect .Config.Labels). */
function composeLabels(service: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    "com.docker.compose.config-hash": "5c705e2957ca3c5869fb1d40750b2a401c5863685bf6d22e5b3377ad45dd8301",
    "com.docker.compose.container-number": "1",
    "com.docker.compose.oneoff": "False",
    "com.docker.compose.project": "main",
    "com.docker.compose.project.config_files": "compose.yaml,compose.local-images.yaml",
    "com.docker.compose.project.working_dir": "/work/main",
    "com.docker.compose.service": service,
    "com.docker.compose.version": "1.29.2",
    ...extra,
  };
}
const IMAGE_LABELS = {
  "io.buildah.version": "1.28.2",
  "org.opencontainers.image.revision": "24a771a97f3dd8885821f27a7f997cc7176b0295",
  "org.opencontainers.image.source": "file://qrscan-ingest",
  "org.opencontainers.image.title": "qrscan-ingest",
  "org.opencontainers.image.version": "0.1.0",
};

// Records copied from the engine's json-file logs of a compose run (one JSON object per line).
const REAL = {
  server: [
    '{"log":"{\\"level\\":\\"info\\",\\"time\\":1796572517868,\\"service\\":\\"server\\",\\"pid\\":7,\\"url\\":\\"http://0.0.0.0:8080\\",\\"metrics\\":\\"http://0.0.0.0:9464/metrics\\",\\"topic\\":\\"scans\\",\\"librdkafka\\":\\"2.0.2\\",\\"traces\\":\\"http://otel-collector:4318/v1/traces\\",\\"trusted_proxies\\":\\"none: clients connect directly\\",\\"auth\\":{\\"managedKeys\\":\\"api_keys, every 5 s\\",\\"staticKeys\\":0,\\"jwt\\":\\"off\\"},\\"msg\\":\\"edge server listening\\"}\\n","stream":"stdout","time":"2026-12-06T15:55:17.872801809Z"}',
    '{"log":"%4|1796572518.153|GETPID|rdkafka#producer-1| [thrd:main]: Failed to acquire idempotence PID from broker sasl_ssl://kafka-3:9094/3: Broker: Coordinator load in progress: retrying\\n","stream":"stderr","time":"2026-12-06T15:55:18.190521007Z"}',
    '{"log":"{\\"level\\":\\"warn\\",\\"time\\":1796572567500,\\"service\\":\\"server\\",\\"pid\\":7,\\"reason\\":\\"unknown_key\\",\\"key_prefix\\":\\"qrs_NX4L\\",\\"request_id\\":\\"99c51752-8a5d-4f9b-b33c-b7d0e058e8d5\\",\\"trace_id\\":\\"bc7fdb67e3c0b09598ae87e66fc0a4dd\\",\\"msg\\":\\"authentication failed; answered 401\\"}\\n","stream":"stdout","time":"2026-12-06T15:56:07.506626526Z"}',
  ],
  worker: [
    // The supervisor's line carries pid twice (its own, then the worker's): the last one wins.
    '{"log":"{\\"level\\":\\"info\\",\\"time\\":1796572518110,\\"service\\":\\"supervisor\\",\\"pid\\":6,\\"worker\\":0,\\"pid\\":19,\\"msg\\":\\"worker started\\"}\\n","stream":"stdout","time":"2026-12-06T15:55:18.110932388Z"}',
    '{"log":"{\\"level\\":\\"info\\",\\"time\\":1796572525194,\\"service\\":\\"worker\\",\\"pid\\":19,\\"worker\\":0,\\"partitions\\":[0,1,2,3,4,5,6,7,8,9,10,11],\\"msg\\":\\"partitions assigned\\"}\\n","stream":"stdout","time":"2026-12-06T15:55:25.194895167Z"}',
  ],
  migrate: [
    '{"log":"applied 0009_roles\\n","stream":"stdout","time":"2026-12-06T15:53:25.390100219Z"}',
    '{"log":"migrate: 9 applied\\n","stream":"stdout","time":"2026-12-06T15:53:25.397196809Z"}',
  ],
  "kafka-1": [
    '{"log":"[2026-12-06 15:53:55,714] INFO Registered kafka:type=kafka.Log4jController MBean (kafka.utils.Log4jControllerRegistration$)\\n","stream":"stdout","time":"2026-12-06T15:53:55.779019258Z"}',
  ],
  postgres: [
    '{"log":"2026-12-06 15:53:20.142 UTC [34] LOG:  database system is ready to accept connections\\n","stream":"stdout","time":"2026-12-06T15:53:20.142611233Z"}',
  ],
  pgbouncer: [
    '{"log":"2026-12-06 15:53:24.602 UTC [1] LOG listening on 0.0.0.0:16432\\n","stream":"stderr","time":"2026-12-06T15:53:24.602780103Z"}',
  ],
  // Prometheus's own logfmt lines: not the app's, so not parsed.
  prometheus: [
    '{"log":"ts=2026-12-06T15:53:16.487Z caller=main.go:551 level=info msg=\\"Starting Prometheus Server\\" mode=server\\n","stream":"stderr","time":"2026-12-06T15:53:16.488926382Z"}',
  ],
} satisfies Record<string, string[]>;

const records = (service: keyof typeof REAL) => REAL[service].map((r) => JSON.parse(r) as ContainerLogs["lines"][0]);
const container = (service: string, lines: ContainerLogs["lines"], extra: Record<string, string> = {}) => ({
  name: `/main_${service}_1`,
  labels: {
    ...composeLabels(service),
    ...(["server", "worker", "migrate"].includes(service) ? IMAGE_LABELS : {}),
    ...extra,
  },
  lines,
});

/** Lines the app writes: shared/logger.ts's pino, as the server, the supervisor and the worker log. */
function appLines(): string[] {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk).replace(/\n$/, ""));
      done();
    },
  });
  const server = createLogger("server", "info", sink);
  server.info(
    { request_id: "0b6f7f1e-8d0a-4c2e-9a55-5d3c1f0e2a11", trace_id: "4bf92f3577b34da6a3ce929d0e0e4736" },
    "scans accepted",
  );
  server.error({ err: new Error("Kafka did not acknowledge"), request_id: "r-2" }, "request failed");
  createLogger("supervisor", "info", sink).warn({ worker: 1, code: 1 }, "worker exited; restarting");
  const worker = createLogger("worker", "debug", sink);
  worker.info(
    { worker: 0, batch_id: 17, offsets: [{ topic: "scans", partition: 3, first: 10, last: 41 }] },
    "batch written",
  );
  worker.debug({ worker: 0 }, "polled");
  return lines;
}

/** The engine's record of a line: written `lagNs` after the line's own time. */
function dockerRecord(line: string, stream = "stdout", lagNs = 1_234_567n): ContainerLogs["lines"][0] {
  const ns = BigInt(JSON.parse(line).time) * 1_000_000n + lagNs;
  const iso = new Date(Number(ns / 1_000_000n)).toISOString().replace(/\.\d+Z$/, "");
  return { log: `${line}\n`, stream, time: `${iso}.${String(ns % 1_000_000_000n).padStart(9, "0")}Z` };
}

const shipped = () => loadPromtailConfig(CONFIG_PATH);

describe("monitoring/promtail/config.yaml on compose's containers", () => {
  test("a container is labelled by its compose service and project, its name and its stream", () => {
    const [check] = checkContainerLines(shipped(), [container("server", records("server"))]);
    expect(check!.entries.map((e) => e.pushed?.labels)).toEqual([
      {
        service: "server",
        project: "main",
        container: "main_server_1",
        stream: "stdout",
        job: "containers",
        level: "info",
        app: "server",
      },
      { service: "server", project: "main", container: "main_server_1", stream: "stderr", job: "containers" },
      {
        service: "server",
        project: "main",
        container: "main_server_1",
        stream: "stdout",
        job: "containers",
        level: "warn",
        app: "server",
      },
    ]);
    // `docker ps` names have no leading "/": the same container, the same labels.
    const [unslashed] = checkContainerLines(shipped(), [
      { ...container("server", records("server")), name: "main_server_1" },
    ]);
    expect(unslashed!.entries.map((e) => e.pushed)).toEqual(check!.entries.map((e) => e.pushed));
  });

  test("the app's JSON lines get level and app labels and their own time; ids stay in the line", () => {
    const lines = appLines();
    const server = lines.filter((l) => JSON.parse(l).service === "server");
    const checks = checkContainerLines(shipped(), [
      container(
        "server",
        server.map((l) => dockerRecord(l)),
      ),
      container(
        "worker",
        lines.filter((l) => !server.includes(l)).map((l) => dockerRecord(l)),
      ),
    ]);
    const entries = checks.flatMap((c) => c.entries);
    expect(entries.length).toBe(5);
    expect(checks.map((c) => [c.jsonLines, c.jsonParsed, c.dropped, c.pending])).toEqual([
      [2, 2, 0, 0],
      [3, 3, 0, 0],
    ]);
    expect(entries.map((e) => [e.pushed?.labels.service, e.pushed?.labels.app, e.pushed?.labels.level])).toEqual([
      ["server", "server", "info"],
      ["server", "server", "error"],
      ["worker", "supervisor", "warn"],
      ["worker", "worker", "info"],
      ["worker", "worker", "debug"],
    ]);
    for (const e of entries) {
      expect(e.pushed?.timestampNs).toBe(BigInt(JSON.parse(e.line).time) * 1_000_000n); // not the engine's
      expect(e.pushed?.timestampNs).not.toBe(e.dockerTimeNs);
      expect(e.pushed?.line).toBe(e.line);
    }
    expect(entries[0]!.line).toContain('"request_id":"0b6f7f1e-');
    expect(containerLogProblems(checks, APP_SERVICES)).toEqual([]);
  });

  test("real records: the app's JSON parsed; librdkafka's stderr and migrate's text kept, at the engine's time", () => {
    const checks = checkContainerLines(shipped(), [
      container("server", records("server")),
      container("worker", records("worker")),
      container("migrate", records("migrate")),
    ]);
    expect(checks.map((c) => [c.records, c.entries.length, c.jsonLines, c.jsonParsed, c.dropped])).toEqual([
      [3, 3, 2, 2, 0],
      [2, 2, 2, 2, 0],
      [2, 2, 0, 0, 0],
    ]);
    const rdkafka = checks[0]!.entries[1]!;
    expect(rdkafka.line).toStartWith("%4|1796572518.153|GETPID|rdkafka#producer-1|");
    expect(rdkafka.pushed).toEqual({
      labels: { service: "server", project: "main", container: "main_server_1", stream: "stderr", job: "containers" },
      timestampNs: 1796572518190521007n,
      line: rdkafka.line,
      jsonParsed: false,
    });
    const audit = checks[0]!.entries[2]!.pushed!;
    expect(audit.timestampNs).toBe(1796572567500000000n);
    expect(Object.keys(audit.labels)).not.toContain("request_id");
    expect(audit.line).toContain('"trace_id":"bc7fdb67e3c0b09598ae87e66fc0a4dd"');
    expect(checks[1]!.entries[0]!.pushed?.labels.app).toBe("supervisor");
    expect(checks[2]!.entries.map((e) => [e.pushed?.line, e.pushed?.timestampNs, e.pushed?.labels.level])).toEqual([
      ["applied 0009_roles", 1796572405390100219n, undefined],
      ["migrate: 9 applied", 1796572405397196809n, undefined],
    ]);
    expect(containerLogProblems(checks, APP_SERVICES)).toEqual([]);
  });

  test("other containers' lines (Kafka, Postgres, pgbouncer, Prometheus) pass through with their service label", () => {
    const services = ["kafka-1", "postgres", "pgbouncer", "prometheus"] as const;
    const checks = checkContainerLines(
      shipped(),
      services.map((s) => container(s, records(s))),
    );
    expect(checks.map((c) => c.entries[0]!.pushed)).toEqual(
      services.map((s) => {
        const record = records(s)[0]!;
        return {
          labels: { service: s, project: "main", container: `main_${s}_1`, stream: record.stream, job: "containers" },
          timestampNs: parseRfc3339(record.time)!,
          line: record.log.replace(/\n$/, ""),
          jsonParsed: false,
        };
      }),
    );
    expect(containerLogProblems(checks, APP_SERVICES)).toEqual([]);
  });

  test("a long line the engine split into partial records is one entry, parsed whole", () => {
    const [line] = appLines();
    const long = line!.replace('"msg":', `"padding":"${"x".repeat(20_000)}","msg":`);
    const whole = dockerRecord(long);
    // json-file cuts a line at 16 KiB: the first part has no end of line and the same time.
    const parts = [
      { ...whole, log: whole.log.slice(0, 16_384) },
      { ...whole, log: whole.log.slice(16_384) },
    ];
    const [check] = checkContainerLines(shipped(), [container("server", parts)]);
    expect(check!.entries.length).toBe(1);
    expect(check!.entries[0]!.line).toBe(long);
    expect(check!.entries[0]!.pushed?.labels.level).toBe("info");
    // The first part alone: promtail holds it until its end comes.
    const [held] = checkContainerLines(shipped(), [container("server", parts.slice(0, 1))]);
    expect([held!.entries.length, held!.pending]).toEqual([0, 1]);
  });

  test("the app job: the lines dev writes get job, filename, level, app and their own time", () => {
    const config = shipped();
    const labels = config.fileEntryLabels("app", "/var/log/qrscan/workers.log");
    expect(labels).toEqual({ job: "app", filename: "/var/log/qrscan/workers.log" });
    // Copied from a `bun run dev` run's $STACK_DIR/logs/app/workers.log.
    const line =
      '{"level":"info","time":1796572100202,"service":"worker","pid":14082,"worker":1,"topic":"scans","group":"qrscan-sink","librdkafka":"2.0.2","traces":"off","metrics":"http://127.0.0.1:21471/metrics","msg":"worker started"}';
    expect(config.runPipeline("app", labels, line, 1796572100999000000n)).toEqual({
      labels: { job: "app", filename: "/var/log/qrscan/workers.log", level: "info", app: "worker" },
      timestampNs: 1796572100202000000n,
      line,
      jsonParsed: true,
    });
    const rdkafka =
      "%4|1796572099.890|GETPID|rdkafka#producer-1| [thrd:main]: Failed to acquire idempotence PID from broker 127.0.0.1:21092/1: Broker: Coordinator load in progress: retrying";
    expect(config.runPipeline("app", labels, rdkafka, 1796572099891000000n)).toEqual({
      labels,
      timestampNs: 1796572099891000000n,
      line: rdkafka,
      jsonParsed: false,
    });
  });

  // The check the compose test runs fails when the config is broken: each of these edits of the
  // shipped file is caught on the same lines.
  const edit = (from: string, to: string) => (text: string) => {
    expect(text).toContain(from);
    return text.replace(from, to);
  };
  test.each([
    [
      "a selector that misses the workers",
      edit('{service=~"server|worker|migrate"}', '{service=~"server|workers|migrate"}'),
    ],
    ["a selector on the app's field instead of compose's", edit("selector: '{service=", "selector: '{app=")],
    ["the wrong timestamp format", edit("format: UnixMs\n  - job_name: app", "format: UnixNs\n  - job_name: app")],
    [
      "level under another label name",
      edit("                level:\n                app:", "                severity: level\n                app:"),
    ],
    [
      "a request id as a label",
      edit(
        "                  time: time\n            - labels:\n",
        "                  time: time\n                  request_id: request_id\n            - labels:\n                request_id:\n",
      ),
    ],
    ["no stream label", edit("target_label: stream", "target_label: __stream")],
  ])("the check fails with %s", (_what, breakIt) => {
    const lines = appLines().map((l) => dockerRecord(l));
    const containers = [
      container("server", [...lines.filter((l) => l.log.includes('"service":"server"')), ...records("server")]),
      container("worker", [...lines.filter((l) => !l.log.includes('"service":"server"')), ...records("worker")]),
    ];
    expect(containerLogProblems(checkContainerLines(shipped(), containers), APP_SERVICES)).toEqual([]);
    const broken = new PromtailConfig(breakIt(CONFIG_TEXT), "broken config");
    expect(containerLogProblems(checkContainerLines(broken, containers), APP_SERVICES).length).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------------------------------------

/** A config of one static job with these relabel rules and stages. */
const configWith = (job: string) => new PromtailConfig(`scrape_configs:\n${job}`, "test config");
const pipelineConfig = (stages: string) =>
  configWith(
    `  - job_name: j\n    static_configs: [{targets: [localhost], labels: {job: j}}]\n    pipeline_stages:\n${stages}`,
  );
const T0 = 1_000_000_000_000_000_000n;

describe("the evaluator follows promtail", () => {
  test("relabel: Prometheus's defaults (regex (.*), replacement $1, separator ;), $ templates, deletion", () => {
    const config = configWith(`  - job_name: j
    static_configs: [{targets: [a]}]
    relabel_configs:
      - {source_labels: [a, b], target_label: joined}
      - {source_labels: [a], regex: "x-(.*)", target_label: stripped}
      - {source_labels: [a], regex: "nomatch", target_label: untouched, replacement: set}
      - {source_labels: [a], regex: "(x)-(?P<rest>.*)", target_label: "t_$1", replacement: "\${rest}!$$"}
      - {source_labels: [a], regex: "(x)-(?P<rest>.*)", target_label: named, replacement: "$rest"}
      - {source_labels: [a], regex: "(x)-(?P<rest>.*)", target_label: greedy, replacement: "$1x"}
      - {source_labels: [missing], target_label: b}
      - {target_label: static, replacement: v}
      - {action: labeldrop, regex: "dropme.*"}
`);
    expect(config.targetLabels("j", { a: "x-1", b: "y", untouched: "u", dropme_too: "d", __hidden: "h" })).toEqual({
      a: "x-1",
      joined: "x-1;y",
      stripped: "1",
      untouched: "u",
      t_x: "1!$",
      named: "1",
      // greedy: Go reads $1x as ${1x}, a group that does not exist, so "" (and no label)
      static: "v",
    });
    const keep = configWith(`  - job_name: j
    static_configs: [{targets: [a]}]
    relabel_configs:
      - {source_labels: [a], regex: "ke.*", action: keep}
      - {action: labelkeep, regex: "a|__.*"}
`);
    expect(keep.targetLabels("j", { a: "keep", b: "x" })).toEqual({ a: "keep" });
    expect(keep.targetLabels("j", { a: "other" })).toBeNull();
  });

  test("match: =, !=, =~, !~ on the entry's labels, regexes anchored, an absent label is empty", () => {
    const run = (selector: string, labels: Record<string, string>) =>
      pipelineConfig(`      - match: {selector: '${selector}', action: drop}\n`).runPipeline("j", labels, "l", T0) ===
      null;
    expect(run('{service="server"}', { service: "server" })).toBe(true);
    expect(run('{service="server"}', { service: "servers" })).toBe(false);
    expect(run('{service!="server"}', { service: "worker" })).toBe(true);
    expect(run('{service=~"serv"}', { service: "server" })).toBe(false); // anchored
    expect(run('{service=~"serv.*", stream!~"std(err|in)"}', { service: "server", stream: "stdout" })).toBe(true);
    expect(run('{service=~"serv.*", stream!~"std(err|in)"}', { service: "server", stream: "stderr" })).toBe(false);
    expect(run('{absent=""}', {})).toBe(true);
    expect(run('{absent=~".+"}', {})).toBe(false);
    expect(run("{s=`a\\.b`}", { s: "a\\.b" })).toBe(true); // raw string
  });

  test("json: expressions, a line that is not a JSON object left as it is, Go's number text", () => {
    const config = pipelineConfig(`      - json: {expressions: {n: "", big: big, nested: a.b, obj: a, quoted: '"x-y"'}}
      - labels: {n:, big:, nested:, obj:, quoted:}
`);
    const out = config.runPipeline("j", { job: "j" }, '{"n":1.5,"big":1e21,"a":{"b":true},"x-y":"<q>"}', T0)!;
    expect(out.labels).toEqual({
      job: "j",
      n: "1.5",
      big: "1000000000000000000000",
      nested: "true",
      obj: '{"b":true}',
      quoted: "<q>",
    });
    expect(out.jsonParsed).toBe(true);
    for (const line of ["[1,2]", '"text"', "{broken", "%4|1796572518.153|GETPID|rdkafka#producer-1| x"]) {
      const kept = config.runPipeline("j", { job: "j" }, line, T0);
      expect(kept).toEqual({ labels: { job: "j" }, timestampNs: T0, line, jsonParsed: false });
    }
    // A field that is absent or null extracts nothing a label can take.
    expect(config.runPipeline("j", { job: "j" }, '{"n":null}', T0)?.labels).toEqual({ job: "j" });
    const strict = pipelineConfig("      - json: {expressions: {n: n}, drop_malformed: true}\n");
    expect(strict.runPipeline("j", {}, "not json", T0)).toBeNull();
  });

  test("the pipeline starts from the entry's labels: a labels stage can copy one, and json overrides it", () => {
    const config = pipelineConfig(`      - labels: {copy: job}
      - json: {expressions: {job: service}}
      - labels: {job:}
`);
    expect(config.runPipeline("j", { job: "j" }, '{"service":"worker"}', T0)?.labels).toEqual({
      job: "worker",
      copy: "j",
    });
  });

  test("timestamp: UnixMs, Unix with a fraction, RFC3339 with an offset, RFC3339Nano; a failure fudges or skips", () => {
    const at = (format: string, value: string) =>
      pipelineConfig(
        `      - json: {expressions: {t: t}}\n      - timestamp: {source: t, format: ${format}}\n`,
      ).runPipeline("j", {}, JSON.stringify({ t: value }), T0)?.timestampNs;
    expect(at("UnixMs", "1796572517868")).toBe(1796572517868000000n);
    expect(at("Unix", "1796572518.153")).toBe(1796572518153000000n);
    expect(at("UnixNs", "1796572518190521007")).toBe(1796572518190521007n);
    expect(at("RFC3339", "2026-12-06T16:55:17+01:00")).toBe(1796572517000000000n);
    expect(at("RFC3339Nano", "2026-12-06T15:55:18.190521007Z")).toBe(1796572518190521007n);
    expect(at("UnixMs", "1796572517868.5")).toBe(T0); // not an integer: the entry keeps its time
    expect(at("RFC3339", "2026-02-30T00:00:00Z")).toBe(T0);
    // fudge (the default): the last good time of the same label set, plus 1 ns
    const fudge = pipelineConfig(
      "      - json: {expressions: {t: t}}\n      - timestamp: {source: t, format: UnixMs}\n",
    );
    expect(fudge.runPipeline("j", { a: "1" }, '{"t":1000}', T0)?.timestampNs).toBe(1_000_000_000n);
    expect(fudge.runPipeline("j", { a: "1" }, "not json", T0)?.timestampNs).toBe(1_000_000_001n);
    expect(fudge.runPipeline("j", { a: "2" }, "not json", T0)?.timestampNs).toBe(T0);
    const skip = pipelineConfig(
      "      - json: {expressions: {t: t}}\n      - timestamp: {source: t, format: UnixMs, action_on_failure: skip}\n",
    );
    skip.runPipeline("j", { a: "1" }, '{"t":1000}', T0);
    expect(skip.runPipeline("j", { a: "1" }, "not json", T0)?.timestampNs).toBe(T0);
  });

  test("regexes: RE2's meaning (. stops at \\n only, \\s is ASCII, a lone { is literal)", () => {
    expect(goRegexp("a.c", "t").test("a\rc")).toBe(true);
    expect(goRegexp("a.c", "t").test("a\nc")).toBe(false);
    expect(goRegexp("a\\sc", "t").test("a\u00a0c")).toBe(false);
    expect(goRegexp("a{b}", "t").test("a{b}")).toBe(true);
    expect(goRegexp("a{2}", "t").test("aa")).toBe(true);
  });
});

describe("the evaluator refuses what it does not implement", () => {
  const job = (body: string) => `  - job_name: j\n    static_configs: [{targets: [a]}]\n${body}`;
  test.each([
    ["an unknown stage", job("    pipeline_stages:\n      - regex: {expression: '(?P<x>.*)'}\n"), /the stage "regex"/],
    [
      "a stage's unknown option",
      job("    pipeline_stages:\n      - timestamp: {source: t, format: UnixMs, location: UTC}\n"),
      /the option "location"/,
    ],
    [
      "a Go time layout",
      job("    pipeline_stages:\n      - timestamp: {source: t, format: '2006-01-02'}\n"),
      /the timestamp format/,
    ],
    ["a JMESPath function", job("    pipeline_stages:\n      - json: {expressions: {n: 'length(a)'}}\n"), /JMESPath/],
    [
      "a line filter in a selector",
      job('    pipeline_stages:\n      - match: {selector: \'{a="b"} |= "x"\', action: drop}\n'),
      /line filters/,
    ],
    [
      "a relabel action",
      job("    relabel_configs: [{source_labels: [a], target_label: b, action: lowercase}]\n"),
      /the relabel action "lowercase"/,
    ],
    ["regex flags", job("    relabel_configs: [{source_labels: [a], regex: '(?i)x', target_label: b}]\n"), /flags/],
    [
      "docker_sd filters",
      "  - job_name: d\n    docker_sd_configs: [{host: 'unix:///var/run/docker.sock', filters: [{name: label, values: [x]}]}]\n",
      /the option "filters"/,
    ],
    [
      "keep on a Docker target",
      "  - job_name: d\n    docker_sd_configs: [{host: 'unix:///var/run/docker.sock'}]\n    relabel_configs: [{source_labels: [__meta_docker_container_name], regex: x, action: keep}]\n",
      /keep on a Docker target/,
    ],
    [
      "an unmodeled discovered label",
      "  - job_name: d\n    docker_sd_configs: [{host: 'unix:///var/run/docker.sock'}]\n    relabel_configs: [{source_labels: [__meta_docker_network_ip], target_label: ip}]\n",
      /__meta_docker_network_ip/,
    ],
  ])("%s", (_what, body, message) => {
    expect(() => configWith(body)).toThrow(PromtailUnsupported);
    expect(() => configWith(body)).toThrow(message);
  });

  test("a top-level section that would change what is pushed, and client external labels", () => {
    expect(() => new PromtailConfig("limits_config: {readline_rate: 10}\nscrape_configs: []\n")).toThrow(
      PromtailUnsupported,
    );
    expect(() => new PromtailConfig("clients: [{url: x, external_labels: {a: b}}]\nscrape_configs: []\n")).toThrow(
      /external_labels/,
    );
  });

  test("a config promtail itself would refuse", () => {
    const stages = (s: string) => configWith(job(`    pipeline_stages:\n${s}`));
    expect(() => stages("      - match: {selector: '{a=\"b\"}'}\n")).toThrow(PromtailConfigInvalid); // keep with no stages
    expect(() => stages("      - match: {selector: 'a=\"b\"', action: drop}\n")).toThrow(PromtailConfigInvalid);
    expect(() => stages("      - json: {expressions: {}}\n")).toThrow(PromtailConfigInvalid);
    expect(() => stages("      - timestamp: {source: t}\n")).toThrow(PromtailConfigInvalid);
    expect(() => stages("      - labels: {'bad-name':}\n")).toThrow(PromtailConfigInvalid);
    expect(() => configWith(job("    relabel_configs: [{source_labels: [a]}]\n"))).toThrow(/target_label/);
  });
});
