// A Stryker test runner for `bun test`. The dry run runs each target's test file alone, recording
// which mutants it reaches (tools/stryker/coverage-preload.ts); each mutant then runs, in a fresh
// Bun process with the mutant switched on, only the test files that reach it, stopping at the first
// failure. Stryker has no Bun runner, and its command runner would run every test for every mutant.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { INSTRUMENTER_CONSTANTS, type MutantCoverage } from "@stryker-mutator/api/core";
import { PluginKind, declareClassPlugin } from "@stryker-mutator/api/plugin";
import {
  type DryRunOptions,
  type DryRunResult,
  DryRunStatus,
  type MutantRunOptions,
  type MutantRunResult,
  type TestResult,
  type TestRunner,
  TestStatus,
  toMutantRunResult,
} from "@stryker-mutator/api/test-runner";
import { allTests, testsFor } from "./targets.ts";

interface Run {
  ok: boolean;
  output: string;
  ms: number;
  timedOut?: boolean;
}

class BunTestRunner implements TestRunner {
  private child: ChildProcess | undefined;

  capabilities() {
    // Every run is a new process, so static mutants (evaluated at import) are covered too.
    return { reloadEnvironment: true };
  }

  async dryRun(options: DryRunOptions): Promise<DryRunResult> {
    const files = options.files ? [...new Set(options.files.flatMap(testsFor))] : allTests();
    const dir = mkdtempSync(join(tmpdir(), "stryker-cov-"));
    const tests: TestResult[] = [];
    const coverage: MutantCoverage = { static: {}, perTest: {} };
    try {
      for (const file of files) {
        const out = join(dir, `${tests.length}.json`);
        const id = testId(file);
        const run = await this.bun(["--preload", "./tools/stryker/coverage-preload.ts", `./${file}`], {
          STRYKER_TEST_ID: id,
          STRYKER_COVERAGE_FILE: out,
        });
        tests.push(result(id, run));
        if (!run.ok) continue;
        const seen = JSON.parse(readFileSync(out, "utf8")) as MutantCoverage;
        coverage.perTest[id] = { ...seen.static, ...seen.perTest[id] };
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return { status: DryRunStatus.Complete, tests, mutantCoverage: coverage };
  }

  async mutantRun(options: MutantRunOptions): Promise<MutantRunResult> {
    const ids = options.testFilter ?? testsFor(options.activeMutant.fileName).map(testId);
    const run = await this.bun(["--bail", ...ids.map((id) => `./${fileOf(id)}`)], {
      [INSTRUMENTER_CONSTANTS.ACTIVE_MUTANT_ENV_VARIABLE]: options.activeMutant.id,
    });
    if (run.ok) return toMutantRunResult({ status: DryRunStatus.Complete, tests: ids.map((id) => result(id, run)) });
    // The killer is the file Bun was running at the first failure (it prints each file's path
    // before its results), so incremental runs know which test killed the mutant.
    const upToFailure = run.output.slice(0, Math.max(0, run.output.search(/^(\(fail\)|error: )/m)));
    const running = [...upToFailure.matchAll(/^(\S+\.test\.ts):$/gm)].at(-1)?.[1];
    const killer = ids.find((id) => fileOf(id) === running) ?? (ids[0] as string);
    return toMutantRunResult({ status: DryRunStatus.Complete, tests: [result(killer, run)] });
  }

  private bun(args: string[], extraEnv: Record<string, string>): Promise<Run> {
    const started = performance.now();
    return new Promise((done) => {
      const output: Buffer[] = [];
      const child = spawn("bun", ["test", ...args], {
        env: { ...process.env, ...extraEnv },
        stdio: ["ignore", "pipe", "pipe"],
      });
      this.child = child;
      child.stdout?.on("data", (b: Buffer) => output.push(b));
      child.stderr?.on("data", (b: Buffer) => output.push(b));
      child.on("error", (error) => done({ ok: false, output: String(error), ms: performance.now() - started }));
      child.on("exit", (code) => {
        this.child = undefined;
        done({ ok: code === 0, output: Buffer.concat(output).toString(), ms: performance.now() - started });
      });
    });
  }

  async dispose() {
    // Stryker disposes a runner whose mutant timed out (an infinite loop): stop that test process.
    this.child?.kill("SIGKILL");
  }
}

/**
 * A test file's id: its path and a digest of its content. Stryker's incremental mode reuses a
 * mutant's result only while its killing or covering tests keep their ids, so an edited test file
 * (a weakened assertion) re-runs every mutant it reached.
 */
function testId(file: string): string {
  return `${file}#${createHash("sha256").update(readFileSync(file)).digest("hex").slice(0, 12)}`;
}
const fileOf = (id: string) => id.split("#")[0] as string;

function result(id: string, run: Run): TestResult {
  const base = { id, name: id, fileName: resolve(fileOf(id)), timeSpentMs: run.ms };
  return run.ok
    ? { ...base, status: TestStatus.Success }
    : { ...base, status: TestStatus.Failed, failureMessage: run.output.slice(-2000) };
}

export const strykerPlugins = [declareClassPlugin(PluginKind.TestRunner, "bun", BunTestRunner)];
