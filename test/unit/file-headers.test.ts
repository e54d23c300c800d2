// A file's header comment comes first, its imports below it: a header between imports is what a
// formatter leaves when an import is added above it, and readers miss it there.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Glob } from "bun";

const ROOT = new URL("../..", import.meta.url).pathname;
const PATTERNS = ["{server,worker,shared,sql,bench,test,jobs,tools}/**/*.ts", "packages/*/{src,scripts,test}/**/*.ts"];

/** Whether a `//` comment block follows the file's leading imports (its header, below them). */
function headerBelowImports(source: string): boolean {
  let sawImport = false;
  let inImport = false;
  for (const line of source.split("\n")) {
    if (inImport) {
      inImport = !line.trimEnd().endsWith(";");
      continue;
    }
    if (line.startsWith("import ")) {
      sawImport = true;
      inImport = !line.trimEnd().endsWith(";");
      continue;
    }
    if (line.startsWith("//")) return sawImport;
    if (line.trim() !== "") return false;
  }
  return false;
}

describe("file headers", () => {
  test("no file has its header comment below an import", () => {
    const offenders: string[] = [];
    for (const pattern of PATTERNS) {
      for (const file of new Glob(pattern).scanSync(ROOT)) {
        if (file.includes("node_modules/")) continue;
        if (headerBelowImports(readFileSync(`${ROOT}/${file}`, "utf8"))) offenders.push(file);
      }
    }
    expect(offenders).toEqual([]);
  });

  test("the check tells a header below an import from one above", () => {
    expect(headerBelowImports('import { a } from "./a.ts";\n// header\nconst x = 1;\n')).toBe(true);
    expect(headerBelowImports('import {\n  a,\n  b,\n} from "./a.ts";\n// header\n')).toBe(true);
    expect(headerBelowImports('// header\nimport { a } from "./a.ts";\n// a comment on code\nconst x = a;\n')).toBe(
      false,
    );
    expect(headerBelowImports('import { a } from "./a.ts";\n\nconst x = a; // why\n')).toBe(false);
  });
});
