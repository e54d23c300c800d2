// Lints the edge's OpenAPI document (server/openapi.ts) with `redocly lint` and the rules of
// redocly.yaml: the document is written to a temporary file, linted, and any error or warning fails.
//   bun tools/openapi-lint.ts            exit 0: clean; 1: problems (listed); 2: redocly did not run
// test/unit/openapi.test.ts runs the same check.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openApiDocument } from "../server/openapi.ts";
import { type CliSpec, MAIN, parseCommand, runCli } from "../shared/cli.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const REDOCLY = join(ROOT, "node_modules/@redocly/cli/bin/cli.js");

export interface LintProblem {
  ruleId: string;
  severity: "error" | "warn";
  message: string;
  where: string;
}

/** What redocly said of the document: its problems (none: clean). */
export interface LintResult {
  errors: number;
  warnings: number;
  problems: LintProblem[];
}

/** redocly ran but its output was not the JSON report (a crash, a changed CLI). */
export class LintRunError extends Error {
  constructor(exitCode: number, stdout: string, stderr: string) {
    super(`redocly lint exited ${exitCode} without a JSON report:\n${stdout.slice(0, 2000)}\n${stderr.slice(0, 2000)}`);
    this.name = "LintRunError";
  }
}

/** Lints `doc` (any OpenAPI document; default: the edge's) with redocly.yaml's rules. */
export function lintOpenApi(doc: unknown = openApiDocument()): LintResult {
  const dir = mkdtempSync(join(tmpdir(), "openapi-lint-"));
  try {
    const file = join(dir, "openapi.json");
    writeFileSync(file, JSON.stringify(doc, null, 2));
    const out = Bun.spawnSync(
      ["bun", REDOCLY, "lint", file, "--config", join(ROOT, "redocly.yaml"), "--format", "json"],
      {
        cwd: ROOT,
        // No telemetry or update check: CI has no network beyond the package registries.
        env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" },
      },
    );
    const stdout = out.stdout.toString();
    const start = stdout.indexOf("{");
    let report: {
      totals: { errors: number; warnings: number };
      problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[];
    };
    try {
      report = JSON.parse(stdout.slice(start));
    } catch {
      throw new LintRunError(out.exitCode, stdout, out.stderr.toString());
    }
    return {
      errors: report.totals.errors,
      warnings: report.totals.warnings,
      problems: report.problems.map((p) => ({
        ruleId: p.ruleId,
        severity: p.severity as LintProblem["severity"],
        message: p.message,
        where: p.location[0]?.pointer ?? "",
      })),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const OPENAPI_LINT_CLI: CliSpec = {
  program: "bun tools/openapi-lint.ts",
  description: "redocly lint of the edge's OpenAPI document (redocly.yaml): exit 1 on any error or warning.",
  commands: { [MAIN]: { args: "", description: "lints the document", options: {} } },
};

if (import.meta.main) {
  await runCli(OPENAPI_LINT_CLI, async (argv) => {
    parseCommand(OPENAPI_LINT_CLI, argv);
    const result = lintOpenApi();
    if (result.problems.length === 0) {
      console.log("openapi-lint: the document is clean");
      return 0;
    }
    for (const p of result.problems) console.error(`${p.severity} ${p.ruleId} at ${p.where}: ${p.message}`);
    console.error(`openapi-lint: ${result.errors} errors, ${result.warnings} warnings`);
    return 1;
  });
}
