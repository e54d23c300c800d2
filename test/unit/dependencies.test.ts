// The dependency baseline (docs/security.md): the SBOM lists exactly bun.lock's packages, every
// license is on the allowlist, only the listed packages have install scripts (and only biome's
// runs), and the audit script tells "vulnerable" from "could not ask".
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json";
import { EXIT_CODES, classify } from "../../tools/audit-deps.ts";
import { ALLOWED_LICENSES, disallowed, expressionAllowed } from "../../tools/licenses.ts";
import { componentId, generateSbom, installableHere, lockPackages } from "../../tools/sbom.ts";

const sorted = (xs: Iterable<string>) => [...xs].sort();

describe("SBOM (bun run sbom)", () => {
  const out = join(mkdtempSync(join(tmpdir(), "sbom-")), "bom.cdx.json");
  const components = generateSbom(out);

  test("lists exactly the packages (name@version) of bun.lock installable on this platform", () => {
    const lock = lockPackages();
    const here = lock.filter((p) => installableHere(p)).map((p) => p.id);
    // Only platform-specific optional binaries (other OS, CPU or C library) are left out: each
    // left-out package declares such a constraint (biome's and @node-rs/crc32's builds).
    const leftOut = lock.filter((p) => !installableHere(p));
    expect(leftOut.filter((p) => p.os === undefined && p.cpu === undefined && p.libc === undefined)).toEqual([]);
    expect(here.length).toBeGreaterThan(leftOut.length);
    expect(sorted(new Set(components.map(componentId)))).toEqual(sorted(new Set(here)));
  });

  test("every component's license is on the allowlist; a copyleft or missing one is caught", () => {
    expect(disallowed(components)).toEqual([]);
    // Positive controls: the check does fail.
    expect(
      disallowed([
        { name: "gpl-thing", version: "1.0.0", licenses: [{ license: { id: "GPL-3.0-only" } }] },
        { name: "bare", version: "1.0.0" },
        { name: "dual", version: "1.0.0", licenses: [{ expression: "(GPL-2.0 OR MIT)" }] },
      ]),
    ).toEqual(["gpl-thing@1.0.0: GPL-3.0-only", "bare@1.0.0: no license declared"]);
    expect(expressionAllowed("(BSD-2-Clause OR MIT OR Apache-2.0)")).toBe(true);
    expect(expressionAllowed("MIT AND GPL-3.0-only")).toBe(false);
    expect(ALLOWED_LICENSES.has("AGPL-3.0-only")).toBe(false);
  });
});

test("install scripts: only biome's runs (trustedDependencies); libxmljs2's is blocked and not needed", () => {
  const withScripts = lockPackages()
    .filter((p) => p.hasInstallScript)
    .map((p) => p.id.replace(/@[^@]+$/, ""));
  expect(sorted(withScripts)).toEqual(["@biomejs/biome", "libxmljs2"]);
  expect(pkg.trustedDependencies).toEqual(["@biomejs/biome"]);
});

describe("audit-deps verdicts", () => {
  test("an HTTP error or no connection is 'unreachable' (exit 3), never 'clean'", () => {
    // Today's answer here (the registry's host replaced).
    const refused = classify(1, "", "error: POST https://<registry>/-/npm/v1/security/advisories/bulk - 405\n");
    expect(refused).toEqual({ kind: "unreachable", reason: "the advisory endpoint answered HTTP 405" });
    expect(classify(1, "", "error: ConnectionRefused connecting to registry\n").kind).toBe("unreachable");
    expect(EXIT_CODES.unreachable).toBe(3);
  });

  test("advisories are 'vulnerable' (exit 1); none is 'clean' (exit 0); anything else is an error (2)", () => {
    const report = JSON.stringify({
      minimist: [{ id: 1, severity: "critical", title: "Prototype Pollution", url: "https://example.test/GHSA-1" }],
    });
    expect(classify(1, report, "")).toEqual({
      kind: "vulnerable",
      advisories: [
        { pkg: "minimist", severity: "critical", title: "Prototype Pollution", url: "https://example.test/GHSA-1" },
      ],
    });
    expect(classify(0, "{}", "")).toEqual({ kind: "clean" });
    expect(classify(0, "", "")).toEqual({ kind: "clean" });
    expect(classify(1, "", "panic").kind).toBe("error");
    expect([EXIT_CODES.clean, EXIT_CODES.vulnerable, EXIT_CODES.error]).toEqual([0, 1, 2]);
  });
});
