// Runs a markdown file's shell examples and checks what they print against what the doc shows,
// so a doc cannot drift from the code. Reusable by any doc (API docs, runbooks):
//
// - Every ```sh or ```bash block is an example, run with `bash -euo pipefail` in the repository's
//   root, bounded in time; it must exit 0. Every ```ts (or ```typescript) block is one too, run
//   with `bun -e` (the environment is its input: `process.env.BASE_URL`...).
// - A block that cannot run in a test (it starts long-running services, needs a remote host...) is
//   preceded by `<!-- doc-test: skip (reason) -->`; the reason is required.
// - A block preceded by `<!-- doc-test: setup -->` is a prelude: it is prepended to every later
//   example of the same file in the same language (e.g. `BASE_URL=${BASE_URL:-http://127.0.0.1:8080}`).
// - Expected output: a ```http, ```json or ```text block that directly follows an example (only
//   blank lines between) is what the example prints.
//   - `http`: what `curl -si` prints. The status code must be equal; each header shown must be
//     present with that value (names in any case, other headers allowed); the body, if shown, is
//     compared as JSON when it parses as JSON (else as text).
//   - `json`: the example prints one JSON value (or several, one after another); each must match.
//   - `text`: the example's output, line for line (trailing spaces ignored).
//   JSON is matched as a subset: every key the doc shows must be in the answer with a matching
//   value; keys the doc does not show are allowed; arrays must have the same length. The string
//   "…" (alone) stands for any value, and a string ending in "…" for any string with that prefix.
// Markers are HTML comments, so they do not show when the markdown is rendered.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";

export interface Expected {
  lang: "http" | "json" | "text";
  text: string;
  line: number;
}

export interface DocBlock {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  kind: "example" | "skip" | "setup";
  skipReason?: string;
  expected?: Expected;
}

export class DocParseError extends Error {
  constructor(file: string, line: number, message: string) {
    super(`${file}:${line}: ${message}`);
    this.name = "DocParseError";
  }
}

/** The command that runs an example's code, by the block's language. */
const RUNNERS: Record<string, (code: string) => string[]> = {
  sh: (code) => ["bash", "--noprofile", "--norc", "-euo", "pipefail", "-c", code],
  bash: (code) => ["bash", "--noprofile", "--norc", "-euo", "pipefail", "-c", code],
  ts: (code) => ["bun", "-e", code],
  typescript: (code) => ["bun", "-e", code],
};
const RUNNABLE = new Set(Object.keys(RUNNERS));
/** Setup blocks apply to later examples run the same way. */
const family = (lang: string) => (lang === "sh" || lang === "bash" ? "shell" : "ts");
const OUTPUT = new Set(["http", "json", "text"]);
const MARKER = /^<!--\s*doc-test:\s*(.*?)\s*-->$/;
/** The wildcard a doc writes for a value that changes from run to run (ids, times). */
export const ANY = "…";

interface Fence {
  line: number;
  lang: string;
  code: string;
  /** The marker directly before the fence (only blank lines between), if any. */
  marker?: { text: string; line: number };
  /** True when nothing but blank lines separates this fence from the previous one's end. */
  adjacentToPrevious: boolean;
}

function fences(markdown: string, file: string): Fence[] {
  const lines = markdown.split("\n");
  const out: Fence[] = [];
  let marker: Fence["marker"];
  let sinceLastFence: "none" | "blank" | "other" = "other";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const open = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/.exec(line);
    if (open) {
      const fence = open[1] as string;
      const body: string[] = [];
      let j = i + 1;
      const close = new RegExp(`^ {0,3}${fence[0] === "`" ? "`" : "~"}{${fence.length},}\\s*$`);
      while (j < lines.length && !close.test(lines[j] as string)) body.push(lines[j++] as string);
      if (j >= lines.length) throw new DocParseError(file, i + 1, "code block is never closed");
      out.push({
        line: i + 1,
        lang: (open[2] as string).toLowerCase(),
        code: body.join("\n"),
        marker,
        adjacentToPrevious: sinceLastFence !== "other" && out.length > 0,
      });
      marker = undefined;
      sinceLastFence = "none";
      i = j;
      continue;
    }
    const m = MARKER.exec(line.trim());
    if (m) {
      marker = { text: m[1] as string, line: i + 1 };
      sinceLastFence = "other";
    } else if (line.trim() === "") {
      if (sinceLastFence === "none") sinceLastFence = "blank";
    } else {
      if (marker) throw new DocParseError(file, marker.line, "a doc-test marker must directly precede a code block");
      sinceLastFence = "other";
    }
  }
  if (marker) throw new DocParseError(file, marker.line, "a doc-test marker must directly precede a code block");
  return out;
}

/** The examples of a markdown text, each with its marker and expected output. */
export function extractBlocks(markdown: string, file = "(markdown)"): DocBlock[] {
  const all = fences(markdown, file);
  const blocks: DocBlock[] = [];
  for (let i = 0; i < all.length; i++) {
    const f = all[i] as Fence;
    if (!RUNNABLE.has(f.lang)) {
      if (f.marker) throw new DocParseError(file, f.marker.line, `doc-test marker before a \`${f.lang}\` block`);
      continue;
    }
    const block: DocBlock = { file, line: f.line, lang: f.lang, code: f.code, kind: "example" };
    if (f.marker) {
      const skip = /^skip\s*\((.+)\)$/.exec(f.marker.text);
      if (skip) {
        block.kind = "skip";
        block.skipReason = (skip[1] as string).trim();
      } else if (f.marker.text === "setup") block.kind = "setup";
      else {
        throw new DocParseError(
          file,
          f.marker.line,
          `unknown doc-test marker "${f.marker.text}": use "skip (reason)" or "setup"`,
        );
      }
    }
    const next = all[i + 1];
    if (next?.adjacentToPrevious && OUTPUT.has(next.lang) && !next.marker) {
      // A skipped example may show its output (unchecked, like the example); a setup block may not.
      if (block.kind === "setup") {
        throw new DocParseError(file, next.line, "expected output after a setup block would never be checked");
      }
      block.expected = { lang: next.lang as Expected["lang"], text: next.code, line: next.line };
      i++;
    }
    blocks.push(block);
  }
  return blocks;
}

export const readDoc = (path: string, file = path) => extractBlocks(readFileSync(path, "utf8"), file);

// ---------------------------------------------------------------- matching

const describe = (value: unknown) => {
  const s = JSON.stringify(value);
  return s === undefined ? String(value) : s.length > 200 ? `${s.slice(0, 200)}…` : s;
};

/**
 * Where `actual` does not contain `expected` (see the file header for the rules); [] when it does.
 * Each problem names its JSON path.
 */
export function jsonSubset(expected: unknown, actual: unknown, path = "$"): string[] {
  if (typeof expected === "string" && expected.endsWith(ANY)) {
    const prefix = expected.slice(0, -ANY.length);
    if (prefix === "" && actual !== undefined) return [];
    if (typeof actual === "string" && actual.startsWith(prefix)) return [];
    return [
      `${path}: expected ${prefix ? `a string starting with ${describe(prefix)}` : "a value"}, got ${describe(actual)}`,
    ];
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [`${path}: expected an array, got ${describe(actual)}`];
    if (actual.length !== expected.length) {
      return [`${path}: expected ${expected.length} element(s), got ${actual.length}: ${describe(actual)}`];
    }
    return expected.flatMap((e, i) => jsonSubset(e, actual[i], `${path}[${i}]`));
  }
  if (expected !== null && typeof expected === "object") {
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) {
      return [`${path}: expected an object, got ${describe(actual)}`];
    }
    return Object.entries(expected).flatMap(([k, e]) =>
      k in actual
        ? jsonSubset(e, (actual as Record<string, unknown>)[k], `${path}.${k}`)
        : [`${path}: missing key "${k}" in ${describe(actual)}`],
    );
  }
  return Object.is(expected, actual) ? [] : [`${path}: expected ${describe(expected)}, got ${describe(actual)}`];
}

/** The JSON values of a text holding one or more, one after another (pretty-printed or not). */
export function parseJsonValues(text: string): unknown[] {
  const values: unknown[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /\s/.test(text[i] as string)) i++;
    if (i >= text.length) break;
    const end = jsonValueEnd(text, i);
    values.push(JSON.parse(text.slice(i, end)));
    i = end;
  }
  return values;
}

/** Index just past the JSON value starting at `start` (its syntax is checked by JSON.parse later). */
function jsonValueEnd(text: string, start: number): number {
  const first = text[start] as string;
  if (first !== "{" && first !== "[") {
    if (first === '"') return stringEnd(text, start);
    const m = /^[^\s{}[\],"]+/.exec(text.slice(start));
    if (!m) throw new SyntaxError(`unexpected ${JSON.stringify(first)} at offset ${start}`);
    return start + m[0].length;
  }
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === '"') i = stringEnd(text, i) - 1;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  throw new SyntaxError(`unterminated JSON value at offset ${start}`);
}

function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === '"') return i + 1;
  }
  throw new SyntaxError(`unterminated JSON string at offset ${start}`);
}

export interface HttpMessage {
  status: number;
  headers: [string, string][];
  body: string;
}

/** A response as `curl -si` prints it (CRLF or LF), or as a doc shows it. */
export function parseHttp(text: string): HttpMessage {
  const normalized = text.replace(/\r\n/g, "\n").replace(/^\s*\n/, "");
  const split = normalized.indexOf("\n\n");
  const head = split < 0 ? normalized.trimEnd() : normalized.slice(0, split);
  const body = split < 0 ? "" : normalized.slice(split + 2);
  const [statusLine = "", ...headerLines] = head.split("\n");
  const status = /^HTTP\/[\d.]+ (\d{3})\b/.exec(statusLine);
  if (!status) throw new SyntaxError(`not an HTTP status line: ${JSON.stringify(statusLine)}`);
  const headers = headerLines.map((l): [string, string] => {
    const colon = l.indexOf(":");
    if (colon < 0) throw new SyntaxError(`not an HTTP header line: ${JSON.stringify(l)}`);
    return [l.slice(0, colon).trim().toLowerCase(), l.slice(colon + 1).trim()];
  });
  return { status: Number(status[1]), headers, body };
}

function textMatches(expected: string, actual: string, what: string): string[] {
  const norm = (s: string) =>
    s
      .split("\n")
      .map((l) => l.trimEnd())
      .join("\n")
      .trim();
  return norm(expected) === norm(actual)
    ? []
    : [`${what}: expected ${describe(norm(expected))}, got ${describe(norm(actual))}`];
}

function bodyMatches(expected: string, actual: string, what: string): string[] {
  let expectedValues: unknown[];
  try {
    expectedValues = parseJsonValues(expected);
  } catch {
    return textMatches(expected, actual, what);
  }
  let actualValues: unknown[];
  try {
    actualValues = parseJsonValues(actual);
  } catch (error) {
    return [`${what}: expected JSON, got ${describe(actual)} (${(error as Error).message})`];
  }
  if (actualValues.length !== expectedValues.length) {
    return [
      `${what}: expected ${expectedValues.length} JSON value(s), got ${actualValues.length}: ${describe(actual)}`,
    ];
  }
  return expectedValues.flatMap((e, i) =>
    jsonSubset(e, actualValues[i], expectedValues.length > 1 ? `${what} value ${i + 1}` : what),
  );
}

/** Where `stdout` differs from the doc's expected output; [] when it matches. */
export function checkOutput(expected: Expected, stdout: string): string[] {
  if (expected.lang === "text") return textMatches(expected.text, stdout, "output");
  if (expected.lang === "json") return bodyMatches(expected.text, stdout, "output");
  const want = parseHttp(expected.text);
  let got: HttpMessage;
  try {
    got = parseHttp(stdout);
  } catch (error) {
    return [`expected an HTTP response (curl -si), got ${describe(stdout)}: ${(error as Error).message}`];
  }
  const problems: string[] = [];
  if (got.status !== want.status) problems.push(`status: expected ${want.status}, got ${got.status}`);
  for (const [name, value] of want.headers) {
    const have = got.headers.filter(([n]) => n === name).map(([, v]) => v);
    if (have.length === 0) problems.push(`header ${name}: missing`);
    else if (!have.some((v) => (value === ANY ? true : v === value))) {
      problems.push(`header ${name}: expected ${describe(value)}, got ${describe(have.join(", "))}`);
    }
  }
  if (want.body.trim() !== "") problems.push(...bodyMatches(want.body, got.body, "body"));
  return problems;
}

// ---------------------------------------------------------------- running

export interface RunOptions {
  /** Added to the environment of every example (e.g. BASE_URL). */
  env?: Record<string, string>;
  /** Working directory; default: the repository's root. */
  cwd?: string;
  /** Per example; the example is killed (by pid) past it. */
  timeoutMs?: number;
}

export interface BlockResult {
  block: DocBlock;
  exitCode: number | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** Empty when the example exited 0 and printed what the doc shows. */
  problems: string[];
}

const ROOT = new URL("../..", import.meta.url).pathname;

/** Runs one example (after the file's setup blocks of its language) and checks it. */
export async function runBlock(block: DocBlock, setup: readonly DocBlock[], options: RunOptions = {}) {
  const { env = {}, cwd = ROOT, timeoutMs = 20_000 } = options;
  const preludes = setup.filter((s) => family(s.lang) === family(block.lang)).map((s) => s.code);
  const runner = RUNNERS[block.lang];
  if (!runner) throw new Error(`${block.file}:${block.line}: no runner for \`${block.lang}\` blocks`);
  const proc = Bun.spawn(runner([...preludes, block.code].join("\n")), {
    cwd,
    env: { ...process.env, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, timeoutMs);
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]).finally(() => clearTimeout(timer));
  const problems: string[] = [];
  if (timedOut) problems.push(`did not finish within ${timeoutMs} ms (killed)`);
  else if (exitCode !== 0) problems.push(`exited ${exitCode}`);
  else if (block.expected) problems.push(...checkOutput(block.expected, stdout));
  const result: BlockResult = { block, exitCode: timedOut ? null : exitCode, timedOut, stdout, stderr, problems };
  return result;
}

/** Runs every example of the blocks in order (setup blocks prepended); skipped ones are not run. */
export async function runBlocks(blocks: readonly DocBlock[], options: RunOptions = {}): Promise<BlockResult[]> {
  const setup: DocBlock[] = [];
  const results: BlockResult[] = [];
  for (const block of blocks) {
    if (block.kind === "setup") setup.push(block);
    else if (block.kind === "example") results.push(await runBlock(block, setup, options));
  }
  return results;
}

/** One readable report of the failed examples: where, what differed, and what they printed. */
export function failureReport(results: readonly BlockResult[]): string {
  return results
    .filter((r) => r.problems.length > 0)
    .map((r) => {
      const where = `${r.block.file}:${r.block.line}`;
      const expectedAt = r.block.expected ? ` (expected output at line ${r.block.expected.line})` : "";
      return [
        `${where}${expectedAt}:`,
        ...r.problems.map((p) => `  - ${p}`),
        `  stdout: ${r.stdout.trim().slice(0, 1000) || "(empty)"}`,
        `  stderr: ${r.stderr.trim().slice(0, 1000) || "(empty)"}`,
      ].join("\n");
    })
    .join("\n");
}

// ---------------------------------------------------------------- links

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function headingAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** The anchors of a markdown text's headings (outside code blocks), with GitHub's -1, -2 for repeats. */
export function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | null = null;
  for (const line of markdown.split("\n")) {
    const f = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (f) {
      const mark = f[1] as string;
      if (fence === null) fence = mark;
      else if (mark[0] === fence[0] && mark.length >= fence.length) fence = null;
      continue;
    }
    const h = fence === null ? /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line) : null;
    if (!h) continue;
    const base = headingAnchor(h[1] as string);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/**
 * Relative links of markdown files whose target file or heading does not exist, as
 * "file:line: link (why)". External links (with a scheme) are not followed.
 */
export function brokenLinks(files: readonly string[], root = ROOT): string[] {
  const problems: string[] = [];
  for (const file of files) {
    const path = join(root, file);
    const text = readFileSync(path, "utf8");
    let fence: string | null = null;
    text.split("\n").forEach((line, i) => {
      const f = /^ {0,3}(`{3,}|~{3,})/.exec(line);
      if (f) {
        const mark = f[1] as string;
        if (fence === null) fence = mark;
        else if (mark[0] === fence[0] && mark.length >= fence.length) fence = null;
        return;
      }
      if (fence !== null) return;
      for (const m of line.replaceAll(/`[^`]*`/g, "").matchAll(/\]\(([^)\s]+)\)/g)) {
        const link = m[1] as string;
        if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue;
        const [target = "", anchor] = link.split("#");
        const targetPath = target === "" ? path : join(dirname(path), target);
        const where = `${file}:${i + 1}: ${link}`;
        if (!existsSync(targetPath)) {
          problems.push(`${where} (no file ${relative(root, targetPath)})`);
          continue;
        }
        if (anchor && targetPath.endsWith(".md") && !anchorsOf(readFileSync(targetPath, "utf8")).has(anchor)) {
          problems.push(`${where} (no heading "#${anchor}" in ${relative(root, targetPath)})`);
        }
      }
    });
  }
  return problems;
}

// ---------------------------------------------------------------- configuration tables

/**
 * The variable names of the table between `<!-- config:<name> -->` and `<!-- /config:<name> -->`:
 * the first column of each row, in backticks. Throws when the markers or the table are missing.
 */
export function configTable(markdown: string, name: string): string[] {
  return configRows(markdown, name).map((r) => r.variable);
}

/** Each row of a config table: the variable and its default cell (backticks kept). */
export function configRows(markdown: string, name: string): { variable: string; defaultCell: string }[] {
  const start = markdown.indexOf(`<!-- config:${name} -->`);
  const end = markdown.indexOf(`<!-- /config:${name} -->`);
  if (start < 0 || end < start) throw new Error(`no <!-- config:${name} --> … <!-- /config:${name} --> section`);
  const rows = markdown
    .slice(start, end)
    .split("\n")
    .filter((l) => l.startsWith("|"))
    .slice(2); // the header and the separator
  if (rows.length === 0) throw new Error(`config:${name}: no table rows`);
  return rows.map((row) => {
    const m = /^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|([^|]*)\|/.exec(row);
    if (!m) throw new Error(`config:${name}: the first column must be one variable in backticks: ${row}`);
    return { variable: m[1] as string, defaultCell: (m[2] as string).trim() };
  });
}

// ---------------------------------------------------------------- repo paths

/** Top-level folders that are never the repository's: dependencies, local state, secrets. */
const NOT_REPO = new Set(["node_modules", ".git", ".stack", ".secrets", "sbom"]);

/**
 * What counts as a repo path: a token that starts with one of the repository's top-level folders
 * (`server/`, `docs/`, `.ci/`…), at the start of a word (so not inside a URL or a longer path), and
 * ends with a file extension or a trailing slash, or is a whole code span (`` `.ci/run` ``). Globs (`*`), placeholders (`<name>`, `{a,b}`,
 * `YYYY`, `NNNN`) and variables (`$X`) are not paths; neither is anything under a `.gitignore`d path
 * (`bench/results/`: made by running something).
 */
export function repoPathTokens(text: string, topFolders: readonly string[]): string[] {
  const folders = topFolders.map((f) => f.replace(/[.]/g, "\\.")).join("|");
  const token = new RegExp(`(?<![\\w.@/$~-])(?:${folders})/[\\w@.+/-]*[^\\s\`'"()\\[\\],;:!?]*`, "g");
  const out: string[] = [];
  for (const m of text.matchAll(token)) {
    const raw = m[0].replace(/[.,;:!?]+$/, "");
    if (/[*<>{}$#]|YYYY|NNNN/.test(raw)) continue;
    const last = raw.endsWith("/") ? "" : (raw.split("/").pop() as string);
    // Without an extension or a slash, only a whole code span is a path (`.ci/run`), not prose.
    const wholeCodeSpan = text[(m.index ?? 0) - 1] === "`" && text[(m.index ?? 0) + m[0].length] === "`";
    if (raw.endsWith("/") || /\.[A-Za-z0-9]+$/.test(last) || wholeCodeSpan) out.push(raw);
  }
  return out;
}

/** The comment text of a source file, line by line ("" where a line has none). */
export function commentLines(text: string, style: "c" | "hash"): string[] {
  const lines = text.split("\n");
  if (style === "hash") return lines.map((l) => /(?:^|\s)#(.*)$/.exec(l)?.[1] ?? "");
  let inBlock = false;
  return lines.map((line) => {
    if (inBlock) {
      const end = line.indexOf("*/");
      if (end < 0) return line;
      inBlock = false;
      return line.slice(0, end);
    }
    const block = /(?:^|\s)\/\*(.*)$/.exec(line);
    if (block) {
      const rest = block[1] as string;
      const end = rest.indexOf("*/");
      if (end < 0) inBlock = true;
      return end < 0 ? rest : rest.slice(0, end);
    }
    return /(?:^|\s)\/\/(.*)$/.exec(line)?.[1] ?? "";
  });
}

/** The repository's top-level folders (those a repo path can start with). */
export function topFoldersOf(root = ROOT): string[] {
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !NOT_REPO.has(e.name))
    .map((e) => e.name);
}

/** `.gitignore`d paths that name a folder inside the repository (`bench/results/`). */
function ignoredPrefixes(root: string): string[] {
  const file = join(root, ".gitignore");
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .map((l) => l.trim().replace(/^\//, ""))
    .filter((l) => l.includes("/") && !/[*?[!#]/.test(l) && l.length > 0);
}

/**
 * Repo paths named by docs (the whole text) or source files (their comments) that do not exist,
 * as "file:line: path". A path in a workspace package's file may also be relative to the package.
 */
export function missingRepoPaths(files: readonly string[], root = ROOT): string[] {
  const folders = topFoldersOf(root);
  const ignored = ignoredPrefixes(root);
  const problems: string[] = [];
  for (const file of files) {
    const text = readFileSync(join(root, file), "utf8");
    const lines = file.endsWith(".md") ? text.split("\n") : commentLines(text, /\.(ts|js)$/.test(file) ? "c" : "hash");
    const pkg = /^packages\/[^/]+\//.exec(file)?.[0];
    lines.forEach((line, i) => {
      for (const path of repoPathTokens(line, folders)) {
        if (ignored.some((prefix) => path.startsWith(prefix))) continue;
        if (existsSync(join(root, path)) || (pkg && existsSync(join(root, pkg, path)))) continue;
        problems.push(`${file}:${i + 1}: ${path}`);
      }
    });
  }
  return problems;
}
