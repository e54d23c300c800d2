// The figures the docs repeat from configuration must agree with it, and the measured ones are
// stated once: the scans topic's partitions and retention against TOPICS (shared/local-stack.ts,
// what the local stack creates the topic from) and compose.yaml's kafka-topics; the sustained rate
// of one box only in docs/benchmarks.md, which cost.md and capacity-plan.md link instead of
// restating (they had disagreed with it and with each other).
import { describe, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { defaultTopicRetentionHours } from "../../jobs/retention/config.ts";
import { TOPICS } from "../../shared/local-stack.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");

/** The lines of a markdown file outside code blocks, with their 1-based numbers. */
function prose(path: string): { line: number; text: string }[] {
  let inCode = false;
  return read(path)
    .split("\n")
    .flatMap((text, i) => {
      if (/^\s*(```|~~~)/.test(text)) {
        inCode = !inCode;
        return [];
      }
      return inCode ? [] : [{ line: i + 1, text }];
    });
}

const docs = [
  ...readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
  ...readdirSync(join(ROOT, "docs/runbooks"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/runbooks/${f}`),
];

const HOURS: Record<string, number> = { h: 1, hour: 1, hours: 1, day: 24, days: 24 };
const topicRetentionHours = Number(TOPICS.scans.config["retention.ms"]) / 3_600_000;
/** The local broker's default (tools/stack/kafka.ts), for a topic created without retention.ms. */
const brokerDefaultHours = Number(/"log\.retention\.hours=(\d+)"/.exec(read("tools/stack/kafka.ts"))?.[1]);
const composeTopics = Bun.YAML.parse(read("compose.yaml")) as {
  services: { "kafka-topics": { command: string | string[] } };
};
const composeTopicCommand = [composeTopics.services["kafka-topics"].command].flat().join(" ");
const scansCreate = /--topic scans\b[^&]*/.exec(composeTopicCommand)?.[0] ?? "";

/** Every Kafka retention a line of prose states, in hours, with whether it names the broker's default. */
function retentionClaims(path: string) {
  return prose(path)
    .filter((l) => /kafka|topic/i.test(l.text) && /retention|keeps/i.test(l.text))
    .flatMap((l) => {
      const brokerDefault = /default/i.test(l.text) && /broker/i.test(l.text);
      const durations = [...l.text.matchAll(/(?<![\d.])(\d+)\s*(h|hours?|days?)\b/g)].map(
        (m) => Number(m[1]) * (HOURS[m[2] as string] ?? Number.NaN),
      );
      const ms = [...l.text.matchAll(/\b(\d{6,})\s*ms\b/g)].map((m) => Number(m[1]) / 3_600_000);
      return [...durations, ...ms].map((hours) => ({ where: `${path}:${l.line}`, hours, brokerDefault, text: l.text }));
    });
}

describe("the scans topic's figures in the docs agree with TOPICS", () => {
  test("the sources agree: TOPICS, compose's kafka-topics, the maintain job's default", () => {
    expect(topicRetentionHours).toBeGreaterThan(0);
    expect(brokerDefaultHours).toBeGreaterThan(0);
    expect(scansCreate).not.toBe("");
    expect({
      partitions: Number(/--partitions (\d+)/.exec(scansCreate)?.[1]),
      retentionMs: /retention\.ms=(\d+)/.exec(scansCreate)?.[1],
      maintainHours: defaultTopicRetentionHours(),
    }).toEqual({
      partitions: TOPICS.scans.partitions,
      retentionMs: TOPICS.scans.config["retention.ms"],
      maintainHours: topicRetentionHours,
    });
  });

  test("every Kafka retention stated in docs/ is the topic's (or, said so, the broker's default)", () => {
    const claims = docs.flatMap(retentionClaims);
    // The owner states it: operations.md's Retention section.
    expect(claims.some((c) => c.where.startsWith("docs/operations.md") && c.hours === topicRetentionHours)).toBe(true);
    const wrong = claims.filter((c) => c.hours !== (c.brokerDefault ? brokerDefaultHours : topicRetentionHours));
    expect(wrong.map((c) => `${c.where}: ${c.hours} h in "${c.text.trim()}"`)).toEqual([]);
  });

  test("the partition count is stated once, in capacity-plan.md's Partitions section, and is TOPICS'", () => {
    const counts = ["docs/capacity-plan.md", "docs/cost.md"].flatMap((path) =>
      prose(path).flatMap((l) =>
        [
          ...l.text.matchAll(
            /\b(\d+)\*{0,2}\s+(?:\(`scans`|partitions\b)|partitions[ |:]+\*{0,2}(\d+)\b|Default \*\*(\d+)\*\*/g,
          ),
        ].map((m) => ({ where: `${path}:${l.line}`, n: Number(m[1] ?? m[2] ?? m[3]) })),
      ),
    );
    expect(counts.map((c) => c.n)).toEqual([TOPICS.scans.partitions]);
    // A table column of partition counts restates it per row.
    expect(
      ["docs/capacity-plan.md", "docs/cost.md"].filter((p) => /^\|[^\n]*\bpartitions\b[^\n]*\|\s*$/im.test(read(p))),
    ).toEqual([]);
  });
});

describe("the partition count is not restated elsewhere: docs link capacity-plan.md's Partitions section", () => {
  const N = TOPICS.scans.partitions;
  // The count and the consumer one past it, as digits or words ("a twelfth of the events", "a
  // thirteenth consumer would get nothing").
  const WORDS = [
    "",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "twenty-one",
    "twenty-two",
    "twenty-three",
    "twenty-four",
    "twenty-five",
  ];
  const ORDINALS: Record<string, string> = {
    one: "first",
    two: "second",
    three: "third",
    five: "fifth",
    eight: "eighth",
    nine: "ninth",
    twelve: "twelfth",
  };
  const word = (n: number) => WORDS[n] ?? String(n);
  const ordinal = (n: number) =>
    ORDINALS[word(n)] ?? (word(n).endsWith("y") ? `${word(n).slice(0, -1)}ieth` : `${word(n)}th`);
  const forms = [word(N), ordinal(N), word(N + 1), ordinal(N + 1)].map((w) => w.replace("-", "[- ]"));
  // The digits on their own (not 112, 127.0.0.1, 1.2, 12:00, 9999-12-31, Debian 12, 12 ms), a
  // range's end included (1–12, 2 to 12).
  const digits = new RegExp(
    `(?<![\\d.,:]|\\d-|Debian )${N}(?!\\d|[.,:]\\d|\\s*(?:ms|s|µs|min|h|MiB|GiB|MB|GB|%|k)\\b)`,
  );
  const spelled = new RegExp(`\\b(?:${forms.join("|")})\\b`, "i");
  // What the count bounds: the topic's partitions, its consumers, the workers' replicas.
  const about = /\bpartitions?\b|\bconsumers?\b|\breplicas?\b|\bKEDA\b|\bworkers?\b/i;

  /** docs/*.md prose, with a table row read together with its header (which says what a column is). */
  function docLines(path: string) {
    const lines = prose(path);
    let header = "";
    return lines.map((l) => {
      if (!l.text.startsWith("|")) header = "";
      else if (!header) header = l.text;
      return { where: `${path}:${l.line}`, text: l.text, context: `${header} ${l.text}` };
    });
  }
  /**
   * Comments of deploy/** (YAML, systemd and cron files) and its markdown; not the files generated
   * or copied from elsewhere (their source's comments are its own).
   */
  function deployLines() {
    return readdirSync(join(ROOT, "deploy"), { recursive: true, encoding: "utf8" })
      .filter((f) => /\.(ya?ml|md|service|timer|cron)$/.test(f))
      .filter((f) => !f.startsWith("k8s/monitoring/alertmanager/") && !/^# GENERATED\b/.test(read(`deploy/${f}`)))
      .flatMap((f) => {
        const path = `deploy/${f}`;
        if (f.endsWith(".md")) return docLines(path);
        return read(path)
          .split("\n")
          .flatMap((text, i) => {
            const comment = /(?:^|\s)[#;]\s?(.*)$/.exec(text)?.[1];
            return comment === undefined ? [] : [{ where: `${path}:${i + 1}`, text: comment, context: comment }];
          });
      });
  }
  // capacity-plan.md's Partitions section states it (the test above); benchmarks.md records the
  // topics its runs used, which stay what they were when measured.
  const owner = (() => {
    const lines = read("docs/capacity-plan.md").split("\n");
    const start = lines.findIndex((l) => /^## Partitions\b/.test(l));
    const end = lines.findIndex((l, i) => i > start && /^## /.test(l));
    return (where: string) => {
      const [path, line] = where.split(":");
      return path === "docs/capacity-plan.md" && Number(line) > start && Number(line) <= end;
    };
  })();
  const restated = (lines: { where: string; text: string; context: string }[]) =>
    lines
      .filter((l) => !owner(l.where) && (spelled.test(l.text) || digits.test(l.text)) && about.test(l.context))
      .map((l) => `${l.where}: ${l.text.trim()}`);

  test("the detector finds the ways it has been restated", () => {
    const probe = (text: string) => restated([{ where: "probe", text, context: text }]);
    for (const text of [
      `- Kafka with the topics \`scans\` (${N} partitions) and \`analytics.errors\``,
      `# No replicas: KEDA owns the count (2 to ${N}).`,
      `# One consumer per partition at most: TOPICS.scans.partitions (${N}).`,
      `  **${N} = the partitions of \`scans\`** (a ${ordinal(N + 1)} consumer would get nothing)`,
      `would get whole partitions (a ${ordinal(N)} of the events per partition)`,
    ])
      expect(probe(text)).toHaveLength(1);
    for (const text of [
      `${N} ms per worker batch`,
      `partition ${N}0 of the topic`,
      `workers on Debian ${N} at 127.0.0.1`,
      `the partition of 9999-${N}-31`,
      `${word(N)} \`ConsumerStalled\` pages`,
    ])
      expect(probe(text)).toEqual([]);
  });

  test("no docs/*.md line outside capacity-plan.md's Partitions section, and no deploy/** comment, states it", () => {
    const docFiles = readdirSync(join(ROOT, "docs"))
      .filter((f) => f.endsWith(".md") && f !== "benchmarks.md")
      .map((f) => `docs/${f}`);
    expect(docFiles).toContain("docs/deployment.md");
    const found = [...docFiles.flatMap((p) => restated(docLines(p))), ...restated(deployLines())];
    expect(found).toEqual([]);
    // The docs that need the figure link it instead.
    expect(read("docs/deployment.md")).toContain("capacity-plan.md#partitions");
  });
});

describe("measured rates are stated once (docs/benchmarks.md)", () => {
  const claim =
    /\b(held|holds|handled|fits|sustain\w*)\b[^.\n|]{0,40}?\d[\d,.]*\s*k?\s*(events\/s|\/s)|\d[\d,.]*\s*k?\s*(events\/s|\/s)[^.\n|]{0,40}?\b(held|fits)\b/i;

  test("benchmarks.md states what one box held; cost.md and capacity-plan.md link it instead", () => {
    expect(prose("docs/benchmarks.md").some((l) => claim.test(l.text))).toBe(true);
    const restated = ["docs/cost.md", "docs/capacity-plan.md"].flatMap((p) =>
      prose(p)
        .filter((l) => claim.test(l.text))
        .map((l) => `${p}:${l.line}: ${l.text.trim()}`),
    );
    expect(restated).toEqual([]);
    for (const p of ["docs/cost.md", "docs/capacity-plan.md"]) expect(read(p)).toContain("benchmarks.md#capacity-runs");
  });
});
