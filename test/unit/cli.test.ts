// The operator jobs' command-line frame (shared/cli.ts): exit 2 for a usage or configuration error,
// 1 for a failure, 0 done; --help printed from the option table that parses. And the jobs' import
// rule: jobs/ imports only jobs/ and shared/ (what the worker image carries), with no circle in
// jobs/, tools/ or shared/.
import { expect, test } from "bun:test";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ARCHIVE_RESTORE_CLI } from "../../jobs/archive-restore.ts";
import { DLQ_CLI } from "../../jobs/dlq.ts";
import { KEYS_CLI } from "../../jobs/keys.ts";
import { MAINTAIN_CLI } from "../../jobs/maintain.ts";
import { RESTORE_OFFSETS_CLI } from "../../jobs/restore-offsets.ts";
import { type CliSpec, MAIN, UsageError, cliExitCode, helpText, parseCommand } from "../../shared/cli.ts";
import { ConfigError } from "../../shared/config.ts";

const SPEC: CliSpec = {
  program: "bun run demo",
  description: "a demo",
  commands: {
    list: { args: "", description: "list", options: { all: { type: "boolean", description: "all of them" } } },
    show: {
      args: "<id>",
      description: "one",
      options: { limit: { type: "string", value: "N", description: "at most N" } },
    },
  },
};

async function exit(main: (argv: string[]) => Promise<number>, argv: string[]) {
  const lines: string[] = [];
  const code = await cliExitCode(
    SPEC,
    main,
    argv,
    (t) => lines.push(t),
    (t) => lines.push(t),
  );
  return { code, text: lines.join("\n") };
}

test("a usage error exits 2 with the usage text, a configuration error 2, a failure 1, success 0", async () => {
  const parse = async (argv: string[]) => {
    parseCommand(SPEC, argv);
    return 0;
  };
  expect(await exit(parse, ["list", "--all"])).toEqual({ code: 0, text: "" });
  for (const argv of [["frobnicate"], [], ["list", "--nope"], ["list", "extra"], ["show", "1", "--limit"]]) {
    const { code, text } = await exit(parse, argv);
    expect({ argv, code }).toEqual({ argv, code: 2 });
    expect(text).toContain("usage: bun run demo");
  }
  expect((await exit(() => Promise.reject(new UsageError("bad")), ["list"])).code).toBe(2);
  expect((await exit(() => Promise.reject(new ConfigError(["X=1: no"])), ["list"])).code).toBe(2);
  const failed = await exit(() => Promise.reject(new Error("the database is gone")), ["list"]);
  expect(failed.code).toBe(1);
  expect(failed.text).toContain("demo failed: Error: the database is gone");
  expect((await exit(async () => 1, ["list"])).code).toBe(1);
});

test("parsed values come from the table; --help lists every command and option of it and exits 0", async () => {
  expect(parseCommand(SPEC, ["show", "7", "--limit", "3"])).toEqual({
    command: "show",
    values: { limit: "3" },
    positionals: ["7"],
  });
  const help = await exit(async () => 1, ["show", "--help"]);
  expect(help.code).toBe(0);
  for (const word of ["list", "show <id>", "--all", "--limit N", "at most N"]) expect(help.text).toContain(word);
});

test("a program with a MAIN command runs it when no other command is named", () => {
  const spec: CliSpec = {
    program: "bun run backup",
    description: "",
    commands: {
      [MAIN]: { args: "", description: "a backup", options: { type: { type: "string", description: "kind" } } },
      info: { args: "", description: "the list", options: {} },
    },
  };
  expect(parseCommand(spec, ["--type", "diff"])).toEqual({ command: MAIN, values: { type: "diff" }, positionals: [] });
  expect(parseCommand(spec, ["info"]).command).toBe("info");
  expect(() => parseCommand(spec, ["infoo"])).toThrow('unknown command "infoo" (one of info)');
  expect(() => parseCommand(spec, ["info", "--type", "diff"])).toThrow("unknown argument(s): --type");
  expect(() => parseCommand(spec, ["--type"])).toThrow("--type needs a value");
  expect(helpText(spec)).toStartWith("usage: bun run backup [<command>] [--help]");
});

test("each job's --help names every option its table parses", () => {
  for (const spec of [ARCHIVE_RESTORE_CLI, DLQ_CLI, KEYS_CLI, MAINTAIN_CLI, RESTORE_OFFSETS_CLI]) {
    const help = helpText(spec);
    for (const [name, command] of Object.entries(spec.commands)) {
      if (name) expect(help).toContain(`${spec.program} ${name}`);
      for (const option of Object.keys(command.options)) expect(help).toContain(`--${option}`);
    }
  }
});

const ROOT = resolve(import.meta.dir, "../..");
const transpiler = new Bun.Transpiler({ loader: "ts" });

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((f) => {
    const p = join(dir, f);
    return statSync(join(ROOT, p)).isDirectory() ? sources(p) : p.endsWith(".ts") ? [p] : [];
  });
}

function importGraph(dirs: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of dirs.flatMap(sources)) {
    const imports = transpiler.scanImports(readFileSync(join(ROOT, file), "utf8"));
    graph.set(
      file,
      imports.filter((i) => i.path.startsWith(".")).map((i) => relative(ROOT, resolve(ROOT, dirname(file), i.path))),
    );
  }
  return graph;
}

function cycles(graph: Map<string, string[]>): string[] {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const found: string[] = [];
  const visit = (f: string) => {
    state.set(f, "open");
    path.push(f);
    for (const next of graph.get(f) ?? []) {
      if (!graph.has(next)) continue;
      if (state.get(next) === "open") found.push([...path.slice(path.indexOf(next)), next].join(" -> "));
      else if (!state.has(next)) visit(next);
    }
    path.pop();
    state.set(f, "done");
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return found;
}

test("jobs/ imports only jobs/ and shared/; jobs/, tools/ and shared/ have no import circle", () => {
  const graph = importGraph(["jobs", "tools", "shared"]);
  const outside = [...graph]
    .filter(([f]) => f.startsWith("jobs/"))
    .flatMap(([f, deps]) => deps.filter((d) => !/^(jobs|shared)\//.test(d)).map((d) => `${f} -> ${d}`));
  expect(outside).toEqual([]);
  expect(cycles(graph)).toEqual([]);
  // The check sees a circle when there is one.
  expect(
    cycles(
      new Map([
        ["a", ["b"]],
        ["b", ["a"]],
      ]),
    ),
  ).toEqual(["a -> b -> a"]);
});
