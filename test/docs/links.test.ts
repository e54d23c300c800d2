// Every relative link of the README and docs/ points at a file that exists and, with an anchor, at
// a heading that exists: moving a section cannot leave a link behind.
import { expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { anchorsOf, brokenLinks, headingAnchor } from "./harness.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

test("anchors are GitHub's", () => {
  expect(headingAnchor("The Kafka binding: `kafka-producer.ts`, `kafka-soak.ts`")).toBe(
    "the-kafka-binding-kafka-producerts-kafka-soakts",
  );
  expect(headingAnchor("`POST /v1/scans`: send scan events")).toBe("post-v1scans-send-scan-events");
  expect([...anchorsOf("# A\n## A\n```\n# not a heading\n```\n### B c\n")]).toEqual(["a", "a-1", "b-c"]);
});

test("the README's and docs/' relative links resolve", () => {
  const files = [
    "README.md",
    "packages/bun-rdkafka/README.md",
    "packages/bun-rdkafka/CHANGELOG.md",
    ...readdirSync(`${ROOT}docs`)
      .filter((f) => f.endsWith(".md"))
      .map((f) => `docs/${f}`),
  ];
  expect(files.length).toBeGreaterThanOrEqual(6);
  expect(brokenLinks(files)).toEqual([]);
});

test("a link to a missing file or heading is reported with its line", () => {
  const dir = mkdtempSync(join(tmpdir(), "docs-links-"));
  try {
    writeFileSync(
      join(dir, "a.md"),
      "# Top\n\n[ok](b.md#there) [x](#top) [web](https://example.com/#nope)\n[gone](c.md) [moved](b.md#elsewhere)\n",
    );
    writeFileSync(join(dir, "b.md"), "## There\n");
    expect(brokenLinks(["a.md"], dir)).toEqual([
      "a.md:4: c.md (no file c.md)",
      'a.md:4: b.md#elsewhere (no heading "#elsewhere" in b.md)',
    ]);
  } finally {
    rmSync(dir, { recursive: true });
  }
});
