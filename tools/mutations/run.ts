// Re-applies the hand-made mutations (tools/mutations/catalog.ts) one at a time in a scratch copy of
// the working tree and runs each one's killer tests there, against the running local stack: the
// killers must pass on the unmutated copy and fail on the mutated one. A mutation whose `find`
// text is gone or ambiguous is stale and fails the run (the catalog must follow the code).
//
//   bun tools/mutations/run.ts                 every mutation
//   bun tools/mutations/run.ts ID…             these
//   bun tools/mutations/run.ts --changed       those whose guarded file or killers changed since
//                                              tools/mutations/verified.json was last recorded (CI)
//   … --record                                 write the hashes of the ones killed into verified.json
//   bun tools/mutations/run.ts --list          the catalog, one line each (verified, or changed since)
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { localStack } from "../../shared/local-stack.ts";
import { importSpecifiers } from "../../test/helpers/import-graph.ts";
import { linkDependencies } from "../tree-copies.ts";
import { catalog } from "./catalog.ts";
import type { Mutation } from "./types.ts";

const ROOT = resolve(import.meta.dir, "../..");
const VERIFIED = join(ROOT, "tools/mutations/verified.json");

/** Problems with the catalog itself, against the tree at `root`: each is a stale or broken entry. */
export function catalogProblems(mutations: Mutation[], root = ROOT): string[] {
  const problems: string[] = [];
  const ids = new Set<string>();
  for (const m of mutations) {
    if (ids.has(m.id)) problems.push(`${m.id}: id used twice`);
    ids.add(m.id);
    if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(m.id)) problems.push(`${m.id}: id is not kebab-case`);
    if (m.find === m.replace) problems.push(`${m.id}: replace equals find`);
    if (!m.killers.length) problems.push(`${m.id}: no killer tests`);
    for (const k of m.killers) if (!existsSync(join(root, k))) problems.push(`${m.id}: killer ${k} does not exist`);
    if (!m.observed.trim()) problems.push(`${m.id}: observed is empty`);
    const path = join(root, m.file);
    if (!existsSync(path)) {
      problems.push(`${m.id}: ${m.file} does not exist`);
      continue;
    }
    const n = readFileSync(path, "utf8").split(m.find).length - 1;
    if (n !== 1) problems.push(`${m.id}: its find text occurs ${n} times in ${m.file} (must be once)`);
  }
  return problems;
}

/**
 * Programs the killers start as processes (not imported, so not in their import closure) whose
 * checks decide the verdict.
 */
const SPAWNED: Record<string, string[]> = {
  "test/integration/restore-drill.test.ts": ["tools/restore-drill.ts", "tools/backup.ts", "jobs/restore-offsets.ts"],
  "test/integration/retention.test.ts": ["jobs/maintain.ts", "jobs/archive-restore.ts"],
};
/** The parts of the tree a killer's verdict is made of besides the product: test helpers, benches, tools, checks. */
const HARNESS = ["test/", "bench/", "tools/", "sql/checks.ts"];

/** The killers, the harness files they import (transitively) and the programs they start. */
export function verdictInputs(m: Mutation, root = ROOT): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file) || !existsSync(join(root, file))) return;
    seen.add(file);
    for (const spec of importSpecifiers(readFileSync(join(root, file), "utf8"))) {
      const target = relative(root, resolve(root, dirname(file), spec));
      const found = [target, `${target}.ts`, `${target}/index.ts`].find(
        (c) => existsSync(join(root, c)) && c.endsWith(".ts"),
      );
      if (found && HARNESS.some((h) => found.startsWith(h))) visit(found);
    }
  };
  for (const k of m.killers) {
    visit(k);
    for (const s of SPAWNED[k] ?? []) visit(s);
  }
  return [...seen].sort();
}

/** What a mutation's verdict depends on: the edit, the guarded file and verdictInputs, as they are now. */
export function fingerprint(m: Mutation, root = ROOT): string {
  const h = createHash("sha256").update(JSON.stringify([m.file, m.find, m.replace, m.killers, m.testNamePattern]));
  for (const f of [m.file, ...verdictInputs(m, root)]) h.update(f).update(readFileSync(join(root, f)));
  return h.digest("hex").slice(0, 16);
}

function readVerified(): Record<string, string> {
  return existsSync(VERIFIED) ? (JSON.parse(readFileSync(VERIFIED, "utf8")) as Record<string, string>) : {};
}

/** The working tree's files (tracked, as they are now, plus new ones not ignored) copied to a scratch dir. */
function scratchCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), "qrscan-mutations-"));
  // mkdtemp makes it 0700: the postgres user the stack's services run as (Patroni's Postgres among
  // them, started from this directory) must be able to enter it, as it can a checkout.
  chmodSync(dir, 0o755);
  const list = Bun.spawnSync(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: ROOT });
  if (list.exitCode !== 0) throw new Error(`git ls-files failed: ${list.stderr.toString()}`);
  for (const file of list.stdout.toString().split("\0").filter(Boolean)) {
    if (!existsSync(join(ROOT, file))) continue; // deleted in the working tree
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), readFileSync(join(ROOT, file)));
  }
  // The workspace packages resolve to the copy's own, or a mutation of packages/ would test the original.
  linkDependencies(dir);
  return dir;
}

interface Outcome {
  verdict: "passed" | "failed" | "broken" | "timeout";
  seconds: number;
  failed: string[];
  /** The first failure's message: its "error:" line and what follows, condensed. */
  error: string;
  tail: string;
}

/** One killer run's bound: above the slowest killers' own test timeouts (the restore drill's 15 min). */
const RUN_TIMEOUT_MS = 20 * 60_000;

/** The killer run in progress (its process group), for an interrupted run to stop. */
let running: number | undefined;

async function runKillers(dir: string, m: Mutation): Promise<Outcome> {
  const started = performance.now();
  const args = ["test", "--timeout", "900000", ...m.killers.map((k) => `./${k}`)];
  if (m.testNamePattern) args.push("-t", m.testNamePattern);
  // The copy has no stack of its own: it uses the one this checkout runs. Output goes to a file
  // (processes the tests start may inherit it and outlive a killed run), and the run is its own
  // process group, so a timeout stops everything it started.
  const log = join(dir, ".mutation-run.log");
  const fd = openSync(log, "w");
  const child = spawn("bun", args, {
    cwd: dir,
    env: { ...process.env, STACK_DIR: localStack().dir },
    stdio: ["ignore", fd, fd],
    detached: true,
  });
  closeSync(fd);
  running = child.pid;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid) process.kill(-child.pid, "SIGKILL");
  }, RUN_TIMEOUT_MS);
  const code = await new Promise<number | null>((done) => child.on("exit", (c: number | null) => done(c)));
  clearTimeout(timer);
  running = undefined;
  const text = readFileSync(log, "utf8");
  const failed = [...text.matchAll(/^\(fail\) (.*?)(?: \[[\d.]+m?s\])?$/gm)].map((x) => x[1] as string);
  const ran = /^\s*(\d+) pass$/m.exec(text);
  const at = text.search(/^error: /m);
  const error =
    at < 0
      ? ""
      : (text
          .slice(at)
          .split(/\n\(fail\) /)[0]
          ?.split("\n")
          .slice(0, 12)
          .filter((l) => l.trim() && !/^\s+at /.test(l))
          .join(" ")
          .replace(/\s+/g, " ")
          .slice(0, 400) ?? "");
  const seconds = (performance.now() - started) / 1000;
  const tail = text.slice(-1500);
  if (timedOut) return { verdict: "timeout", seconds, failed, error, tail };
  if (code === 0) {
    return ran && Number(ran[1]) > 0
      ? { verdict: "passed", seconds, failed, error, tail }
      : { verdict: "broken", seconds, failed: ["no test ran: check testNamePattern"], error, tail };
  }
  // A kill is a test that failed; a run that broke otherwise (a file that did not load) proves nothing.
  return { verdict: failed.length ? "failed" : "broken", seconds, failed, error, tail };
}

async function main(argv: string[]): Promise<number> {
  const problems = catalogProblems(catalog);
  if (argv.includes("--list")) {
    const verified = readVerified();
    for (const m of catalog) {
      const state = verified[m.id] === fingerprint(m) ? "verified" : "changed";
      console.log(`${m.id.padEnd(44)} ${state.padEnd(9)} ${m.file.padEnd(32)} ${m.killers.join(" ")}`);
    }
    return 0;
  }
  if (problems.length) {
    console.error(`stale or broken catalog entries:\n  ${problems.join("\n  ")}`);
    return 1;
  }
  if (argv.includes("--changed") && !existsSync(VERIFIED)) {
    console.error(`${VERIFIED} is missing: run \`bun tools/mutations/run.ts --record\` and commit it`);
    return 1;
  }
  const verified = readVerified();
  const named = argv.filter((a) => !a.startsWith("--"));
  for (const id of named) if (!catalog.some((m) => m.id === id)) throw new Error(`no mutation ${id} in the catalog`);
  const selected = catalog.filter((m) =>
    named.length ? named.includes(m.id) : argv.includes("--changed") ? verified[m.id] !== fingerprint(m) : true,
  );
  console.log(`${selected.length} of ${catalog.length} mutations to run`);
  if (!selected.length) return 0;

  const dir = scratchCopy();
  // Interrupted (Ctrl-C, a CI job cancelled): stop the killers and what they started, drop the copy.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (running) process.kill(-running, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    });
  }
  let failures = 0;
  try {
    // The killers must pass unmutated, or a "killed" verdict would prove nothing.
    const baselines = new Map<string, Outcome>();
    for (const m of selected) {
      const key = JSON.stringify([m.killers, m.testNamePattern]);
      if (!baselines.has(key)) baselines.set(key, await runKillers(dir, m));
      const base = baselines.get(key) as Outcome;
      if (base.verdict !== "passed") {
        console.log(
          `BASELINE FAILS ${m.id}: ${m.killers.join(" ")} ${base.verdict} unmutated: ${base.failed.join("; ")}\n${base.tail}`,
        );
        failures++;
        continue;
      }
      const path = join(dir, m.file);
      const original = readFileSync(path, "utf8");
      // A function, so `$&` or `$'` in the replacement stay literal.
      writeFileSync(
        path,
        original.replace(m.find, () => m.replace),
      );
      let outcome: Outcome;
      try {
        outcome = await runKillers(dir, m);
      } finally {
        writeFileSync(path, original);
      }
      if (outcome.verdict === "failed") {
        console.log(`killed   ${m.id}: ${outcome.failed.join("; ")} (${outcome.seconds.toFixed(0)} s)`);
        if (outcome.error) console.log(`         ${outcome.error}`);
        // The fingerprint of what was run: the copy, not the checkout (which may have moved on).
        verified[m.id] = fingerprint(m, dir);
      } else {
        const why = outcome.verdict === "passed" ? "passed on the mutated copy" : `${outcome.verdict} (no test failed)`;
        console.log(
          `SURVIVED ${m.id} (${m.file}): ${m.killers.join(" ")} ${why}\n${outcome.verdict === "passed" ? "" : outcome.tail}`,
        );
        failures++;
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (argv.includes("--record")) {
    const kept = Object.fromEntries(Object.entries(verified).filter(([id]) => catalog.some((m) => m.id === id)));
    writeFileSync(VERIFIED, `${JSON.stringify(kept, Object.keys(kept).sort(), 2)}\n`);
  }
  console.log(`${selected.length - failures} killed, ${failures} not`);
  return failures ? 1 : 0;
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));
