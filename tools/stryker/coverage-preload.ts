// Preloaded (`bun test --preload`) in the Stryker runner's dry run: every mutant the test file's
// run reaches is counted under that file's id, and written out at exit, so each mutant later runs
// only the test files that reach it (coverageAnalysis "perTest").
import { afterAll } from "bun:test";
import { writeFileSync } from "node:fs";

interface Ns {
  currentTestId?: string;
  mutantCoverage?: { static: Record<string, number>; perTest: Record<string, Record<string, number>> };
}
const g = globalThis as { __stryker__?: Ns };
const ns: Ns = g.__stryker__ ?? {};
g.__stryker__ = ns;
ns.currentTestId = process.env.STRYKER_TEST_ID;
const out = process.env.STRYKER_COVERAGE_FILE;
if (!out || !ns.currentTestId)
  throw new Error("coverage-preload: STRYKER_TEST_ID and STRYKER_COVERAGE_FILE must be set");
// A preload's afterAll runs once, after every test file (Bun's test runner emits no "exit" event).
afterAll(() => writeFileSync(out, JSON.stringify(ns.mutantCoverage ?? { static: {}, perTest: {} })));
