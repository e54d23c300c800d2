// No import circle in product code, the shipped commands, the dev tools or the benches: a circle
// means two modules cannot be read, tested or moved apart. Type-only imports count too.
import { describe, expect, test } from "bun:test";
import { buildImportGraph, findCycles, importSpecifiers } from "../helpers/import-graph.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const PATTERNS = [
  "server/**/*.ts",
  "worker/**/*.ts",
  "shared/**/*.ts",
  "sql/**/*.ts",
  "packages/*/src/**/*.ts",
  "bench/**/*.ts",
  "jobs/**/*.ts",
  "tools/**/*.ts",
];

describe("import graph", () => {
  test("no import circle among server/, worker/, shared/, sql/, packages/*/src, bench/, jobs/, tools/", () => {
    const graph = buildImportGraph(ROOT, PATTERNS);
    expect(graph.size).toBeGreaterThan(100);
    const cycles = findCycles(graph).map((cycle) => cycle.join(" -> "));
    expect(cycles, `import circles:\n${cycles.join("\n")}`).toEqual([]);
  });

  test("type-only imports are edges too", () => {
    const source = [
      'import type { A } from "./a.ts";',
      'import { type B, type C } from "./b.ts";',
      'export type { D } from "./d.ts";',
      "import {\n  type E,\n} from './e.ts';",
      'import "./side-effect.ts";',
      'const lazy = await import("./lazy.ts");',
      'import { z } from "zod";',
    ].join("\n");
    expect(importSpecifiers(source).sort()).toEqual(
      ["./a.ts", "./b.ts", "./d.ts", "./e.ts", "./lazy.ts", "./side-effect.ts"].sort(),
    );
  });

  test("the checker finds circles in a synthetic graph, and none in a tree", () => {
    const graph = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts", "d.ts"]],
      ["d.ts", []],
      ["e.ts", ["f.ts"]],
      ["f.ts", ["e.ts"]],
      ["g.ts", ["g.ts"]],
    ]);
    expect(findCycles(graph).sort()).toEqual([
      ["a.ts", "b.ts", "c.ts", "a.ts"],
      ["e.ts", "f.ts", "e.ts"],
      ["g.ts", "g.ts"],
    ]);
    expect(
      findCycles(
        new Map([
          ["a.ts", ["b.ts", "c.ts"]],
          ["b.ts", ["c.ts"]],
          ["c.ts", []],
        ]),
      ),
    ).toEqual([]);
  });
});
