// Every repo path a doc or a code comment names exists: a file moved or renamed cannot leave a
// reader (or the next contributor) looking for it. The docs are read whole; source files only in
// their comments (`//` and `/* */` in TypeScript, `#` in YAML, shell, Dockerfiles and `.ci/run`).
// What counts as a repo path is `repoPathTokens`' rule (test/docs/harness.ts).
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Glob } from "bun";
import { missingRepoPaths, repoPathTokens, topFoldersOf } from "./harness.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

const DOCS = ["README.md", "docs/**/*.md", "packages/*/README.md", "deploy/**/README.md"];
const SOURCES = ["**/*.ts", "**/*.{yml,yaml,sh}", "**/Dockerfile*", ".ci/run"];

/**
 * The repository's files matching the patterns: the ones git tracks, and the new ones it does not
 * ignore. Asking git, not walking the tree: a walk into local state (an engine's data under
 * .stack/ while compose runs) failed on files that vanished under it.
 */
function filesOf(patterns: readonly string[], root = ROOT): string[] {
  const listed = spawnSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], {
    cwd: root,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  const globs = patterns.map((p) => new Glob(p));
  return listed.stdout
    .split("\n")
    .filter((file) => file !== "" && existsSync(join(root, file)) && globs.some((g) => g.match(file)))
    .filter((file) => !/(^|\/)(node_modules|\.stack|\.git|\.secrets|sbom|dist)\//.test(file))
    .sort();
}

test("every repo path the docs and the code comments name exists", () => {
  const docs = filesOf(DOCS);
  const sources = filesOf(SOURCES);
  // The globs found what they should: a typo in a pattern would check nothing and pass.
  expect(docs).toContain("docs/operations.md");
  expect(docs).toContain("packages/bun-rdkafka/README.md");
  expect(sources).toContain("server/app.ts");
  expect(sources).toContain(".ci/run");
  expect(sources).toContain("Dockerfile");
  expect(sources.some((f) => f.endsWith(".yaml"))).toBe(true);
  expect(missingRepoPaths([...docs, ...sources])).toEqual([]);
});

test("what counts as a repo path", () => {
  const folders = ["server", "docs", "deploy", ".ci", "bench"];
  expect(
    repoPathTokens(
      "`server/app.ts`, docs/operations.md. deploy/k8s/ `.ci/run` https://example.com/docs/a.md " +
        "server/*.ts server/{a,b}.ts docs/<name>.md $STACK_DIR/docs/x.md server/without-extension " +
        "sql/migrations/0001.sql ../server/rel.ts",
      folders,
    ),
  ).toEqual(["server/app.ts", "docs/operations.md", "deploy/k8s/", ".ci/run"]);
});

test("a stale path is reported with its file and line; an existing one, a URL and an ignored one are not", () => {
  const dir = mkdtempSync(join(tmpdir(), "docs-paths-"));
  try {
    mkdirSync(join(dir, "server"));
    mkdirSync(join(dir, "docs"));
    mkdirSync(join(dir, "bench"));
    mkdirSync(join(dir, "test"));
    mkdirSync(join(dir, "packages/p/src"), { recursive: true });
    mkdirSync(join(dir, "packages/p/test"));
    writeFileSync(join(dir, "packages/p/test/p.test.ts"), "");
    // A package's README names its own files relative to the package.
    writeFileSync(join(dir, "packages/p/README.md"), "Tests: `test/p.test.ts`; `test/gone.test.ts`.\n");
    writeFileSync(join(dir, ".gitignore"), "node_modules/\nbench/results/\n");
    writeFileSync(
      join(dir, "server/app.ts"),
      'const url = "http://h/server/gone.ts";\n// see docs/ops.md, not server/old.ts\n',
    );
    writeFileSync(join(dir, "packages/p/src/a.ts"), "/* see\n   server/app.ts, not server/was.ts */\n");
    writeFileSync(join(dir, "deploy.yaml"), "key: server/nope.ts # server/moved.ts\n");
    writeFileSync(
      join(dir, "docs/ops.md"),
      "# Ops\n\n`server/app.ts`, bench/results/run.json, https://example.com/server/x.ts\nserver/stale.ts\n",
    );
    expect(topFoldersOf(dir).sort()).toEqual(["bench", "docs", "packages", "server", "test"]);
    const files = ["docs/ops.md", "server/app.ts", "packages/p/src/a.ts", "packages/p/README.md", "deploy.yaml"];
    expect(missingRepoPaths(files, dir)).toEqual([
      "docs/ops.md:4: server/stale.ts",
      "server/app.ts:2: server/old.ts",
      "packages/p/src/a.ts:2: server/was.ts",
      "packages/p/README.md:1: test/gone.test.ts",
      "deploy.yaml:1: server/moved.ts",
    ]);
  } finally {
    rmSync(dir, { recursive: true });
  }
});
