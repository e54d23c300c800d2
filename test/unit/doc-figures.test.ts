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
