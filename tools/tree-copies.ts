// Copies of the tree (an earlier revision for the benches' before/after, a mutated copy for
// tools/mutations/run.ts) run with this checkout's installed dependencies but their own packages/.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;

/**
 * Gives `dir`, a copy of this repository, a node_modules of links to this checkout's installed
 * dependencies, except the workspace packages (packages/*): those link to the copy's own, or the
 * copy would run this checkout's packages/ code (a link to the whole node_modules resolves them here).
 */
export function linkDependencies(dir: string): void {
  const workspace = new Map(
    readdirSync(join(dir, "packages")).map((p) => {
      const { name } = JSON.parse(readFileSync(join(dir, "packages", p, "package.json"), "utf8")) as { name: string };
      return [name, join(dir, "packages", p)];
    }),
  );
  mkdirSync(join(dir, "node_modules"));
  for (const entry of readdirSync(join(ROOT, "node_modules"))) {
    symlinkSync(workspace.get(entry) ?? join(ROOT, "node_modules", entry), join(dir, "node_modules", entry));
  }
}

/**
 * A git worktree of `rev` at /tmp/qrscan-`purpose`-`rev` (its code, packages/ included, with this
 * checkout's dependencies), and how to remove it at the end of the run. `dir` ends with a slash.
 */
export function checkoutOf(rev: string, purpose: string): { dir: string; remove: () => void } {
  const dir = `/tmp/qrscan-${purpose}-${rev}`;
  if (existsSync(dir)) execFileSync("git", ["-C", ROOT, "worktree", "remove", "--force", dir]);
  execFileSync("git", ["-C", ROOT, "worktree", "add", "--detach", dir, rev], { stdio: "ignore" });
  linkDependencies(dir);
  return {
    dir: `${dir}/`,
    remove: () => {
      rmSync(`${dir}/node_modules`, { recursive: true });
      execFileSync("git", ["-C", ROOT, "worktree", "remove", "--force", dir]);
    },
  };
}
