// The browser entry point's import graph holds no node:* or bun:* module (a bundler would fail on
// them, or ship shims), while the Node entry point's does (its file journal): the check can fail.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";

function platformImports(entry: string): string[] {
  const transpiler = new Bun.Transpiler({ loader: "ts" });
  const seen = new Set<string>();
  const platform = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const { path } of transpiler.scanImports(readFileSync(file, "utf8"))) {
      if (path.startsWith("node:") || path.startsWith("bun:") || path === "bun") platform.add(path);
      else if (path.startsWith(".")) visit(resolve(dirname(file), path));
    }
  };
  visit(resolve(import.meta.dir, entry));
  return [...platform].sort();
}

test("src/browser.ts imports nothing from node: or bun:; src/node.ts only node: modules", () => {
  expect(platformImports("../src/browser.ts")).toEqual([]);
  const node = platformImports("../src/node.ts");
  expect(node).toContain("node:fs");
  expect(node.filter((p) => !p.startsWith("node:"))).toEqual([]);
});
