// The dependency baseline's SBOM: CycloneDX (JSON, 1.6) of every installed package, made by
// @cyclonedx/cyclonedx-npm from the node_modules tree `bun install --frozen-lockfile` laid out from
// bun.lock (it reads that tree through `npm ls`, offline; no second lockfile). Reproducible: no
// timestamp or random serial number.
//   bun run sbom [--out path]     (default sbom/qrscan-ingest.cdx.json, not committed)
// test/unit/dependencies.test.ts checks it lists exactly bun.lock's packages.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { type CliSpec, MAIN, parseCommand, runCli } from "../shared/cli.ts";

export const ROOT = new URL("..", import.meta.url).pathname;
export const DEFAULT_SBOM = join(ROOT, "sbom", "qrscan-ingest.cdx.json");

export interface SbomComponent {
  name: string;
  group?: string;
  version: string;
  purl?: string;
  licenses?: ({ license: { id?: string; name?: string } } | { expression: string })[];
}

/** Writes the SBOM to `out` and returns its components (flattened: one per name@version). */
export function generateSbom(out = DEFAULT_SBOM): SbomComponent[] {
  mkdirSync(dirname(out), { recursive: true });
  const r = spawnSync(
    join(ROOT, "node_modules/.bin/cyclonedx-npm"),
    [
      "--flatten-components",
      "--output-reproducible",
      "--spec-version",
      "1.6",
      "--output-format",
      "JSON",
      "--output-file",
      out,
      join(ROOT, "package.json"),
    ],
    // Under `bun run`, npm_execpath names bun, which cyclonedx-npm refuses as its npm: without it,
    // it finds npm on PATH.
    { cwd: ROOT, encoding: "utf8", timeout: 300_000, env: { ...process.env, npm_execpath: undefined } },
  );
  if (r.error || r.status !== 0) {
    throw new Error(
      `cyclonedx-npm failed (${r.error?.message ?? `exit ${r.status}`}); run \`bun install --frozen-lockfile\` first:\n${r.stderr}`,
    );
  }
  return readSbom(out);
}

export function readSbom(path = DEFAULT_SBOM): SbomComponent[] {
  return (JSON.parse(readFileSync(path, "utf8")) as { components?: SbomComponent[] }).components ?? [];
}

/** A component's npm name@version (a version's leading "v", as one package writes it, dropped). */
export const componentId = (c: SbomComponent) =>
  `${c.group ? `${c.group}/` : ""}${c.name}@${c.version.replace(/^v(?=\d)/, "")}`;

export interface LockPackage {
  /** name@version */
  id: string;
  os?: string | string[];
  cpu?: string | string[];
  libc?: string | string[];
  hasInstallScript?: boolean;
}

/** bun.lock's packages (its text format is JSON with trailing commas). */
export function lockPackages(lockfile = join(ROOT, "bun.lock")): LockPackage[] {
  const text = readFileSync(lockfile, "utf8").replace(/,(\s*[}\]])/g, "$1");
  const lock = JSON.parse(text) as {
    workspaces: Record<string, { version?: string }>;
    packages: Record<string, [string, string, Record<string, unknown>?, string?]>;
  };
  // A workspace package (packages/*) is "name@workspace:path" in the lock; the SBOM gives its version.
  const resolved = (id: string) => {
    const m = id.match(/^(.+)@workspace:(.+)$/);
    return m ? `${m[1]}@${lock.workspaces[m[2] as string]?.version ?? "0.0.0"}` : id;
  };
  return Object.values(lock.packages).map(([id, , meta = {}]) => ({
    id: resolved(id),
    os: meta.os as LockPackage["os"],
    cpu: meta.cpu as LockPackage["cpu"],
    libc: meta.libc as LockPackage["libc"],
    hasInstallScript: meta.hasInstallScript === true,
  }));
}

/** This machine's C library, as package.json's "libc" names it. */
function libcHere(): string {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return process.platform === "linux" && !report?.header?.glibcVersionRuntime ? "musl" : "glibc";
}

/** Whether a package's os/cpu/libc constraints admit this machine (bun installs only those). */
export function installableHere(
  p: LockPackage,
  platform: string = process.platform,
  arch: string = process.arch,
  libc: string = libcHere(),
) {
  const admits = (c: string | string[] | undefined, value: string) => {
    if (c === undefined) return true;
    const list = Array.isArray(c) ? c : [c];
    if (list.some((x) => x === `!${value}`)) return false;
    const positives = list.filter((x) => !x.startsWith("!"));
    return positives.length === 0 || positives.includes(value);
  };
  return admits(p.os, platform) && admits(p.cpu, arch) && (platform !== "linux" || admits(p.libc, libc));
}

export const SBOM_CLI: CliSpec = {
  program: "bun run sbom",
  description: "The CycloneDX SBOM of the production dependencies.",
  commands: {
    [MAIN]: {
      args: "",
      description: "writes it",
      options: { out: { type: "string", value: "FILE", description: `default ${DEFAULT_SBOM}` } },
    },
  },
};

if (import.meta.main) {
  await runCli(SBOM_CLI, async (argv) => {
    const out = (parseCommand(SBOM_CLI, argv).values.out as string | undefined) ?? DEFAULT_SBOM;
    const components = generateSbom(out);
    console.log(`sbom: ${components.length} components → ${out}`);
    return 0;
  });
}
