// The product uses the Kafka binding as a package: by its name, never by a path into its files.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Glob } from "bun";

const ROOT = new URL("../..", import.meta.url).pathname;
const PRODUCT_DIRS = ["server", "worker", "shared", "jobs", "tools", "bench", "test", "sql", "dashboards"];
// An import or re-export whose specifier points into the package's folder, or at a deep path of it.
const INTO_PACKAGE =
  /(?:from|import)\s*\(?\s*["'](?:[./]*packages\/bun-rdkafka\/|bun-rdkafka\/(?!probe["']))[^"']*["']/;

function productFiles(): string[] {
  const files: string[] = [];
  for (const dir of PRODUCT_DIRS) {
    for (const file of new Glob(`${dir}/**/*.ts`).scanSync(ROOT)) {
      // This file quotes such imports as test cases of the check.
      if (!file.includes("node_modules") && file !== "test/unit/kafka-package.test.ts") files.push(file);
    }
  }
  return files;
}

describe("the Kafka binding is a package", () => {
  test("no product file imports the package's internals", () => {
    const offenders = productFiles().filter((file) => INTO_PACKAGE.test(readFileSync(`${ROOT}/${file}`, "utf8")));
    expect(offenders).toEqual([]);
  });

  test("the check recognises a reach into the package", () => {
    expect(INTO_PACKAGE.test('import { lib } from "../packages/bun-rdkafka/src/ffi.ts";')).toBe(true);
    expect(INTO_PACKAGE.test('import { lib } from "bun-rdkafka/src/ffi.ts";')).toBe(true);
    expect(INTO_PACKAGE.test('import { KafkaProducer } from "bun-rdkafka";')).toBe(false);
    expect(INTO_PACKAGE.test('import { probeLayout } from "bun-rdkafka/probe";')).toBe(false);
  });

  test("the product imports it by name, as a workspace dependency", () => {
    const pkg = JSON.parse(readFileSync(`${ROOT}/package.json`, "utf8"));
    expect(pkg.dependencies["bun-rdkafka"]).toBe("workspace:*");
    expect(pkg.workspaces).toContain("packages/*");
    const users = productFiles().filter((f) => /from "bun-rdkafka"/.test(readFileSync(`${ROOT}/${f}`, "utf8")));
    expect(users).toContain("server/ingest.ts");
    expect(users).toContain("worker/scan-loop.ts");
  });
});
