// The import graph of the repository's own TypeScript, and the circles in it. Runtime imports come
// from Bun's transpiler (scanImports); it drops type-only imports (`import type`, `export type`,
// `import { type A }`), which still tie two modules together for a reader, so static `import`/`export
// ... from` statements at the start of a line are read from the source as well.
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { Glob } from "bun";

export type ImportGraph = Map<string, string[]>;

const transpiler = new Bun.Transpiler({ loader: "ts" });
const STATIC_FROM = /^\s*(?:import|export)\b[^;'"`]*?\bfrom\s*["']([^"']+)["']/gm;

/** Every relative specifier a file imports, type-only imports included. */
export function importSpecifiers(source: string): string[] {
  // The transpiler rejects a shebang line; it is no import.
  const code = source.replace(/^#!.*/, "");
  const found = new Set(transpiler.scanImports(code).map((i) => i.path));
  for (const match of code.matchAll(STATIC_FROM)) found.add(match[1] as string);
  return [...found].filter((s) => s.startsWith("."));
}

/** The graph of the files matched by `patterns` under `root`: repo-relative path -> imported files in the set. */
export function buildImportGraph(root: string, patterns: string[]): ImportGraph {
  const files = new Set<string>();
  for (const pattern of patterns) {
    for (const file of new Glob(pattern).scanSync(root)) {
      if (!file.split("/").includes("node_modules")) files.add(file);
    }
  }
  const graph: ImportGraph = new Map();
  for (const file of [...files].sort()) {
    const edges = new Set<string>();
    for (const spec of importSpecifiers(readFileSync(join(root, file), "utf8"))) {
      const target = resolve("/", dirname(file), spec).slice(1);
      for (const candidate of [target, `${target}.ts`, `${target}/index.ts`]) {
        if (files.has(candidate)) {
          edges.add(candidate);
          break;
        }
      }
    }
    graph.set(file, [...edges]);
  }
  return graph;
}

/**
 * One shortest circle per strongly connected component (Tarjan), each as a path that returns to its
 * start: ["a", "b", "a"]. Empty when the graph has no circle.
 */
export function findCycles(graph: ImportGraph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let next = 0;
  const visit = (node: string) => {
    index.set(node, next);
    low.set(node, next++);
    stack.push(node);
    onStack.add(node);
    for (const to of graph.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node) as number, low.get(to) as number));
      } else if (onStack.has(to)) {
        low.set(node, Math.min(low.get(node) as number, index.get(to) as number));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) components.push(component);
    }
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return components.map((component) => shortestCircle(graph, component));
}

/** Breadth-first from the component's first member (sorted) back to itself, staying inside it. */
function shortestCircle(graph: ImportGraph, component: string[]): string[] {
  const inside = new Set(component);
  const start = [...component].sort()[0] as string;
  const parent = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const node = queue.shift() as string;
    for (const to of graph.get(node) ?? []) {
      if (!inside.has(to)) continue;
      if (to === start) {
        const path = [start];
        for (let at = node; at !== start; at = parent.get(at) as string) path.unshift(at);
        path.unshift(start);
        return path;
      }
      if (!parent.has(to)) {
        parent.set(to, node);
        queue.push(to);
      }
    }
  }
  return [start, start];
}
