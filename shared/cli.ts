// The one command-line frame of the operator jobs (jobs/) and the dev tools that take options:
// node:util's parseArgs over one option table per command, which also prints --help, one
// UsageError, and one meaning for exit codes: 0 done, 1 failed (the work could not be done, or
// found a problem it reports), 2 usage or configuration error (nothing was attempted).
import { parseArgs } from "node:util";
import { ConfigError } from "./config.ts";

/** A command line the table does not accept: exit 2 with the usage text. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export interface CliOption {
  type: "string" | "boolean";
  /** What --help shows after the name, for a string option (e.g. "N", "24h"). */
  value?: string;
  description: string;
}

export interface CliCommand {
  /** Positional arguments as --help shows them (e.g. "<id>"), "" for none. */
  args: string;
  description: string;
  options: Record<string, CliOption>;
  /** Allowed positional arguments (default 0, or 1 when `args` is set). */
  maxPositionals?: number;
}

/** A program: named commands, each with its own options; the MAIN one runs when no command is named. */
export interface CliSpec {
  /** How the operator runs it, e.g. "bun run dlq". */
  program: string;
  description: string;
  commands: Record<string, CliCommand>;
}

/** The key of `commands` for a program without subcommands. */
export const MAIN = "";

export interface ParsedCommand {
  command: string;
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** --help's text: every command with every option of the table that parses it. */
export function helpText(spec: CliSpec): string {
  const names = Object.keys(spec.commands);
  const commandArg = names.length === 1 && names[0] === MAIN ? "" : spec.commands[MAIN] ? " [<command>]" : " <command>";
  const lines = [`usage: ${spec.program}${commandArg} [--help]`, "", spec.description];
  for (const [name, command] of Object.entries(spec.commands)) {
    lines.push("", `  ${[spec.program, name, command.args].filter(Boolean).join(" ")}`, `      ${command.description}`);
    for (const [option, o] of Object.entries(command.options)) {
      const flag = o.type === "string" ? `--${option} ${o.value ?? "VALUE"}` : `--${option}`;
      lines.push(`      ${flag.padEnd(24)} ${o.description}`);
    }
  }
  return lines.join("\n");
}

export const wantsHelp = (argv: readonly string[]) =>
  argv[0] === "help" || argv.includes("--help") || argv.includes("-h");

/** Parses argv against the table; anything it does not describe is a UsageError. */
export function parseCommand(spec: CliSpec, argv: readonly string[]): ParsedCommand {
  // The first argument names a command; a program with a MAIN command runs it when none is named.
  const named = argv[0] !== undefined && argv[0] !== MAIN && Object.hasOwn(spec.commands, argv[0]);
  const name = named ? (argv[0] as string) : spec.commands[MAIN] ? MAIN : (argv[0] ?? "");
  const command = spec.commands[name];
  if (!command) {
    const known = Object.keys(spec.commands).join(", ");
    throw new UsageError(
      name ? `unknown command "${name}" (one of ${known})` : `a command is needed (one of ${known})`,
    );
  }
  const options = Object.fromEntries(Object.entries(command.options).map(([k, o]) => [k, { type: o.type }]));
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: named ? argv.slice(1) : [...argv], options, allowPositionals: true, strict: true });
  } catch (error) {
    throw usageOf(error);
  }
  const max = command.maxPositionals ?? (command.args ? 1 : 0);
  if (parsed.positionals.length > max) {
    const others = Object.keys(spec.commands).filter((k) => k !== MAIN);
    if (!named && max === 0 && others.length)
      throw new UsageError(`unknown command "${parsed.positionals[0]}" (one of ${others.join(", ")})`);
    throw new UsageError(`unknown argument(s): ${parsed.positionals.slice(max).join(" ")}`);
  }
  return { command: name, values: parsed.values, positionals: parsed.positionals };
}

/** parseArgs' errors, said in one line. */
function usageOf(error: unknown): UsageError {
  const { code, message } = error as { code?: string; message: string };
  const option = /'(-[^' ]+)/.exec(message)?.[1];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option) return new UsageError(`unknown argument(s): ${option}`);
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option)
    return new UsageError(/does not take/.test(message) ? `${option} takes no value` : `${option} needs a value`);
  return new UsageError(message);
}

/**
 * For a script whose work runs at the top level (a long-running dev tool): the parsed command
 * line, or --help printed and exit 0, or the usage error printed and exit 2.
 */
export function parseProcessArgs(spec: CliSpec, argv = process.argv.slice(2)): ParsedCommand {
  if (wantsHelp(argv)) {
    console.log(helpText(spec));
    process.exit(0);
  }
  try {
    return parseCommand(spec, argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${programName(spec)}: ${error.message}\n${helpText(spec)}`);
    process.exit(2);
  }
}

const programName = (spec: CliSpec) =>
  spec.program
    .replace(/^bun (run )?/, "")
    .replace(/^.*\//, "")
    .replace(/\.ts$/, "");

/** Runs `main` with the process's arguments, prints --help, and turns the outcome into the exit code. */
export async function runCli(spec: CliSpec, main: (argv: string[]) => Promise<number>, argv = process.argv.slice(2)) {
  process.exit(await cliExitCode(spec, main, argv));
}

/** runCli without the exit: the code it would exit with (unit-tested). */
export async function cliExitCode(
  spec: CliSpec,
  main: (argv: string[]) => Promise<number>,
  argv: string[],
  err: (text: string) => void = (text) => console.error(text),
  out: (text: string) => void = (text) => console.log(text),
): Promise<number> {
  const name = programName(spec);
  if (wantsHelp(argv)) {
    out(helpText(spec));
    return 0;
  }
  try {
    return await main(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      err(`${name}: ${error.message}\n${helpText(spec)}`);
      return 2;
    }
    if (error instanceof ConfigError) {
      err(`${name}: ${error.message}`);
      return 2;
    }
    // A typed error's message is the whole story; an unexpected one keeps its stack.
    const typed = error instanceof Error && error.name !== "Error";
    err(`${name} failed: ${typed ? error.message : ((error as Error).stack ?? String(error))}`);
    return 1;
  }
}
