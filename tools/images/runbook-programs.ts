// What the runbooks' commands run, and where: their code blocks (docs/runbooks/*.md) read as shell
// (pipes, lists, `$(...)`, line continuations; comments, assignments, keywords and redirections
// dropped), each command's program placed on the operator's machine, in a compose service
// (`docker-compose exec|run … SERVICE PROGRAM`) or in a Kubernetes workload (`kubectl … exec
// deploy/X -- PROGRAM`), through the wrappers that run another program (env, timeout, runuser,
// sh -c). The Dockerfiles read statically: per stage its base, COPY lines, apt-get packages and
// PATH. test/unit/runbooks.test.ts checks every program exists where it runs; tools/images.ts runs
// `command -v` of the ones the forms run in each built image. No side effects: both import it.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { IMAGES, type ImageTarget } from "./names.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");
export const RUNBOOKS_DIR = "docs/runbooks";

// ---------------------------------------------------------------------------------------------
// Markdown

export interface Fence {
  file: string;
  line: number;
  lang: string;
  code: string;
}

/** The fenced blocks of a markdown text, in order. */
export function fencesOf(markdown: string, file: string): Fence[] {
  const out: Fence[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^\s*```(\w*)\s*$/.exec(lines[i] as string);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i] as string); i++) body.push(lines[i] as string);
    out.push({ file, line: start + 1, lang: (open[1] as string).toLowerCase(), code: body.join("\n") });
  }
  return out;
}

export const runbookFences = (): Fence[] =>
  readdirSync(join(ROOT, RUNBOOKS_DIR))
    .filter((f) => f.endsWith(".md"))
    .sort()
    .flatMap((f) => fencesOf(read(`${RUNBOOKS_DIR}/${f}`), `${RUNBOOKS_DIR}/${f}`));

/** The blocks that are shell: `sh`/`bash` (the local forms) and `shell` (the compose and kubectl forms). */
export const isShell = (f: Fence) => f.lang === "sh" || f.lang === "bash" || f.lang === "shell";

// ---------------------------------------------------------------------------------------------
// Shell, simply

/** A command substitution's place in a word (its commands are read as commands of their own). */
export const SUBST = "$(…)";

/** The index of the `)` closing the `(` at `open`, quotes respected. */
function closingParen(src: string, open: number): number {
  let depth = 0;
  for (let i = open; i < src.length; i++) {
    const c = src[i];
    if (c === "\\") i++;
    else if (c === "'") i = src.indexOf("'", i + 1) < 0 ? src.length : src.indexOf("'", i + 1);
    else if (c === '"') {
      for (i++; i < src.length && src[i] !== '"'; i++) if (src[i] === "\\") i++;
    } else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) return i;
  }
  return src.length;
}

/**
 * The simple commands of a shell text as unquoted words, substitutions' commands included, and the
 * functions it defines (`name() {`). Not a full shell: enough for the runbooks, which use no
 * heredocs, backticks, arithmetic or case.
 */
export function shellCommands(src: string): { commands: string[][]; functions: Set<string> } {
  const commands: string[][] = [];
  const functions = new Set<string>();
  const parse = (text: string) => {
    let words: string[] = [];
    let word = "";
    let inWord = false;
    const endWord = () => {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    };
    const endCommand = () => {
      endWord();
      if (words.length) commands.push(words);
      words = [];
    };
    const substitution = (at: number) => {
      const end = closingParen(text, at + 1);
      parse(text.slice(at + 2, end));
      word += SUBST;
      inWord = true;
      return end;
    };
    for (let i = 0; i < text.length; i++) {
      const c = text[i] as string;
      if (c === "\\") {
        if (text[i + 1] !== "\n") {
          word += text[i + 1] ?? "";
          inWord = true;
        }
        i++;
      } else if (c === "'") {
        const end = text.indexOf("'", i + 1);
        word += text.slice(i + 1, end < 0 ? undefined : end);
        inWord = true;
        i = end < 0 ? text.length : end;
      } else if (c === '"') {
        inWord = true;
        for (i++; i < text.length && text[i] !== '"'; i++) {
          if (text[i] === "\\") word += text[++i] ?? "";
          else if (text[i] === "$" && text[i + 1] === "(") i = substitution(i);
          else word += text[i];
        }
      } else if (c === "$" && text[i + 1] === "(") i = substitution(i);
      else if (c === "#" && !inWord) {
        const end = text.indexOf("\n", i);
        i = (end < 0 ? text.length : end) - 1;
      } else if (c === " " || c === "\t") endWord();
      else if (c === "&" && /[<>]$/.test(word))
        word += c; // 2>&1, <&3: a redirection, not a list
      else if (c === "\n" || c === ";" || c === "|" || c === "&") endCommand();
      else if (c === "(" && text[i + 1] === ")" && words.length === 0 && inWord) {
        functions.add(word);
        word = "";
        inWord = false;
        i++;
      } else if (c === "(" || c === ")") endCommand();
      else {
        word += c;
        inWord = true;
      }
    }
    endCommand();
  };
  parse(src);
  return { commands: commands.map(simpleCommand).filter((w) => w.length > 0), functions };
}

const KEYWORDS = new Set(["if", "then", "else", "elif", "do", "while", "until", "!", "{", "time"]);
const CLOSERS = new Set(["fi", "done", "}", "esac"]);

/** A command's words without redirections, leading keywords and assignments (`for …` is none). */
function simpleCommand(raw: string[]): string[] {
  const words: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    const w = raw[i] as string;
    const redirect = /^\d*(?:>>?|<)(&\d*-?)?(.*)$/.exec(w);
    if (redirect) {
      if (!redirect[1] && !redirect[2]) i++; // `> file`: the target is the next word
      continue;
    }
    words.push(w);
  }
  while (words.length && (KEYWORDS.has(words[0] as string) || CLOSERS.has(words[0] as string))) words.shift();
  if (words[0] === "for" || words[0] === "case") return [];
  while (words.length && /^[A-Za-z_]\w*=/.test(words[0] as string)) words.shift();
  return words;
}

// ---------------------------------------------------------------------------------------------
// Where each program runs

export type Place =
  | { kind: "local" }
  | { kind: "compose"; service: string }
  | { kind: "kubectl"; ref: string; namespace?: string };

export interface Invocation {
  program: string;
  args: string[];
  place: Place;
}

/** Options of the wrappers that take a value (the next word); the others take none. */
const VALUE_OPTIONS: Record<string, Set<string>> = {
  "docker-compose": new Set(["-f", "--file", "-p", "--project-name", "--profile", "--env-file", "--project-directory"]),
  "compose-run": new Set(["-e", "--env", "-u", "--user", "-w", "--workdir", "--entrypoint", "--name", "-l", "--label"]),
  kubectl: new Set(["-n", "--namespace", "--context", "--kubeconfig", "--cluster", "--user", "-s", "--server"]),
  "kubectl-exec": new Set(["-c", "--container", "--pod-running-timeout"]),
  timeout: new Set(["-s", "--signal", "-k", "--kill-after"]),
  runuser: new Set(["-u", "-g", "-G", "--user", "--group", "-s", "--shell"]),
  env: new Set(["-u", "--unset", "-C", "--chdir"]),
};

/** The index of the first word from `from` that is not an option (nor an option's value). */
function firstOperand(words: string[], from: number, valueOptions: Set<string>): number {
  let i = from;
  while (i < words.length && (words[i] as string).startsWith("-") && words[i] !== "--") {
    if (valueOptions.has(words[i] as string)) i++;
    i++;
  }
  return i;
}

/**
 * The programs one command runs: its own and, through a wrapper, the one it runs (and where).
 * `docker compose` is read as `docker-compose` for the places; the program stays `docker`.
 */
export function invocations(words: string[], place: Place = { kind: "local" }): Invocation[] {
  const [program, ...args] = words;
  if (!program) return [];
  const self: Invocation = { program, args, place };
  const nested = (rest: string[], at: Place = place) => [self, ...invocations(rest, at)];
  switch (program) {
    case "env": {
      let i = firstOperand(args, 0, VALUE_OPTIONS.env as Set<string>);
      while (i < args.length && /^[A-Za-z_]\w*=/.test(args[i] as string)) i++;
      return nested(args.slice(i));
    }
    case "timeout":
      return nested(args.slice(firstOperand(args, 0, VALUE_OPTIONS.timeout as Set<string>) + 1));
    case "runuser": {
      const dash = args.indexOf("--");
      return nested(dash < 0 ? [] : args.slice(dash + 1));
    }
    case "exec":
    case "nice":
    case "nohup":
      return nested(args);
    case "sh":
    case "bash": {
      const c = args.indexOf("-c");
      if (c < 0 || args[c + 1] === undefined) return [self];
      return [self, ...shellCommands(args[c + 1] as string).commands.flatMap((w) => invocations(w, place))];
    }
    case "docker":
    case "docker-compose": {
      const composeArgs = program === "docker" ? (args[0] === "compose" ? args.slice(1) : null) : args;
      if (!composeArgs) return [self];
      const sub = firstOperand(composeArgs, 0, VALUE_OPTIONS["docker-compose"] as Set<string>);
      if (composeArgs[sub] !== "exec" && composeArgs[sub] !== "run") return [self];
      const service = firstOperand(composeArgs, sub + 1, VALUE_OPTIONS["compose-run"] as Set<string>);
      if (!composeArgs[service]) return [self];
      return nested(composeArgs.slice(service + 1), { kind: "compose", service: composeArgs[service] as string });
    }
    case "kubectl": {
      const sub = firstOperand(args, 0, VALUE_OPTIONS.kubectl as Set<string>);
      if (args[sub] !== "exec") return [self];
      const ns = args.findIndex((a, i) => i < sub && (a === "-n" || a === "--namespace"));
      const ref = firstOperand(args, sub + 1, VALUE_OPTIONS["kubectl-exec"] as Set<string>);
      const dash = args.indexOf("--", ref);
      if (!args[ref] || dash < 0) return [self];
      return nested(args.slice(dash + 1), {
        kind: "kubectl",
        ref: args[ref] as string,
        namespace: ns < 0 ? undefined : args[ns + 1],
      });
    }
    default:
      return [self];
  }
}

/** Every invocation of the runbooks' shell blocks, with where it is written and the runbook's functions. */
export function runbookInvocations(fences: Fence[] = runbookFences()) {
  const functionsOf = new Map<string, Set<string>>();
  for (const f of fences.filter(isShell)) {
    const set = functionsOf.get(f.file) ?? new Set<string>();
    for (const name of shellCommands(f.code).functions) set.add(name);
    functionsOf.set(f.file, set);
  }
  return fences.filter(isShell).flatMap((fence) =>
    shellCommands(fence.code).commands.flatMap((words) =>
      invocations(words).map((inv) => ({
        ...inv,
        fence,
        command: words.join(" "),
        functions: functionsOf.get(fence.file) as Set<string>,
      })),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Dockerfiles, statically

export interface Stage {
  base: string;
  /** Build-context paths its COPY lines bring (COPY --from excluded). */
  copies: string[];
  /** Paths in the image that COPY lines write (files, or directories for a directory source). */
  copiedTo: string[];
  /** What its RUN lines apt-get install. */
  packages: string[];
  /** Directories its ENV PATH puts before the default. */
  pathDirs: string[];
}

/** Debian's default PATH for root and the images' users (an image may prepend with ENV PATH). */
export const DEFAULT_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** The packages of every `apt-get install` in a shell text (line continuations joined). */
export function aptInstalls(text: string): string[] {
  const joined = text.replace(/\\\n/g, " ");
  return [...joined.matchAll(/apt-get install\s+([^&|;>\n]+)/g)].flatMap((m) =>
    (m[1] as string)
      .trim()
      .split(/\s+/)
      .filter((w) => !w.startsWith("-") && /^[a-z0-9][a-z0-9.+-]+$/.test(w)),
  );
}

/** Each stage of a Dockerfile with what it inherits from its base stages (named `""` when unnamed). */
export function dockerfileStages(dockerfile: string): Map<string, Stage> {
  const own = new Map<string, Stage>();
  let current: Stage | undefined;
  let unnamed = 0;
  const lines = dockerfile.replace(/\\\n/g, " ").split("\n");
  for (const raw of lines) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(raw);
    if (from) {
      current = { base: from[1] as string, copies: [], copiedTo: [], packages: [], pathDirs: [] };
      own.set(from[2] ?? (unnamed++ === 0 ? "" : `#${unnamed}`), current);
      continue;
    }
    if (!current) continue;
    const copy = /^COPY\s+(.+)$/i.exec(raw);
    if (copy) {
      const parts = (copy[1] as string).trim().split(/\s+/);
      const fromStage = parts[0]?.startsWith("--from=");
      const paths = parts.filter((p) => !p.startsWith("--"));
      const dest = paths.at(-1) as string;
      const sources = paths.slice(0, -1);
      if (!fromStage) current.copies.push(...sources.map((p) => p.replace(/\/$/, "")));
      for (const s of sources) {
        const intoDir = dest.endsWith("/") || sources.length > 1;
        current.copiedTo.push(intoDir ? `${dest.replace(/\/$/, "")}/${s.replace(/\/$/, "").split("/").pop()}` : dest);
      }
    }
    if (/^RUN\s/i.test(raw)) current.packages.push(...aptInstalls(raw));
    const path = /^ENV\s+(?:.*\s)?PATH=(\S+)/i.exec(raw);
    if (path) current.pathDirs.push(...(path[1] as string).split(":").filter((d) => d.startsWith("/")));
  }
  const resolve = (name: string, seen: Set<string>): Stage | undefined => {
    const s = own.get(name);
    if (!s || seen.has(name)) return undefined;
    seen.add(name);
    const base = resolve(s.base, seen);
    return {
      base: base?.base ?? s.base,
      copies: [...s.copies, ...(base?.copies ?? [])],
      copiedTo: [...s.copiedTo, ...(base?.copiedTo ?? [])],
      packages: [...s.packages, ...(base?.packages ?? [])],
      pathDirs: [...s.pathDirs, ...(base?.pathDirs ?? [])],
    };
  };
  return new Map([...own.keys()].map((name) => [name, resolve(name, new Set()) as Stage]));
}

// ---------------------------------------------------------------------------------------------
// Images: what a compose service or a Kubernetes workload runs

interface ComposeService {
  image?: string;
  build?: { context?: string; dockerfile?: string; target?: string };
}
export const composeFile = () =>
  Bun.YAML.parse(read("compose.yaml")) as {
    services: Record<string, ComposeService>;
    volumes?: Record<string, unknown>;
  };

/** Where a compose service's or workload's image comes from: the product Dockerfile's target, or another Dockerfile. */
export type ImageSource =
  | { kind: "target"; target: ImageTarget }
  | { kind: "dockerfile"; path: string; stage: string }
  | { kind: "public"; image: string };

const TARGET_OF_IMAGE = new Map<string, ImageTarget>(
  Object.entries(IMAGES).map(([target, name]) => [name, target as ImageTarget]),
);
const imageName = (ref: string) => ref.replace(/[:@].*$/, "");

/** Where a compose service's image comes from (undefined: compose has no such service). */
export function composeImage(service: string, compose = composeFile()): ImageSource | undefined {
  const s = compose.services[service];
  if (!s) return undefined;
  const context = (s.build?.context ?? "").replace(/^\.\/?/, "").replace(/\/$/, "");
  if (s.build && context !== "")
    return { kind: "dockerfile", path: join(context, s.build.dockerfile ?? "Dockerfile"), stage: s.build.target ?? "" };
  const target = s.build?.target ?? TARGET_OF_IMAGE.get(imageName(s.image ?? ""));
  if (target && target in IMAGES) return { kind: "target", target: target as ImageTarget };
  return { kind: "public", image: s.image ?? "" };
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec?: {
    template?: { spec?: { containers?: { image: string }[] } };
    jobTemplate?: { spec: { template: { spec: { containers: { image: string }[] } } } };
  };
  data?: Record<string, string>;
}

/** The rendered prod overlay: the objects an operator's kubectl names. */
export function renderedProd(): K8sObject[] {
  const out = Bun.spawnSync(["kubectl", "kustomize", join(ROOT, "deploy/k8s/overlays/prod")]);
  if (out.exitCode !== 0) throw new Error(`kubectl kustomize failed: ${out.stderr.toString()}`);
  return out.stdout
    .toString()
    .split(/^---$/m)
    .map((doc) => Bun.YAML.parse(doc) as K8sObject)
    .filter(Boolean);
}

export const KIND: Record<string, string> = {
  deploy: "Deployment",
  deployment: "Deployment",
  deployments: "Deployment",
  cronjob: "CronJob",
  job: "Job",
};

/** The image of a workload's first container (a kubectl reference: kind/name), if the overlay renders it. */
export function k8sImage(objects: K8sObject[], ref: string): string | undefined {
  const [kind, name] = ref.split("/") as [string, string];
  const o = objects.find((x) => x.kind === KIND[kind.toLowerCase()] && x.metadata.name === name);
  return (
    o?.spec?.template?.spec?.containers?.[0]?.image ?? o?.spec?.jobTemplate?.spec.template.spec.containers[0]?.image
  );
}

/** The product image target a workload runs (images are named as in tools/images/names.ts). */
export const k8sTarget = (objects: K8sObject[], ref: string): ImageTarget | undefined => {
  const image = k8sImage(objects, ref);
  return image ? TARGET_OF_IMAGE.get(imageName(image)) : undefined;
};

/**
 * Per product image, what the runbooks' compose and kubectl forms run in it: the programs, and
 * the files `bun` runs (relative to the image's WORKDIR). tools/images.ts looks for them in the
 * built images.
 */
export function runbookImageNeeds(
  objects: K8sObject[] = renderedProd(),
): Map<ImageTarget, { programs: string[]; files: string[] }> {
  const compose = composeFile();
  const needs = new Map<ImageTarget, { programs: Set<string>; files: Set<string> }>();
  for (const inv of runbookInvocations()) {
    const target =
      inv.place.kind === "compose"
        ? (() => {
            const src = composeImage(inv.place.service, compose);
            return src?.kind === "target" ? src.target : undefined;
          })()
        : inv.place.kind === "kubectl"
          ? k8sTarget(objects, inv.place.ref)
          : undefined;
    if (!target) continue;
    const n = needs.get(target) ?? { programs: new Set(), files: new Set() };
    n.programs.add(inv.program);
    const file = inv.program === "bun" ? inv.args.find((a) => !a.startsWith("-")) : undefined;
    if (file && /\.[cm]?[jt]s$/.test(file)) n.files.add(file);
    needs.set(target, n);
  }
  return new Map(
    [...needs].map(([t, n]) => [t, { programs: [...n.programs].sort(), files: [...n.files].sort() }] as const),
  );
}
