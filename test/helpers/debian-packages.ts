// The programs a set of Debian packages puts on a PATH, read from this machine's dpkg database:
// the packages' dependency closure (Depends and Pre-Depends, as apt-get --no-install-recommends
// installs), their files (`dpkg-query -L`) in the PATH's directories, and the alternatives whose
// link is there (`awk` is mawk's, `java` the JRE's). A package not installed here has no file list
// to read: it is reported, never assumed. Debian's minbase (debootstrap --variant=minbase, the
// images' base) is the packages of priority `required` plus apt: the same set on this bookworm.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { basename, dirname } from "node:path";

export interface InstalledPackage {
  name: string;
  priority: string;
  provides: string[];
  /** Depends and Pre-Depends: each entry's alternatives (`a | b`). */
  depends: string[][];
}

const names = (field: string) =>
  field
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((group) => group.split("|").map((alt) => (alt.trim().split(/[\s(]/)[0] as string).replace(/:\w+$/, "")));

let cache: Map<string, InstalledPackage> | undefined;
/** The packages installed here (dpkg's status "ii"). */
export function installedPackages(): Map<string, InstalledPackage> {
  if (cache) return cache;
  const out = Bun.spawnSync([
    "dpkg-query",
    "-W",
    "-f",
    "${db:Status-Abbrev}\t${Package}\t${Priority}\t${Provides}\t${Pre-Depends}\t${Depends}\n",
  ]);
  if (out.exitCode !== 0) throw new Error(`dpkg-query failed: ${out.stderr.toString()}`);
  cache = new Map();
  for (const line of out.stdout.toString().split("\n")) {
    const [status, name, priority, provides, pre, depends] = line.split("\t");
    if (!status?.startsWith("ii") || !name) continue;
    cache.set(name, {
      name,
      priority: priority ?? "",
      provides: names(provides ?? "").flat(),
      depends: [...names(pre ?? ""), ...names(depends ?? "")],
    });
  }
  return cache;
}

/** Debian's minbase: the installed packages of priority required, and apt. */
export const minbase = () => [
  ...[...installedPackages().values()].filter((p) => p.priority === "required").map((p) => p.name),
  "apt",
];

/**
 * `roots` and what they depend on, each dependency resolved to its first alternative installed
 * here (a virtual one to an installed package providing it). `missing`: roots not installed here,
 * whose files this machine cannot tell.
 */
export function dependencyClosure(roots: string[]): { packages: Set<string>; missing: string[] } {
  const installed = installedPackages();
  const providers = new Map<string, string>();
  for (const p of installed.values()) for (const v of p.provides) if (!providers.has(v)) providers.set(v, p.name);
  const packages = new Set<string>();
  const missing = roots.filter((r) => !installed.has(r) && !providers.has(r));
  const queue = roots.map((r) => (installed.has(r) ? r : providers.get(r))).filter((r): r is string => !!r);
  while (queue.length) {
    const name = queue.pop() as string;
    if (packages.has(name)) continue;
    packages.add(name);
    for (const group of installed.get(name)?.depends ?? []) {
      const pick = group.map((alt) => (installed.has(alt) ? alt : providers.get(alt))).find(Boolean);
      if (pick && !packages.has(pick)) queue.push(pick);
    }
  }
  return { packages, missing };
}

/** The files of installed packages (`dpkg-query -L`, one call). */
export function packageFiles(packages: Iterable<string>): Set<string> {
  const list = [...packages];
  if (list.length === 0) return new Set();
  const out = Bun.spawnSync(["dpkg-query", "-L", ...list]);
  if (out.exitCode !== 0) throw new Error(`dpkg-query -L failed: ${out.stderr.toString()}`);
  return new Set(
    out.stdout
      .toString()
      .split("\n")
      .filter((l) => l.startsWith("/")),
  );
}

interface Alternative {
  /** The link every choice goes through (/usr/bin/awk), and the paths it may point at. */
  link: string;
  targets: string[];
}

let alternativesCache: Alternative[] | undefined;
/** update-alternatives' links, masters and slaves (/var/lib/dpkg/alternatives/*). */
export function alternatives(dir = "/var/lib/dpkg/alternatives"): Alternative[] {
  if (alternativesCache) return alternativesCache;
  const out: Alternative[] = [];
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    const lines = readFileSync(`${dir}/${name}`, "utf8").split("\n");
    const links = [{ link: lines[1] as string, targets: [] as string[] }];
    let i = 2;
    for (; i < lines.length && lines[i] !== ""; i += 2) links.push({ link: lines[i + 1] as string, targets: [] });
    // Each choice: its path, its priority, then one line per slave (empty when it has none).
    for (i++; i < lines.length && lines[i] !== ""; ) {
      (links[0] as Alternative).targets.push(lines[i] as string);
      for (let s = 1; s < links.length; s++) {
        const path = lines[i + 1 + s];
        if (path) (links[s] as Alternative).targets.push(path);
      }
      i += 1 + links.length;
    }
    out.push(...links);
  }
  alternativesCache = out;
  return out;
}

/** The program names on `path` given the files present: files in its directories, and alternatives' links to them. */
export function programsOnPath(files: Set<string>, path: string[]): Set<string> {
  const dirs = new Set(path);
  const programs = new Set<string>();
  for (const f of files) if (dirs.has(dirname(f))) programs.add(basename(f));
  for (const a of alternatives()) {
    if (dirs.has(dirname(a.link)) && a.targets.some((t) => files.has(t))) programs.add(basename(a.link));
  }
  return programs;
}
