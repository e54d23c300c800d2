// Promtail cannot run on the project's machines (no Debian package, no registry), so this evaluates
// monitoring/promtail/config.yaml and the Kubernetes DaemonSet's deploy/k8s/monitoring/promtail-config.yaml
// the way promtail 3.3 does, for the tests: the targets' relabeling (Prometheus's relabel rules), what
// the Docker target adds to each entry, the pods Kubernetes discovery finds and the kubelet's files
// the file target tails, and the pipeline stages. It implements only what the configs use, each as
// promtail's source does it (clients/pkg/logentry/stages/*.go, clients/pkg/promtail/targets/docker/target.go,
// targets/file/filetargetmanager.go, Prometheus's discovery/kubernetes/pod.go), and refuses
// any other stage, option, relabel action or discovery setting with PromtailUnsupported, so the
// config cannot come to rely on something these tests would silently ignore.
// Timestamps are nanoseconds since the epoch (bigint), as promtail keeps them.
import { readFileSync } from "node:fs";

export type Labels = Record<string, string>;

/** The config uses something this evaluator does not implement: implement it here before using it. */
export class PromtailUnsupported extends Error {
  override name = "PromtailUnsupported";
  constructor(where: string, what: string) {
    super(
      `${where}: ${what} is not implemented by test/helpers/promtail-pipeline.ts, so no test could check it; implement it there (as promtail does) first`,
    );
  }
}

/** The config is one promtail itself would refuse to load. */
export class PromtailConfigInvalid extends Error {
  override name = "PromtailConfigInvalid";
  constructor(where: string, what: string) {
    super(`${where}: ${what}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Small pieces: label names, Go regular expressions, Go number formatting.

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** model.LabelValue.IsValid: valid UTF-8 (in a JS string, no lone surrogate). */
const validLabelValue = (v: string) => !LONE_SURROGATE.test(v);

/**
 * A Go (RE2) regular expression as an equivalent JS one (flag u), fully anchored as Prometheus
 * anchors relabel regexes and label matchers: `^(?:…)$`. Refuses the RE2 syntax whose JS meaning
 * differs and that this does not translate (flags, \Q…\E, \p, POSIX classes, backreferences).
 */
export function goRegexp(source: string, where: string): RegExp {
  let out = "";
  let i = 0;
  const unsupported = (what: string) =>
    new PromtailUnsupported(where, `the regular expression syntax ${what} (in ${source})`);
  const translateEscape = (inClass: boolean): string => {
    const c = source[i + 1];
    if (c === undefined) throw new PromtailConfigInvalid(where, `trailing backslash in regex ${source}`);
    i += 2;
    if ("dDwWbBfnrtv".includes(c)) return `\\${c}`;
    if (c === "s") return inClass ? "\\t\\n\\f\\r " : "[\\t\\n\\f\\r ]"; // RE2's \s is ASCII; JS's is not
    if (c === "S" && !inClass) return "[^\\t\\n\\f\\r ]";
    if (c === "a") return "\\x07";
    if (c === "A" && !inClass) return "^";
    if (c === "z" && !inClass) return "$";
    if (c === "x") {
      const braced = /^\{([0-9a-fA-F]+)\}/.exec(source.slice(i));
      if (braced) {
        i += braced[0].length;
        return `\\u{${braced[1]}}`;
      }
      const two = /^[0-9a-fA-F]{2}/.exec(source.slice(i));
      if (!two) throw new PromtailConfigInvalid(where, `bad \\x escape in regex ${source}`);
      i += 2;
      return `\\x${two[0]}`;
    }
    if (/[!-/:-@[-`{-~]/.test(c)) return `\\${c}`; // escaped punctuation: the character itself
    throw unsupported(`\\${c}`);
  };
  while (i < source.length) {
    const c = source[i]!;
    if (c === "\\") {
      out += translateEscape(false);
    } else if (c === "[") {
      if (source.startsWith("[[:", i) || source.startsWith("[^[:", i)) throw unsupported("[[:class:]]");
      out += "[";
      i++;
      if (source[i] === "^") {
        out += "^";
        i++;
      }
      if (source[i] === "]") throw unsupported("a class starting with ]");
      while (i < source.length && source[i] !== "]") {
        if (source[i] === "\\") out += translateEscape(true);
        else if (source.startsWith("[:", i)) throw unsupported("[:class:]");
        else {
          out += source[i] === "[" ? "\\[" : source[i];
          i++;
        }
      }
      if (source[i] !== "]") throw new PromtailConfigInvalid(where, `unclosed [ in regex ${source}`);
      out += "]";
      i++;
    } else if (c === "(") {
      if (source.startsWith("(?:", i)) {
        out += "(?:";
        i += 3;
      } else if (source.startsWith("(?P<", i) || source.startsWith("(?<", i)) {
        const skip = source.startsWith("(?P<", i) ? 4 : 3;
        out += "(?<";
        i += skip;
      } else if (source.startsWith("(?", i)) {
        throw unsupported("(?…) flags or lookaround");
      } else {
        out += "(";
        i++;
      }
    } else if (c === ".") {
      out += "[^\\n]"; // RE2 without the s flag: any character but \n (JS's . also refuses \r, \u2028…)
      i++;
    } else if (c === "{") {
      const repeat = /^\{\d+(,\d*)?\}/.exec(source.slice(i));
      out += repeat ? repeat[0] : "\\{"; // RE2 takes a { that is no repetition literally
      i += repeat ? repeat[0].length : 1;
    } else if (c === "}") {
      out += "\\}";
      i++;
    } else {
      out += c;
      i++;
    }
  }
  try {
    return new RegExp(`^(?:${out})$`, "u");
  } catch (error) {
    throw new PromtailConfigInvalid(where, `bad regex ${source}: ${(error as Error).message}`);
  }
}

/** Go's Regexp.ExpandString: $1, ${1}, $name, ${name}; $$ is a $; an unknown group is "". */
function expandTemplate(template: string, match: RegExpExecArray): string {
  let out = "";
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c !== "$") {
      out += c;
      continue;
    }
    if (template[i + 1] === "$") {
      out += "$";
      i++;
      continue;
    }
    const m = /^\{([A-Za-z0-9_]+)\}|^([A-Za-z0-9_]+)/.exec(template.slice(i + 1));
    if (!m) {
      out += "$"; // malformed: Go keeps the $ as text
      continue;
    }
    const name = (m[1] ?? m[2])!;
    i += m[0].length;
    const value = /^\d+$/.test(name) ? match[Number(name)] : match.groups?.[name];
    out += value ?? "";
  }
  return out;
}

/** strconv.FormatFloat(f, 'f', -1, 64): the shortest representation, never in exponent form. */
function goFormatFloat(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "+Inf" : "-Inf";
  if (Object.is(x, -0)) return "-0";
  const s = String(x);
  const e = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!e) return s;
  const [, sign, lead, rest = "", expText] = e;
  const digits = lead! + rest;
  const point = 1 + Number(expText);
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** stages/util.go getString: numbers, strings and booleans; anything else (null, objects) fails. */
function getString(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number") return goFormatFloat(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Time: Go's layouts that the config may use, to nanoseconds since the epoch.

const INT64_MAX = 2n ** 63n - 1n;
/** strconv.ParseInt(s, 10, 64). */
function parseInt64(s: string): bigint | undefined {
  if (!/^[+-]?\d+$/.test(s)) return undefined;
  const v = BigInt(s);
  return v > INT64_MAX || v < -INT64_MAX - 1n ? undefined : v;
}

/**
 * time.Parse with layout RFC3339 or RFC3339Nano (Go accepts a fractional second with either):
 * 2006-01-02T15:04:05[.fraction](Z|±07:00).
 */
export function parseRfc3339(s: string): bigint | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))$/.exec(s);
  if (!m) return undefined;
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || h > 23 || mi > 59 || se > 59) return undefined;
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, se, 0);
  if (date.getUTCDate() !== d) return undefined; // e.g. February 30
  let ns = BigInt(date.getTime()) * 1_000_000n + BigInt((m[7] ?? "").padEnd(9, "0") || "0");
  if (m[8] !== "Z") {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) return undefined;
    const offset = BigInt((oh * 60 + om) * 60) * 1_000_000_000n;
    ns += m[9] === "+" ? -offset : offset;
  }
  return ns;
}

type TimeParser = (s: string) => bigint | undefined;

/** stages/util.go convertDateLayout, for the predefined formats this implements. */
function timeParser(format: string, where: string): TimeParser {
  switch (format) {
    case "RFC3339":
    case "RFC3339Nano":
      return parseRfc3339;
    case "Unix":
      return (s) => {
        if (s.split(".").length === 2) {
          const [sec, frac] = s.split(".") as [string, string];
          const secs = parseInt64(sec);
          const fracs = parseInt64(frac);
          if (secs === undefined || fracs === undefined) return undefined;
          // int64(float64(frac) * 10^(9-len(frac))), as Go computes it
          const nsec = BigInt(Math.trunc(Number(fracs) * 10 ** (9 - frac.length)));
          return secs * 1_000_000_000n + nsec;
        }
        const secs = parseInt64(s);
        return secs === undefined ? undefined : secs * 1_000_000_000n;
      };
    case "UnixMs":
      return (s) => {
        const v = parseInt64(s);
        return v === undefined ? undefined : v * 1_000_000n;
      };
    case "UnixUs":
      return (s) => {
        const v = parseInt64(s);
        return v === undefined ? undefined : v * 1_000n;
      };
    case "UnixNs":
      return parseInt64;
    default:
      throw new PromtailUnsupported(where, `the timestamp format ${JSON.stringify(format)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Relabeling (prometheus/model/relabel): what promtail applies to discovered labels.

interface RelabelRule {
  action: "replace" | "keep" | "drop" | "labeldrop" | "labelkeep";
  sourceLabels: string[];
  separator: string;
  regex: RegExp;
  targetLabel: string;
  replacement: string;
}

function only(where: string, config: Record<string, unknown>, known: string[], what = "option"): void {
  for (const key of Object.keys(config)) {
    if (!known.includes(key)) throw new PromtailUnsupported(where, `the ${what} ${JSON.stringify(key)}`);
  }
}

function asObject(where: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new PromtailConfigInvalid(where, `expected a mapping, got ${JSON.stringify(value)}`);
  return value as Record<string, unknown>;
}

function asString(where: string, value: unknown): string {
  if (typeof value !== "string")
    throw new PromtailConfigInvalid(where, `expected a string, got ${JSON.stringify(value)}`);
  return value;
}

function parseRelabel(where: string, raw: unknown): RelabelRule {
  const config = asObject(where, raw);
  only(where, config, ["source_labels", "separator", "regex", "target_label", "replacement", "action"]);
  const action = (config.action === undefined ? "replace" : asString(where, config.action)).toLowerCase();
  if (!["replace", "keep", "drop", "labeldrop", "labelkeep"].includes(action))
    throw new PromtailUnsupported(where, `the relabel action ${JSON.stringify(action)}`);
  const sourceLabels = (config.source_labels ?? []) as unknown[];
  if (!Array.isArray(sourceLabels)) throw new PromtailConfigInvalid(where, "source_labels must be a list");
  for (const l of sourceLabels)
    if (!LABEL_NAME.test(asString(where, l))) throw new PromtailConfigInvalid(where, `bad source label ${l}`);
  const rule: RelabelRule = {
    action: action as RelabelRule["action"],
    sourceLabels: sourceLabels as string[],
    separator: config.separator === undefined ? ";" : asString(where, config.separator),
    regex: goRegexp(config.regex === undefined ? "(.*)" : asString(where, config.regex), where),
    targetLabel: config.target_label === undefined ? "" : asString(where, config.target_label),
    replacement: config.replacement === undefined ? "$1" : asString(where, config.replacement),
  };
  // relabel.Config.Validate, for these actions.
  if (rule.action === "replace") {
    if (rule.targetLabel === "") throw new PromtailConfigInvalid(where, "replace requires target_label");
    const valid = rule.targetLabel.includes("$")
      ? /^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$/.test(rule.targetLabel)
      : LABEL_NAME.test(rule.targetLabel);
    if (!valid)
      throw new PromtailConfigInvalid(where, `${JSON.stringify(rule.targetLabel)} is an invalid target_label`);
  }
  if (
    (rule.action === "labeldrop" || rule.action === "labelkeep") &&
    Object.keys(config).some((k) => k !== "regex" && k !== "action")
  )
    throw new PromtailConfigInvalid(where, `${rule.action} takes only regex`);
  return rule;
}

/** relabel.Process: the labels after the rules, or null when a keep/drop rule drops the target. */
function relabel(labels: Labels, rules: RelabelRule[]): Labels | null {
  const lb = new Map(Object.entries(labels).filter(([, v]) => v !== ""));
  for (const rule of rules) {
    const value = rule.sourceLabels.map((l) => lb.get(l) ?? "").join(rule.separator);
    switch (rule.action) {
      case "keep":
        if (!rule.regex.test(value)) return null;
        break;
      case "drop":
        if (rule.regex.test(value)) return null;
        break;
      case "replace": {
        const match = rule.regex.exec(value);
        if (!match) break;
        const target = expandTemplate(rule.targetLabel, match);
        if (!LABEL_NAME.test(target)) break;
        const result = expandTemplate(rule.replacement, match);
        if (result === "") lb.delete(target);
        else lb.set(target, result);
        break;
      }
      case "labeldrop":
        for (const name of [...lb.keys()]) if (rule.regex.test(name)) lb.delete(name);
        break;
      case "labelkeep":
        for (const name of [...lb.keys()]) if (!rule.regex.test(name)) lb.delete(name);
        break;
    }
  }
  return Object.fromEntries(lb);
}

/** What promtail keeps of a target's labels: the ones not starting with __. */
const publicLabels = (labels: Labels): Labels =>
  Object.fromEntries(Object.entries(labels).filter(([name]) => !name.startsWith("__")));

// ---------------------------------------------------------------------------------------------
// LogQL stream selectors (the match stage's): {name op "value", …} with =, !=, =~, !~.

interface Matcher {
  name: string;
  op: "=" | "!=" | "=~" | "!~";
  value: string;
  regex?: RegExp;
}

/** strconv.Unquote for a "…" or `…` string. */
function goUnquote(token: string, where: string): string {
  if (token.startsWith("`")) return token.slice(1, -1);
  let out = "";
  const body = token.slice(1, -1);
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = body[++i];
    const simple: Record<string, string> = {
      a: "\x07",
      b: "\b",
      f: "\f",
      n: "\n",
      r: "\r",
      t: "\t",
      v: "\v",
      "\\": "\\",
      '"': '"',
    };
    if (e !== undefined && e in simple) out += simple[e];
    else if (e === "x" || e === "u" || e === "U") {
      const n = e === "x" ? 2 : e === "u" ? 4 : 8;
      const hex = body.slice(i + 1, i + 1 + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(hex))
        throw new PromtailConfigInvalid(where, `bad escape in ${token}`);
      out += String.fromCodePoint(Number.parseInt(hex, 16));
      i += n;
    } else throw new PromtailUnsupported(where, `the string escape \\${e} (in ${token})`);
  }
  return out;
}

export function parseSelector(selector: string, where: string): Matcher[] {
  const tokens: string[] = [];
  const re = /\s+|([A-Za-z_][A-Za-z0-9_]*)|("(?:[^"\\\n]|\\.)*"|`[^`]*`)|(!=|=~|!~|\|=|\|~|[{},=])|(.)/gy;
  for (let m = re.exec(selector); m; m = re.exec(selector)) {
    if (m[4] !== undefined) throw new PromtailConfigInvalid(where, `unexpected ${m[4]} in selector ${selector}`);
    if (m[1] ?? m[2] ?? m[3]) tokens.push(m[0]);
  }
  const fail = (what: string) => new PromtailConfigInvalid(where, `invalid selector ${selector}: ${what}`);
  if (tokens[0] !== "{") throw fail("it must start with {");
  const matchers: Matcher[] = [];
  let i = 1;
  for (;;) {
    const [name, op, value] = [tokens[i], tokens[i + 1], tokens[i + 2]];
    if (!name || !LABEL_NAME.test(name)) throw fail(`expected a label name at ${name}`);
    if (!op || !["=", "!=", "=~", "!~"].includes(op)) throw fail(`expected =, !=, =~ or !~ after ${name}`);
    if (!value || !/^["`]/.test(value)) throw fail(`expected a quoted value after ${name}${op}`);
    const matcher: Matcher = { name, op: op as Matcher["op"], value: goUnquote(value, where) };
    if (op === "=~" || op === "!~") matcher.regex = goRegexp(matcher.value, where);
    matchers.push(matcher);
    i += 3;
    if (tokens[i] === ",") {
      i++;
      continue;
    }
    if (tokens[i] !== "}") throw fail("expected , or }");
    break;
  }
  if (i + 1 < tokens.length)
    throw new PromtailUnsupported(where, `line filters after the stream selector (${tokens.slice(i + 1).join(" ")})`);
  return matchers;
}

function matches(matchers: Matcher[], labels: Labels): boolean {
  return matchers.every((m) => {
    const v = labels[m.name] ?? "";
    switch (m.op) {
      case "=":
        return v === m.value;
      case "!=":
        return v !== m.value;
      case "=~":
        return m.regex!.test(v);
      case "!~":
        return !m.regex!.test(v);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Pipeline stages (clients/pkg/logentry/stages).

interface Entry {
  labels: Labels;
  extracted: Record<string, unknown>;
  timeNs: bigint;
  line: string;
  /** Whether a json stage parsed the line itself (not an extracted value). */
  jsonParsed: boolean;
}

type Stage = (e: Entry) => Entry | null;

/** A JMESPath expression of plain field names, a.b or "a-b".c: the only kind this implements. */
function jmesPath(expression: string, where: string): string[] {
  const segment = /([A-Za-z_][A-Za-z0-9_]*)|"((?:[^"\\]|\\.)*)"/y;
  const path: string[] = [];
  let i = 0;
  for (;;) {
    segment.lastIndex = i;
    const m = segment.exec(expression);
    if (!m) throw new PromtailUnsupported(where, `the JMESPath expression ${JSON.stringify(expression)}`);
    path.push(m[1] ?? JSON.parse(`"${m[2]}"`));
    i = segment.lastIndex;
    if (i === expression.length) return path;
    if (expression[i] !== ".")
      throw new PromtailUnsupported(where, `the JMESPath expression ${JSON.stringify(expression)}`);
    i++;
  }
}

/** json-iterator's Marshal of what an expression found, for an object or a list (HTML escaped). */
const goJsonMarshal = (v: unknown) =>
  JSON.stringify(v).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

function jsonStage(where: string, raw: unknown): Stage {
  const config = asObject(where, raw);
  only(where, config, ["expressions", "source", "drop_malformed"]);
  const expressions = asObject(`${where}.expressions`, config.expressions ?? {});
  if (Object.keys(expressions).length === 0) throw new PromtailConfigInvalid(where, "JMES expression is required");
  const paths = Object.entries(expressions).map(
    ([name, e]) => [name, jmesPath(e === null || e === "" ? name : asString(where, e), where)] as const,
  );
  const source = config.source === undefined ? undefined : asString(where, config.source);
  if (source === "") throw new PromtailConfigInvalid(where, "empty source");
  const dropMalformed = config.drop_malformed === true;
  return (e) => {
    let input = e.line;
    if (source !== undefined) {
      if (!(source in e.extracted)) return e;
      const s = getString(e.extracted[source]);
      if (s === undefined) return e;
      input = s;
    }
    let data: unknown;
    try {
      data = JSON.parse(input);
    } catch {
      return dropMalformed ? null : e;
    }
    // Unmarshalled into a map: anything but an object (or null) is malformed.
    if (data !== null && (typeof data !== "object" || Array.isArray(data))) return dropMalformed ? null : e;
    for (const [name, path] of paths) {
      let v: unknown = data;
      for (const key of path)
        v =
          v !== null && typeof v === "object" && !Array.isArray(v) && Object.hasOwn(v, key) ? (v as never)[key] : null;
      e.extracted[name] = v !== null && typeof v === "object" ? goJsonMarshal(v) : v;
    }
    if (source === undefined) e.jsonParsed = true;
    return e;
  };
}

function labelsStage(where: string, raw: unknown): Stage {
  const config = asObject(where, raw);
  const sources = Object.entries(config).map(([name, src]) => {
    if (!LABEL_NAME.test(name)) throw new PromtailConfigInvalid(where, `invalid label name: ${name}`);
    return [name, src === null || src === "" ? name : asString(where, src)] as const;
  });
  if (sources.length === 0) throw new PromtailConfigInvalid(where, "label stage config cannot be empty");
  return (e) => {
    for (const [name, src] of sources) {
      if (!(src in e.extracted)) continue;
      const value = getString(e.extracted[src]);
      if (value === undefined || !validLabelValue(value)) continue;
      e.labels[name] = value;
    }
    return e;
  };
}

const labelsKey = (labels: Labels) =>
  Object.entries(labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(",");

function timestampStage(where: string, raw: unknown): Stage {
  const config = asObject(where, raw);
  only(where, config, ["source", "format", "fallback_formats", "action_on_failure"]);
  const source = config.source === undefined ? "" : asString(where, config.source);
  if (source === "") throw new PromtailConfigInvalid(where, "timestamp source value is required");
  const format = config.format === undefined ? "" : asString(where, config.format);
  if (format === "") throw new PromtailConfigInvalid(where, "timestamp format is required");
  const fallbacks = ((config.fallback_formats ?? []) as unknown[]).map((f) => timeParser(asString(where, f), where));
  const parsers = [timeParser(format, where), ...fallbacks];
  const onFailure = config.action_on_failure === undefined ? "fudge" : asString(where, config.action_on_failure);
  if (onFailure !== "fudge" && onFailure !== "skip")
    throw new PromtailConfigInvalid(where, "action_on_failure must be skip or fudge");
  // fudge: an entry whose time cannot be parsed gets the last parsed time of its label set + 1 ns
  // (promtail keeps up to 10000 label sets; these tests never reach that).
  const lastKnown = new Map<string, bigint>();
  return (e) => {
    const s = source in e.extracted ? getString(e.extracted[source]) : undefined;
    let parsed: bigint | undefined;
    if (s !== undefined)
      for (const p of parsers) {
        parsed = p(s);
        if (parsed !== undefined) break;
      }
    const key = labelsKey(e.labels);
    if (parsed === undefined) {
      const last = onFailure === "fudge" ? lastKnown.get(key) : undefined;
      if (last !== undefined) {
        e.timeNs = last + 1n;
        lastKnown.set(key, e.timeNs);
      }
      return e;
    }
    e.timeNs = parsed;
    if (onFailure === "fudge") lastKnown.set(key, parsed);
    return e;
  };
}

/** RE2's \S (ASCII whitespace only), for the cri stage's expression. */
const CRI_LINE = /^([^\t\n\f\r ]+?) (stdout|stderr) ([^\t\n\f\r ]+?) ([\s\S]*)$/;

/**
 * stages/extensions.go NewCRI: the kubelet's log format `<RFC3339Nano time> <stream> <flags> <content>`.
 * Its base pipeline (regex, labels {stream}, timestamp {time, RFC3339Nano}, output {content}) as
 * those stages do it, then the partial lines: a line flagged P is held (this returns null for it)
 * and prefixed to the next line of the same label set (no separator), which is pushed with the
 * last part's time. A line that is not in the format passes as it is. Its options
 * (max_partial_lines and the size limits) are not modeled: refused.
 */
function criStage(where: string, raw: unknown): Stage {
  only(where, raw === null || raw === undefined ? {} : asObject(where, raw), []);
  const stream = labelsStage(where, { stream: null });
  const timestamp = timestampStage(where, { source: "time", format: "RFC3339Nano" });
  const partial = new Map<string, string>();
  return (e) => {
    const m = CRI_LINE.exec(e.line);
    if (m) Object.assign(e.extracted, { time: m[1], stream: m[2], flags: m[3], content: m[4] });
    timestamp(stream(e)!);
    if ("content" in e.extracted) {
      const content = getString(e.extracted.content);
      if (content !== undefined) e.line = content;
    }
    const key = labelsKey(e.labels);
    if (e.extracted.flags === "P") {
      partial.set(key, (partial.get(key) ?? "") + e.line);
      return null;
    }
    const held = partial.get(key);
    if (held !== undefined) {
      e.line = held + e.line;
      partial.delete(key);
    }
    return e;
  };
}

class Pipeline {
  private readonly stages: Stage[];
  constructor(where: string, raw: unknown) {
    if (!Array.isArray(raw)) throw new PromtailConfigInvalid(where, "pipeline_stages must be a list");
    this.stages = raw.map((item, index) => {
      const stage = asObject(`${where}[${index}]`, item);
      const names = Object.keys(stage);
      if (names.length !== 1) throw new PromtailConfigInvalid(`${where}[${index}]`, "a stage has exactly one key");
      const name = names[0]!;
      const at = `${where}[${index}].${name}`;
      switch (name) {
        case "json":
          return jsonStage(at, stage[name]);
        case "labels":
          return labelsStage(at, stage[name]);
        case "timestamp":
          return timestampStage(at, stage[name]);
        case "match":
          return matchStage(at, stage[name]);
        case "cri":
          return criStage(at, stage[name]);
        default:
          throw new PromtailUnsupported(at, `the stage ${JSON.stringify(name)}`);
      }
    });
  }

  /** Pipeline.Run: the entry's labels are copied into the extracted map first, then each stage. */
  run(e: Entry): Entry | null {
    for (const [name, value] of Object.entries(e.labels)) e.extracted[name] = value;
    let current: Entry | null = e;
    for (const stage of this.stages) {
      current = stage(current);
      if (!current) return null;
    }
    return current;
  }
}

function matchStage(where: string, raw: unknown): Stage {
  const config = asObject(where, raw);
  only(where, config, ["selector", "stages", "action", "pipeline_name", "drop_counter_reason"]);
  const selector = config.selector === undefined ? "" : asString(where, config.selector);
  if (selector === "") throw new PromtailConfigInvalid(where, "selector statement required for match stage");
  const action = config.action === undefined ? "keep" : asString(where, config.action);
  const stages = (config.stages ?? []) as unknown[];
  if (action !== "keep" && action !== "drop") throw new PromtailConfigInvalid(where, "action must be keep or drop");
  if (action === "keep" && stages.length === 0)
    throw new PromtailConfigInvalid(where, "match stage requires at least one additional stage");
  if (action === "drop" && stages.length > 0)
    throw new PromtailConfigInvalid(where, "a match stage that drops entries cannot contain stages");
  const matchers = parseSelector(selector, where);
  const pipeline = action === "keep" ? new Pipeline(`${where}.stages`, stages) : undefined;
  return (e) => {
    if (!matches(matchers, e.labels)) return e;
    return pipeline ? pipeline.run(e) : null;
  };
}

// ---------------------------------------------------------------------------------------------
// The config: jobs, their targets' labels, their pipelines.

/** The __meta_docker_* labels this models (docker_sd_configs + the Docker target's log stream). */
const DOCKER_META = /^__meta_docker_container_(id|name|network_mode|log_stream|label_[a-zA-Z0-9_]+)$/;

/**
 * The __meta_kubernetes_* labels this models: Prometheus's pod role (discovery/kubernetes/pod.go),
 * the pod's and each container's (the endpoint slice and node ones are not).
 */
const KUBERNETES_META =
  /^__meta_kubernetes_(namespace|pod_(name|ip|uid|node_name|host_ip|ready|phase|controller_kind|controller_name|container_(name|image|init|port_name|port_number|port_protocol)|(label|labelpresent|annotation|annotationpresent)_[a-zA-Z0-9_]+))$/;

interface Job {
  name: string;
  kind: "docker" | "static" | "kubernetes";
  relabel: RelabelRule[];
  pipeline: Pipeline;
  staticConfigs: { targets: string[]; labels: Labels }[];
}

export interface PushedEntry {
  labels: Labels;
  timestampNs: bigint;
  line: string;
  /** Whether a json stage parsed the line. */
  jsonParsed: boolean;
}

export class PromtailConfig {
  private readonly jobs = new Map<string, Job>();

  constructor(text: string, origin = "promtail config") {
    const root = asObject(origin, Bun.YAML.parse(text));
    // clients' external_labels or limits_config would change what is pushed: refused, not ignored.
    only(origin, root, ["server", "positions", "clients", "scrape_configs"], "top-level section");
    for (const [i, client] of ((root.clients ?? []) as unknown[]).entries())
      only(`${origin}: clients[${i}]`, asObject(`${origin}: clients[${i}]`, client), ["url"]);
    const scrapeConfigs = root.scrape_configs;
    if (!Array.isArray(scrapeConfigs)) throw new PromtailConfigInvalid(origin, "scrape_configs must be a list");
    for (const raw of scrapeConfigs) {
      const sc = asObject(`${origin}: scrape_configs`, raw);
      const name = asString(`${origin}: scrape_configs[].job_name`, sc.job_name);
      const where = `${origin}: job ${name}`;
      only(where, sc, [
        "job_name",
        "static_configs",
        "docker_sd_configs",
        "kubernetes_sd_configs",
        "relabel_configs",
        "pipeline_stages",
      ]);
      if (this.jobs.has(name)) throw new PromtailConfigInvalid(where, "duplicate job_name");
      const sources = (["docker_sd_configs", "kubernetes_sd_configs", "static_configs"] as const).filter(
        (k) => sc[k] !== undefined,
      );
      if (sources.length > 1) throw new PromtailUnsupported(where, `${sources.join(" and ")} in one job`);
      const kind =
        sc.docker_sd_configs !== undefined
          ? "docker"
          : sc.kubernetes_sd_configs !== undefined
            ? "kubernetes"
            : "static";
      const relabel = ((sc.relabel_configs ?? []) as unknown[]).map((r, i) =>
        parseRelabel(`${where}: relabel_configs[${i}]`, r),
      );
      const staticConfigs: Job["staticConfigs"] = [];
      if (kind === "docker") {
        // filters and the like change which containers are seen: not modeled.
        for (const [i, d] of (sc.docker_sd_configs as unknown[]).entries())
          only(`${where}: docker_sd_configs[${i}]`, asObject(where, d), ["host", "refresh_interval"]);
        for (const rule of relabel) {
          // The Docker target pushes an entry whose target was dropped with no labels at all
          // (which Loki refuses): keep/drop do not do what they seem to there.
          if (rule.action === "keep" || rule.action === "drop")
            throw new PromtailUnsupported(where, `relabel action ${rule.action} on a Docker target`);
          for (const l of rule.sourceLabels)
            if (l.startsWith("__") && !DOCKER_META.test(l))
              throw new PromtailUnsupported(where, `the discovered label ${l} (only container ones are modeled)`);
        }
      } else if (kind === "kubernetes") {
        // Only the pod role, on the cluster promtail runs in: namespaces, selectors, api_server and
        // attach_metadata change which pods or labels are seen, and are not modeled.
        const kube = sc.kubernetes_sd_configs as unknown[];
        if (!Array.isArray(kube) || kube.length !== 1)
          throw new PromtailUnsupported(where, "kubernetes_sd_configs other than one entry");
        const k = asObject(`${where}: kubernetes_sd_configs[0]`, kube[0]);
        only(`${where}: kubernetes_sd_configs[0]`, k, ["role"]);
        if (k.role !== "pod") throw new PromtailUnsupported(where, `the kubernetes_sd_configs role ${k.role}`);
        for (const rule of relabel)
          for (const l of rule.sourceLabels)
            if (l.startsWith("__meta_") && !KUBERNETES_META.test(l))
              throw new PromtailUnsupported(where, `the discovered label ${l} (not modeled)`);
      } else {
        for (const [i, s] of ((sc.static_configs ?? []) as unknown[]).entries()) {
          const at = `${where}: static_configs[${i}]`;
          const c = asObject(at, s);
          only(at, c, ["targets", "labels"]);
          const labels = asObject(at, c.labels ?? {});
          staticConfigs.push({
            targets: ((c.targets ?? []) as unknown[]).map((t) => asString(at, t)),
            labels: Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, asString(at, v)])),
          });
        }
      }
      const pipeline = new Pipeline(`${where}: pipeline_stages`, sc.pipeline_stages ?? []);
      this.jobs.set(name, { name, kind, relabel, pipeline, staticConfigs });
    }
  }

  private job(name: string): Job {
    const job = this.jobs.get(name);
    if (!job) throw new Error(`promtail config: no job ${JSON.stringify(name)} (jobs: ${[...this.jobs.keys()]})`);
    return job;
  }

  get jobNames(): string[] {
    return [...this.jobs.keys()];
  }

  /** The job's relabel_configs applied to discovered labels, __ labels dropped; null: target dropped. */
  targetLabels(jobName: string, discovered: Labels): Labels | null {
    const relabelled = relabel(discovered, this.job(jobName).relabel);
    return relabelled && publicLabels(relabelled);
  }

  /** A static job's targets' discovered labels (their labels, __address__), for targetLabels. */
  staticTargets(jobName: string): Labels[] {
    return this.job(jobName).staticConfigs.flatMap((c) => c.targets.map((t) => ({ ...c.labels, __address__: t })));
  }

  /**
   * The labels of an entry read from `filename` by a static job's file target: the target's
   * labels (the first target whose __path__ glob matches the file) and `filename`.
   */
  fileEntryLabels(jobName: string, filename: string): Labels {
    for (const discovered of this.staticTargets(jobName)) {
      const path = discovered.__path__;
      if (!path || !new Bun.Glob(path).match(filename)) continue;
      const labels = this.targetLabels(jobName, discovered);
      if (labels) return { filename, ...labels };
    }
    throw new Error(`promtail config: job ${jobName} reads no file ${filename}`);
  }

  /**
   * The labels of the entries a Kubernetes job reads from `container`'s file (its `restart`-th,
   * the kubelet's /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log) on the node
   * `hostname` (promtail's HOSTNAME): the first of the container's targets that relabeling keeps,
   * whose __host__ (if set) is that node and whose __path__ glob matches the file, plus
   * `filename`; null when no target tails it (another node's pod, a dropped one).
   */
  podEntryLabels(jobName: string, pod: Pod, container: string, hostname: string, restart = 0): Labels | null {
    const job = this.job(jobName);
    if (job.kind !== "kubernetes") throw new Error(`promtail config: job ${jobName} is not a kubernetes one`);
    const filename = `/var/log/pods/${pod.namespace}_${pod.name}_${pod.uid}/${container}/${restart}.log`;
    for (const discovered of kubernetesPodTargets(pod).filter(
      (t) => t.__meta_kubernetes_pod_container_name === container,
    )) {
      const relabelled = relabel(discovered, job.relabel);
      if (!relabelled) continue;
      if (relabelled.__host__ !== undefined && relabelled.__host__ !== hostname) continue;
      const path = relabelled.__path__;
      if (!path || !new Bun.Glob(path).match(filename)) continue;
      return { filename, ...publicLabels(relabelled) };
    }
    return null;
  }

  /**
   * The job's pipeline on one entry: what promtail pushes to Loki, or null if a stage dropped it
   * (or, the cri stage, held a partial line for the next).
   */
  runPipeline(jobName: string, labels: Labels, line: string, entryTimeNs: bigint): PushedEntry | null {
    const out = this.job(jobName).pipeline.run({
      labels: { ...labels },
      extracted: {},
      timeNs: entryTimeNs,
      line,
      jsonParsed: false,
    });
    return out && { labels: out.labels, timestampNs: out.timeNs, line: out.line, jsonParsed: out.jsonParsed };
  }
}

export function loadPromtailConfig(path: string): PromtailConfig {
  return new PromtailConfig(readFileSync(path, "utf8"), path);
}

// ---------------------------------------------------------------------------------------------
// Kubernetes: the targets kubernetes_sd_configs (role pod) discovers.

/** The parts of a pod (its manifest's metadata and spec, its status) discovery reads. */
export interface Pod {
  namespace: string;
  name: string;
  uid: string;
  nodeName: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  containers: { name: string; image?: string; ports?: { name?: string; containerPort: number; protocol?: string }[] }[];
  initContainers?: Pod["containers"];
  controller?: { kind: string; name: string };
  podIP?: string;
  hostIP?: string;
  phase?: string;
  ready?: boolean;
}

/** strutil.SanitizeLabelName. */
const sanitize = (name: string) => name.replace(/[^a-zA-Z0-9_]/g, "_");

/**
 * Prometheus's discovery/kubernetes/pod.go buildPod: one target per container port, or one for a
 * container without ports, each with the pod's labels and the container's.
 */
export function kubernetesPodTargets(pod: Pod): Labels[] {
  const podLabels: Labels = {
    __meta_kubernetes_namespace: pod.namespace,
    __meta_kubernetes_pod_name: pod.name,
    __meta_kubernetes_pod_ip: pod.podIP ?? "10.244.1.17", // any pod address: no rule reads it
    __meta_kubernetes_pod_ready: String(pod.ready ?? true),
    __meta_kubernetes_pod_phase: pod.phase ?? "Running",
    __meta_kubernetes_pod_node_name: pod.nodeName,
    __meta_kubernetes_pod_host_ip: pod.hostIP ?? "192.168.1.10",
    __meta_kubernetes_pod_uid: pod.uid,
  };
  for (const [k, v] of Object.entries(pod.labels ?? {})) {
    podLabels[`__meta_kubernetes_pod_label_${sanitize(k)}`] = v;
    podLabels[`__meta_kubernetes_pod_labelpresent_${sanitize(k)}`] = "true";
  }
  for (const [k, v] of Object.entries(pod.annotations ?? {})) {
    podLabels[`__meta_kubernetes_pod_annotation_${sanitize(k)}`] = v;
    podLabels[`__meta_kubernetes_pod_annotationpresent_${sanitize(k)}`] = "true";
  }
  if (pod.controller) {
    podLabels.__meta_kubernetes_pod_controller_kind = pod.controller.kind;
    podLabels.__meta_kubernetes_pod_controller_name = pod.controller.name;
  }
  const ip = pod.podIP ?? "10.244.1.17";
  const targets: Labels[] = [];
  for (const [init, containers] of [
    [false, pod.containers],
    [true, pod.initContainers ?? []],
  ] as const) {
    for (const c of containers) {
      const container: Labels = {
        ...podLabels,
        __meta_kubernetes_pod_container_name: c.name,
        __meta_kubernetes_pod_container_image: c.image ?? "",
        __meta_kubernetes_pod_container_init: String(init),
      };
      if (!c.ports?.length) {
        targets.push({ ...container, __address__: ip });
        continue;
      }
      for (const p of c.ports)
        targets.push({
          ...container,
          __address__: `${ip}:${p.containerPort}`,
          __meta_kubernetes_pod_container_port_name: p.name ?? "",
          __meta_kubernetes_pod_container_port_number: String(p.containerPort),
          __meta_kubernetes_pod_container_port_protocol: p.protocol ?? "TCP",
        });
    }
  }
  return targets;
}

/** The kubelet's line for `content` (one line, no end of line): `<time> <stream> F|P <content>`. */
export function criLine(timeNs: bigint, stream: "stdout" | "stderr", content: string, flags: "F" | "P" = "F"): string {
  const iso = new Date(Number(timeNs / 1_000_000n)).toISOString().replace(/\.\d+Z$/, "");
  return `${iso}.${String(timeNs % 1_000_000_000n).padStart(9, "0")}Z ${stream} ${flags} ${content}`;
}

// ---------------------------------------------------------------------------------------------
// Docker: the labels docker_sd_configs discovers, and the entries the Docker target reads.

export interface ContainerLogs {
  /** `docker inspect`'s .Config.Labels. */
  labels: Record<string, string>;
  /** The container's name (`docker inspect`'s .Name, "/main_server_1"; a name without / is taken as one). */
  name: string;
  id?: string;
  networkMode?: string;
  /** The engine's json-file records, in order: log (with its "\n" unless a partial), stream, time (RFC 3339). */
  lines: { log: string; stream: string; time: string }[];
}

/** prometheus/discovery/moby/docker.go's container labels (the network and port ones are not modeled). */
export function dockerDiscoveredLabels(c: Pick<ContainerLogs, "labels" | "name" | "id" | "networkMode">): Labels {
  const discovered: Labels = {
    __meta_docker_container_id: c.id ?? c.name.replace(/^\//, ""),
    __meta_docker_container_name: c.name.startsWith("/") ? c.name : `/${c.name}`,
    __meta_docker_container_network_mode: c.networkMode ?? "default",
  };
  for (const [k, v] of Object.entries(c.labels))
    discovered[`__meta_docker_container_label_${k.replace(/[^a-zA-Z0-9_]/g, "_")}`] = v;
  return discovered;
}

/** Promtail's line limit (max_line_size unset): a longer line is cut, which this does not model. */
const MAX_LINE = 256 * 1024;

/**
 * The entries the Docker target makes of a container's records (target.go process()): per
 * stream, a record without its end of line is a partial one, joined with the next of the same
 * time; the line loses its "\r\n"; its time is the engine's. Records of a line not yet ended are
 * held back (`pending`), as promtail holds them.
 */
export function dockerEntries(lines: ContainerLogs["lines"]): {
  entries: { stream: string; timeNs: bigint; line: string }[];
  pending: number;
} {
  const entries: { stream: string; timeNs: bigint; line: string }[] = [];
  const state = new Map<string, { acc: string; curTs: bigint | undefined; records: number }>();
  for (const record of lines) {
    const ts = parseRfc3339(record.time);
    if (ts === undefined) throw new Error(`docker log record with a bad time: ${JSON.stringify(record)}`);
    const s = state.get(record.stream) ?? { acc: "", curTs: undefined, records: 0 };
    state.set(record.stream, s);
    const emit = (timeNs: bigint, line: string) => {
      if (line.length > MAX_LINE)
        throw new PromtailUnsupported("docker target", "lines over 256 KiB (cut by promtail)");
      entries.push({ stream: record.stream, timeNs, line });
    };
    if (ts !== s.curTs && s.acc !== "") {
      emit(s.curTs!, s.acc);
      s.acc = "";
      s.records = 0;
    }
    const eol = record.log.endsWith("\n");
    const payload = record.log.replace(/[\r\n]+$/, "");
    if (s.acc === "" && eol) {
      emit(ts, payload);
      continue;
    }
    s.acc += payload;
    s.curTs = ts;
    s.records++;
    if (eol) {
      emit(ts, s.acc);
      s.acc = "";
      s.records = 0;
    }
  }
  const pending = [...state.values()].reduce((n, s) => n + (s.acc === "" ? 0 : s.records), 0);
  return { entries, pending };
}

export interface CheckedEntry {
  stream: string;
  /** The engine's time of the line. */
  dockerTimeNs: bigint;
  /** The line as read (promtail's input). */
  line: string;
  /** What promtail pushes for it; null when a stage dropped it. */
  pushed: PushedEntry | null;
}

export interface ContainerCheck {
  name: string;
  /** Labels docker_sd_configs discovers for the container. */
  discovered: Labels;
  entries: CheckedEntry[];
  /** json-file records given. */
  records: number;
  /** Records of a line not yet ended (promtail holds them until its end). */
  pending: number;
  /** Entries whose line is a JSON object. */
  jsonLines: number;
  /** Entries a json stage parsed. */
  jsonParsed: number;
  /** Entries a stage dropped. */
  dropped: number;
}

/**
 * What promtail (job `job` of `config`) would push for each container's real log records: the
 * compose test calls this with the running containers' labels and json-file records.
 */
export function checkContainerLines(
  config: PromtailConfig,
  containers: ContainerLogs[],
  job = "containers",
): ContainerCheck[] {
  return containers.map((c) => {
    const discovered = dockerDiscoveredLabels(c);
    const { entries, pending } = dockerEntries(c.lines);
    const checked: CheckedEntry[] = entries.map((e) => {
      // target.go handleOutput: the stream joins the discovered labels, then relabel_configs.
      const labels = config.targetLabels(job, { ...discovered, __meta_docker_container_log_stream: e.stream }) ?? {};
      return {
        stream: e.stream,
        dockerTimeNs: e.timeNs,
        line: e.line,
        pushed: config.runPipeline(job, labels, e.line, e.timeNs),
      };
    });
    return {
      name: c.name,
      discovered,
      entries: checked,
      records: c.lines.length,
      pending,
      jsonLines: checked.filter((e) => jsonObject(e.line) !== undefined).length,
      jsonParsed: checked.filter((e) => e.pushed?.jsonParsed).length,
      dropped: checked.filter((e) => e.pushed === null).length,
    };
  });
}

function jsonObject(line: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(line);
    return v !== null && typeof v === "object" && !Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Fields of the app's lines with one value per request, batch or process: never labels. */
export const HIGH_CARDINALITY_FIELDS = [
  "request_id",
  "client_request_id",
  "trace_id",
  "batch_id",
  "pid",
  "time",
  "msg",
  "offsets",
];

/**
 * What is wrong with the checked containers' logs in Loki, as sentences (none: all is well):
 *  - every entry is pushed (none dropped), with the compose service, project and container labels;
 *  - a JSON line of the app's services (`appServices`, compose service names) has labels `level`
 *    and `app` equal to its `level` and `service` fields, and its own `time` as its timestamp;
 *  - no high-cardinality field (HIGH_CARDINALITY_FIELDS) is a label;
 *  - a line that is not JSON is kept as it was, at the engine's time.
 */
export function containerLogProblems(checks: ContainerCheck[], appServices: string[]): string[] {
  const problems: string[] = [];
  for (const c of checks) {
    const service = c.discovered.__meta_docker_container_label_com_docker_compose_service;
    for (const e of c.entries) {
      const at = `${c.name} ${e.stream} ${JSON.stringify(e.line.slice(0, 80))}`;
      if (!e.pushed) {
        problems.push(`${at}: dropped`);
        continue;
      }
      const { labels, timestampNs, line } = e.pushed;
      if (line !== e.line) problems.push(`${at}: line changed to ${JSON.stringify(line.slice(0, 80))}`);
      if (labels.service !== service) problems.push(`${at}: service label ${labels.service}, not ${service}`);
      for (const l of ["project", "container", "stream", "job"]) if (!labels[l]) problems.push(`${at}: no ${l} label`);
      for (const f of HIGH_CARDINALITY_FIELDS) if (f in labels) problems.push(`${at}: ${f} is a label`);
      const json = jsonObject(e.line);
      if (json && service !== undefined && appServices.includes(service)) {
        if (!e.pushed.jsonParsed) problems.push(`${at}: JSON line not parsed`);
        if (labels.level !== json.level) problems.push(`${at}: level label ${labels.level}, line's ${json.level}`);
        if (labels.app !== json.service)
          problems.push(`${at}: app label ${labels.app}, line's service ${json.service}`);
        if (typeof json.time !== "number" || timestampNs !== BigInt(json.time) * 1_000_000n)
          problems.push(`${at}: timestamp ${timestampNs} ns, not the line's time ${json.time} ms`);
      } else if (timestampNs !== e.dockerTimeNs) {
        problems.push(`${at}: timestamp ${timestampNs} ns, not the engine's ${e.dockerTimeNs}`);
      }
    }
  }
  return problems;
}
