// .ci/summary, the last lines .ci/run prints, on real Bun output: a failed test is named once, with
// its error's first lines; a test file that fails to load is named and counted as failed, a
// failing mutation stage is a failure with its reason, the advisory verdict and Stryker's score
// are said, and the exit status is non-zero whenever a stage failed.
import { afterAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = new URL("../..", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "ci-summary-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Bun's own output for a directory of test files (no bunfig there: no preload). */
function bunTest(files: Record<string, string>): string {
  const where = mkdtempSync(join(dir, "suite-"));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(where, name), text);
  const res = spawnSync("bun", ["test"], { cwd: where, encoding: "utf8", timeout: 60_000 });
  return res.stdout + res.stderr;
}

const PASS = 'import { test, expect } from "bun:test";\ntest("fine", () => expect(1).toBe(1));\n';

function summary(logs: Record<string, string>, statuses: Partial<Record<string, string>>, advisories?: string) {
  const where = mkdtempSync(join(dir, "logs-"));
  mkdirSync(where, { recursive: true });
  for (const [name, text] of Object.entries(logs)) writeFileSync(join(where, `qrscan-${name}.log`), text);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    LOGS: where,
    TEST_STATUS: "0",
    COMPOSE_STATUS: "0",
    MUTATIONS_STATUS: "0",
    STRYKER_STATUS: "0",
    ...(statuses as Record<string, string>),
  };
  if (advisories) env.ADVISORIES = advisories;
  const res = spawnSync("bash", [join(ROOT, ".ci/summary")], { env, encoding: "utf8", timeout: 30_000 });
  return { code: res.status, lines: res.stdout.trim().split("\n"), stderr: res.stderr };
}

const STRYKER_OK =
  "INFO MutationTestReportHelper Final mutation score of 81.20 is greater than or equal to break threshold 75\n";

test("all stages passed: the totals, the advisory verdict and Stryker's score, exit 0", () => {
  const test = bunTest({ "a.test.ts": PASS, "b.test.ts": PASS });
  const r = summary(
    { test, compose: bunTest({ "c.test.ts": PASS }), stryker: STRYKER_OK },
    {},
    "dependency advisories: NOT CHECKED (no advisory source answers here)",
  );
  expect(r.lines).toEqual([
    "dependency advisories: NOT CHECKED (no advisory source answers here)",
    "Stryker: mutation score 81.20%",
    "5 passed, 0 failed",
  ]);
  expect(r.code).toBe(0);
});

test("a test file that fails to load is named and counted, and the run fails", () => {
  const test = bunTest({
    "a.test.ts": PASS,
    "broken.test.ts": 'import "./missing.ts";\nimport { test } from "bun:test";\ntest("never", () => {});\n',
    "throws.test.ts": 'import { test } from "bun:test";\nthrow new Error("boom at load");\n',
  });
  expect(test).toContain("# Unhandled error between tests");
  const r = summary({ test, stryker: STRYKER_OK }, { TEST_STATUS: "1" });
  expect(r.lines.slice(0, 3)).toEqual([
    "failed tests:",
    "  (error outside a test) broken.test.ts",
    "  (error outside a test) throws.test.ts",
  ]);
  expect(r.lines.at(-1)).toBe("3 passed, 2 failed");
  expect(r.code).toBe(1);
});

test("failed tests are named; a failing mutation stage or Stryker below its threshold is a failure with its reason", () => {
  const test = bunTest({
    "a.test.ts": PASS,
    "f.test.ts": 'import { test, expect } from "bun:test";\ntest("wrong", () => expect(1).toBe(2));\n',
  });
  // Bun names a failed test again in its closing list when a run has many files: named once here.
  const failLine = test.split("\n").find((l) => l.startsWith("(fail) wrong")) ?? "";
  expect(failLine).not.toBe("");
  const r = summary(
    {
      test: `${test}\n${failLine}\n`,
      mutations: "3 of 31 mutations to run\nSURVIVED sink-counts-staging (worker/sink.ts): killers passed\n",
      stryker:
        "ERROR MutationTestReportHelper Final mutation score 58.10 under breaking threshold 60, setting exit code to 1\n",
    },
    { TEST_STATUS: "1", MUTATIONS_STATUS: "1", STRYKER_STATUS: "1" },
  );
  const why = r.lines.slice(
    2,
    r.lines.findIndex((l) => l.startsWith("  (fail) hand-made")),
  );
  // The error's first lines follow the name: Bun's message and the values.
  expect(why).toEqual(["      error: expect(received).toBe(expected)", "      Expected: 2", "      Received: 1"]);
  expect(r.lines.filter((l) => l.includes("(fail) wrong"))).toHaveLength(1);
  expect([...r.lines.slice(0, 2), ...r.lines.slice(2 + why.length, 4 + why.length)]).toEqual([
    "failed tests:",
    expect.stringMatching(/^ {2}\(fail\) wrong \[[\d.]+ms\]$/),
    "  (fail) hand-made mutations: SURVIVED sink-counts-staging (worker/sink.ts): killers passed ",
    "  (fail) Stryker: ERROR MutationTestReportHelper Final mutation score 58.10 under breaking threshold 60, setting exit code to 1",
  ]);
  expect(r.lines).toContain("dependency advisories: NOT CHECKED (the audit did not run)");
  expect(r.lines).toContain("Stryker: mutation score 58.10%");
  expect(r.lines.at(-1)).toBe("1 passed, 3 failed");
  expect(r.code).toBe(1);
});

test("a stage that failed before any test ran (lint, the compose images) counts as one failure", () => {
  const r = summary({ test: "error: lint failed\n", stryker: STRYKER_OK }, { TEST_STATUS: "1", COMPOSE_STATUS: "1" });
  expect(r.lines.at(-1)).toBe("2 passed, 2 failed");
  expect(r.code).toBe(1);
});
