// What `buildah inspect` must show of an image (tools/images.ts): pure, unit-tested by
// test/unit/images-inspect.test.ts.

/** The image config `buildah inspect --type image` shows under Docker.config (format docker). */
export interface ImageConfig {
  User: string;
  Cmd: string[];
  Env: string[];
  WorkingDir: string;
  Healthcheck?: { Test: string[] };
  StopSignal?: string;
  Labels?: Record<string, string>;
}

/**
 * Every violation, not only the first. Every image: a numeric non-root user and group, STOPSIGNAL
 * SIGTERM, a CMD, no METRICS_HOST other than loopback. A product image (`product` given) also: a HEALTHCHECK command and the OCI labels
 * source, and revision and version equal to what was built.
 */
export function imageProblems(c: ImageConfig, product: { revision: string; version: string } | null): string[] {
  const problems: string[] = [];
  const [uid, gid] = (c.User ?? "").split(":");
  if (!/^\d+$/.test(uid ?? "") || Number(uid) === 0) problems.push(`USER is "${c.User}": must be a numeric uid, not 0`);
  if (gid === undefined || !/^\d+$/.test(gid) || Number(gid) === 0)
    problems.push(`USER is "${c.User}": must name a numeric group, not 0`);
  if (c.StopSignal !== "SIGTERM") problems.push(`STOPSIGNAL is ${JSON.stringify(c.StopSignal)}: must be SIGTERM`);
  if (!c.Cmd?.length) problems.push("no CMD");
  // The metrics listeners are unauthenticated unless configured otherwise: loopback by default,
  // so exposing them is the deployment's explicit choice (compose and the manifests set it).
  const metricsHost = (c.Env ?? []).find((e) => e.startsWith("METRICS_HOST="))?.slice("METRICS_HOST=".length);
  if (metricsHost !== undefined && !["127.0.0.1", "::1", "localhost"].includes(metricsHost))
    problems.push(`ENV METRICS_HOST=${metricsHost}: an image keeps metrics on loopback; the deployment sets it`);
  if (!product) return problems;
  const test = c.Healthcheck?.Test ?? [];
  if (test[0] !== "CMD" || test.length < 2) problems.push(`HEALTHCHECK is ${JSON.stringify(test)}: must be CMD …`);
  const labels = c.Labels ?? {};
  for (const [k, value] of [
    ["org.opencontainers.image.revision", product.revision],
    ["org.opencontainers.image.version", product.version],
  ] as const)
    if (labels[k] !== value) problems.push(`label ${k} is ${JSON.stringify(labels[k])}, expected ${value}`);
  if (!labels["org.opencontainers.image.source"]) problems.push("label org.opencontainers.image.source is missing");
  return problems;
}
