// compose.yaml's traces, logs and dashboards cannot run on the project's machines (their images
// are not in Debian: compose.local-images.yaml leaves them out of the compose stage). These
// invariants check that the pieces agree with each other and with the app: the files mounted
// exist, every address one service is told matches where the other listens, what is published is
// published on loopback only, no two host listeners share a port, and the log fields promtail
// reads are the ones the app writes.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { createLogger } from "../../shared/logger.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
// biome-ignore lint/suspicious/noExplicitAny: YAML documents, read field by field
const yaml = (path: string): any => Bun.YAML.parse(readFileSync(`${ROOT}/${path}`, "utf8"));

const compose = yaml("compose.yaml");
const services = compose.services as Record<
  string,
  { command?: string[]; volumes?: string[]; environment?: Record<string, string>; network_mode?: string }
>;
const otel = yaml("monitoring/otel-collector/config.yaml");
const loki = yaml("monitoring/loki/config.yaml");
const promtail = yaml("monitoring/promtail/config.yaml");
const datasources = yaml("monitoring/grafana/provisioning/datasources/datasources.yaml").datasources as {
  uid: string;
  type: string;
  url: string;
}[];
const dashboardProviders = yaml("monitoring/grafana/provisioning/dashboards/dashboards.yaml").providers as {
  options: { path: string };
}[];

/** A service's command-line flag value, e.g. flag("jaeger", "--query.http-server.host-port"). */
function flag(service: string, name: string): string {
  const arg = services[service]?.command?.find((a) => a.startsWith(`${name}=`));
  if (!arg) throw new Error(`${service} has no ${name}=… in its command`);
  return arg.slice(name.length + 1);
}
const portOf = (address: string) => Number(new URL(address.includes("://") ? address : `tcp://${address}`).port);
const datasource = (type: string) => {
  const d = datasources.find((x) => x.type === type);
  if (!d) throw new Error(`no ${type} data source`);
  return d;
};
/** "source:target[:ro|rw]" → {source, target}; the source may hold a colon (`${STACK_DIR:-./.stack}`). */
function parseVolume(volume: string): { source: string; target: string } {
  const spec = volume.replace(/:(ro|rw)$/, "");
  const at = spec.lastIndexOf(":");
  return at < 0 ? { source: spec, target: spec } : { source: spec.slice(0, at), target: spec.slice(at + 1) };
}

/** The host path a service mounts at `target`. */
function mountSource(service: string, target: string): string {
  const volume = services[service]?.volumes?.map(parseVolume).find((v) => v.target === target);
  if (!volume) throw new Error(`${service} mounts nothing at ${target}`);
  return volume.source;
}

describe("compose.yaml: traces, logs and dashboards", () => {
  test("every file or folder of the repository that a service mounts exists", () => {
    const missing: string[] = [];
    for (const [name, s] of Object.entries(services)) {
      for (const volume of s.volumes ?? []) {
        const { source } = parseVolume(volume);
        if (!source.startsWith("./")) continue; // named volumes, the docker socket, $STACK_DIR
        if (!existsSync(`${ROOT}/${source}`)) missing.push(`${name}: ${source}`);
      }
    }
    expect(missing).toEqual([]);
  });

  test("traces: the server and workers export to the collector on compose's network, which exports to Jaeger", () => {
    const receiver = otel.receivers.otlp.protocols.http.endpoint as string;
    expect(receiver).toBe("0.0.0.0:4318");
    for (const name of ["server", "worker"])
      expect({ name, endpoint: services[name]?.environment?.OTEL_EXPORTER_OTLP_ENDPOINT }).toEqual({
        name,
        endpoint: "${OTEL_EXPORTER_OTLP_ENDPOINT:-http://otel-collector:4318}",
      });
    // `bun run dev` on the host: docs/operations.md tells it the published port.
    expect((services["otel-collector"] as { ports?: string[] }).ports).toEqual(["127.0.0.1:4318:4318"]);
    expect(readFileSync(`${ROOT}/docs/operations.md`, "utf8")).toContain(
      "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318",
    );
    expect(otel.exporters["otlp/jaeger"].endpoint).toBe("jaeger:4317");
    expect(services.jaeger?.command).toContain("--collector.otlp.enabled=true");
    expect(otel.service.pipelines.traces.exporters).toEqual(["otlp/jaeger"]);
    // Grafana (host network) reads Jaeger's UI port, published on loopback.
    expect((services.jaeger as { ports?: string[] }).ports).toEqual(["127.0.0.1:16686:16686"]);
    expect(datasource("jaeger").url).toBe("http://127.0.0.1:16686");
  });

  test("logs: promtail reads the folder dev writes and pushes to Loki, which Grafana queries", () => {
    const lokiHttp = loki.server.http_listen_port as number;
    expect(promtail.clients[0].url).toBe(`http://loki:${lokiHttp}/loki/api/v1/push`);
    expect((services.loki as { ports?: string[] }).ports).toEqual([`127.0.0.1:${lokiHttp}:${lokiHttp}`]);
    expect(datasource("loki").url).toBe(`http://127.0.0.1:${lokiHttp}`);
    const app = promtail.scrape_configs.find((c: { job_name: string }) => c.job_name === "app");
    const path = app.static_configs[0].labels.__path__ as string;
    const folder = path.slice(0, path.lastIndexOf("/"));
    // tools/dev.ts writes to `${stack.dir}/logs/app`; compose mounts that folder at promtail's path.
    expect(mountSource("promtail", folder)).toBe("${STACK_DIR:-./.stack}/logs/app");
    const devWrites = readFileSync(`${ROOT}/tools/dev.ts`, "utf8").includes("const LOG_DIR = `${stack.dir}/logs/app`;");
    expect({ "tools/dev.ts writes to $STACK_DIR/logs/app": devWrites }).toEqual({
      "tools/dev.ts writes to $STACK_DIR/logs/app": true,
    });
  });

  test("logs: the fields promtail extracts are the ones the app's log lines carry", () => {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(JSON.parse(String(chunk)));
        done();
      },
    });
    createLogger("server", "info", stream).info({ request_id: "r-1" }, "hello");
    const app = promtail.scrape_configs.find((c: { job_name: string }) => c.job_name === "app");
    const json = app.pipeline_stages.find((s: Record<string, unknown>) => "json" in s).json.expressions as Record<
      string,
      string
    >;
    const line = lines[0] as Record<string, unknown>;
    for (const field of Object.values(json)) expect(Object.keys(line)).toContain(field);
    expect(line.level).toBe("info"); // a label value, not pino's number
    expect(typeof line.time).toBe("number"); // promtail's timestamp stage reads UnixMs
  });

  test("dashboards: Grafana loads the folder compose mounts, from the provisioned data sources", () => {
    expect(mountSource("grafana", dashboardProviders[0]?.options.path as string)).toBe("./dashboards");
    expect(mountSource("grafana", "/etc/grafana/provisioning")).toBe("./monitoring/grafana/provisioning");
    expect(portOf(datasource("prometheus").url)).toBe(portOf(`http://${flag("prometheus", "--web.listen-address")}`));
    expect(services.grafana?.environment?.GF_SECURITY_ADMIN_PASSWORD__FILE).toBe("/run/secrets/grafana_admin_password");
    expect(services.grafana?.environment).not.toHaveProperty("GF_SECURITY_ADMIN_PASSWORD");
  });

  test("every data source the committed dashboards use is provisioned", () => {
    const used = new Set<string>();
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node && typeof node === "object") {
        const o = node as Record<string, unknown>;
        const ds = o.datasource as { uid?: string } | undefined;
        if (ds?.uid && !ds.uid.startsWith("$")) used.add(ds.uid);
        Object.values(o).forEach(walk);
      }
    };
    for (const file of new Bun.Glob("dashboards/*.json").scanSync(ROOT))
      walk(JSON.parse(readFileSync(`${ROOT}/${file}`, "utf8")));
    expect(used.size).toBeGreaterThan(0);
    expect([...used].filter((uid) => !datasources.some((d) => d.uid === uid))).toEqual([]);
  });

  test("only Grafana uses the host's network; everything published is on loopback, each on a port of its own", () => {
    const hostNetwork = Object.entries(services)
      .filter(([, svc]) => svc.network_mode === "host")
      .map(([name]) => name);
    expect(hostNetwork).toEqual(["grafana"]);
    const grafana = `${services.grafana?.environment?.GF_SERVER_HTTP_ADDR}:${services.grafana?.environment?.GF_SERVER_HTTP_PORT}`;
    const published = Object.entries(services).flatMap(([name, svc]) =>
      ((svc as { ports?: string[] }).ports ?? []).map((p) => [name, p] as const),
    );
    expect(published.filter(([, p]) => !p.startsWith("127.0.0.1:"))).toEqual([]);
    expect(grafana.startsWith("127.0.0.1:")).toBe(true);
    const hostPorts = [...published.map(([, p]) => Number(p.split(":")[1])), portOf(grafana)];
    expect(hostPorts.length).toBe(new Set(hostPorts).size);
    // Prometheus and Alertmanager are published on the port they listen on (Grafana reads Prometheus there).
    for (const name of ["prometheus", "alertmanager"]) {
      const port = portOf(flag(name, "--web.listen-address"));
      expect((services[name] as { ports?: string[] }).ports).toEqual([`127.0.0.1:${port}:${port}`]);
    }
    // Promtail publishes nothing; Loki's gRPC and promtail's listen only on compose's network.
    expect((services.promtail as { ports?: string[] }).ports).toBeUndefined();
    // (Alertmanager's receivers are not here: their URLs come from secrets, monitoring/alertmanager/start.sh.)
  });
});
