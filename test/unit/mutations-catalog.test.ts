// The mutation tooling's own checks: every hand-made mutation in tools/mutations/catalog.ts still
// applies (its find text occurs exactly once in its file) and names killer tests that exist;
// docs/guarantees.md's table is the catalog's rendering; Stryker's targets and tests exist, and its
// threshold is enforced (a break of 0 would let any score pass). Re-running the mutations against
// the stack is tools/mutations/run.ts' job (CI runs the changed ones, a schedule all of them).
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import strykerConfig from "../../stryker.config.ts";
import { catalog } from "../../tools/mutations/catalog.ts";
import { catalogProblems, fingerprint } from "../../tools/mutations/run.ts";
import { PAGE, renderPage } from "../../tools/mutations/table.ts";
import { allTests, targets, testsFor } from "../../tools/stryker/targets.ts";

describe("hand-made mutations", () => {
  test("every entry applies to today's code and names killers that exist", () => {
    expect(catalog.length).toBeGreaterThan(0);
    expect(catalogProblems(catalog)).toEqual([]);
  });

  test("the checker reports a stale, ambiguous or broken entry", () => {
    const good = catalog[0] as (typeof catalog)[number];
    const problems = catalogProblems([
      { ...good, id: "gone", find: "this text is in no file, so the mutation is stale" },
      { ...good, id: "twice", file: "package.json", find: '"' },
      { ...good, id: "Bad Id", killers: ["test/unit/no-such.test.ts"], observed: " " },
      { ...good, id: "same", replace: good.find },
      { ...good, id: "same" },
    ]);
    expect(problems).toEqual([
      `gone: its find text occurs 0 times in ${good.file} (must be once)`,
      expect.stringMatching(/^twice: its find text occurs \d+ times in package\.json \(must be once\)$/),
      "Bad Id: id is not kebab-case",
      "Bad Id: killer test/unit/no-such.test.ts does not exist",
      "Bad Id: observed is empty",
      "same: replace equals find",
      "same: id used twice",
    ]);
  });

  test("every entry says what it was seen to do", () => {
    for (const m of catalog) expect([m.id, m.observed]).not.toEqual([m.id, "TODO"]);
  });

  test("a fingerprint changes with the guarded file's edit and the killers' list", () => {
    const m = catalog[0] as (typeof catalog)[number];
    expect(fingerprint(m)).toBe(fingerprint({ ...m }));
    expect(fingerprint({ ...m, replace: `${m.replace} ` })).not.toBe(fingerprint(m));
    expect(fingerprint({ ...m, killers: [...m.killers, "test/unit/auth.test.ts"] })).not.toBe(fingerprint(m));
  });

  test(`${PAGE}'s table is generated from the catalog (run \`bun tools/mutations/table.ts\`)`, () => {
    const page = readFileSync(PAGE, "utf8");
    expect(renderPage(page, catalog)).toBe(page);
    for (const m of catalog) expect(page).toContain(`| \`${m.id}\` |`);
  });
});

describe("Stryker", () => {
  test("every mutated module and every test it runs exists; each module has its tests", () => {
    expect(strykerConfig.mutate).toEqual(Object.keys(targets));
    for (const [file, tests] of Object.entries(targets)) {
      expect([file, existsSync(file)]).toEqual([file, true]);
      expect(tests.length).toBeGreaterThan(0);
      for (const t of tests) expect([t, existsSync(t)]).toEqual([t, true]);
    }
    expect(testsFor("/anywhere/sandbox/server/body.ts")).toEqual(targets["server/body.ts"] as string[]);
    expect(() => testsFor("server/app.ts")).toThrow("lists no tests for server/app.ts");
    expect(new Set(allTests()).size).toBe(allTests().length);
  });

  test("the score is enforced: a break threshold above 0 and within the low mark", () => {
    const { thresholds } = strykerConfig as { thresholds: { break: number; low: number; high: number } };
    expect(thresholds.break).toBeGreaterThan(0);
    expect(thresholds.break).toBeLessThanOrEqual(thresholds.low);
    expect(strykerConfig.testRunner).toBe("bun");
  });
});
