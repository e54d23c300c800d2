// Debian 12's kubectl (package kubernetes-client, 1.20 with kustomize v2.0.3), for rendering the
// Kubernetes overlays in the oldest kustomize dialect we promise (deploy/k8s/). It cannot be
// installed beside another kubectl (both own /usr/bin/kubectl), so it is fetched with
// `apt-get download` and unpacked under node_modules/.cache/, once.
//   bun tools/kubectl-legacy.ts        prints its path (fetching it when missing)
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;
const DIR = join(ROOT, "node_modules/.cache/kubernetes-client");
const BIN = join(DIR, "root/usr/bin/kubectl");

export class LegacyKubectlError extends Error {
  override name = "LegacyKubectlError";
}

function run(cmd: string, args: string[]): void {
  const res = spawnSync(cmd, args, { cwd: DIR, encoding: "utf8", timeout: 180_000 });
  if (res.status !== 0) {
    const why = (res.stderr || res.stdout || String(res.error)).trim();
    throw new LegacyKubectlError(
      `${cmd} ${args.join(" ")} failed (exit ${res.status ?? res.signal}): ${why} — Debian's kubernetes-client package is needed (run \`apt-get update\` first)`,
    );
  }
}

/** The path of Debian's kubectl 1.20, downloaded and unpacked on first use. */
export function legacyKubectl(): string {
  if (existsSync(BIN)) return BIN;
  mkdirSync(DIR, { recursive: true });
  run("apt-get", ["download", "kubernetes-client"]);
  const deb = readdirSync(DIR).find((f) => f.startsWith("kubernetes-client_") && f.endsWith(".deb"));
  if (!deb) throw new LegacyKubectlError(`apt-get download left no kubernetes-client_*.deb in ${DIR}`);
  run("dpkg-deb", ["-x", deb, "root"]);
  if (!existsSync(BIN)) throw new LegacyKubectlError(`${deb} holds no usr/bin/kubectl`);
  return BIN;
}

if (import.meta.main) console.log(legacyKubectl());
