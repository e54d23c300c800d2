// The dependency baseline's license check: every component of the SBOM (tools/sbom.ts) must
// declare a license on the allowlist (an SPDX id, or an expression whose OR-branches include an
// allowed one and whose AND-parts are all allowed).
//   bun run licenses [--sbom path]    (generates the SBOM first unless --sbom names one)
// Exit 0: all allowed; 1: some are not (listed); 2: the SBOM could not be made or read.
import { type CliSpec, MAIN, parseCommand, runCli } from "../shared/cli.ts";
import { type SbomComponent, componentId, generateSbom, readSbom } from "./sbom.ts";

/** Permissive licenses; anything else (copyleft, unknown, none) needs a decision first. */
export const ALLOWED_LICENSES = new Set([
  "MIT",
  "ISC",
  "Apache-2.0",
  "BSD-2-Clause",
  "BSD-3-Clause",
  "0BSD",
  "BlueOak-1.0.0",
  "CC0-1.0",
  "Unlicense",
  // Data, not code: spdx-exceptions' list of exception identifiers.
  "CC-BY-3.0",
  // Data, not code: caniuse-lite's browser-support tables (Babel's, under Stryker; dev only).
  "CC-BY-4.0",
  // argparse (a port of Python's module): permissive, GPL-compatible.
  "Python-2.0",
]);

/** Whether an SPDX expression is satisfied by the allowlist: OR needs one allowed branch, AND all. */
export function expressionAllowed(expression: string): boolean {
  const e = expression.trim().replace(/^\((.*)\)$/, "$1");
  if (/\bOR\b/.test(e)) return e.split(/\bOR\b/).some((x) => expressionAllowed(x));
  if (/\bAND\b/.test(e)) return e.split(/\bAND\b/).every((x) => expressionAllowed(x));
  return ALLOWED_LICENSES.has(e.replace(/[()]/g, "").trim());
}

/** The components whose declared licenses are not allowed (or that declare none), with what they declare. */
export function disallowed(components: readonly SbomComponent[]): string[] {
  const bad: string[] = [];
  for (const c of components) {
    const declared = (c.licenses ?? []).map((l) =>
      "expression" in l ? l.expression : (l.license.id ?? l.license.name ?? "?"),
    );
    if (declared.length === 0 || !declared.every(expressionAllowed)) {
      bad.push(`${componentId(c)}: ${declared.length ? declared.join(", ") : "no license declared"}`);
    }
  }
  return bad;
}

export const LICENSES_CLI: CliSpec = {
  program: "bun run licenses",
  description:
    "Every production dependency's license against the allowlist: exit 1 if one is not on it, 2 if the SBOM cannot be read or made.",
  commands: {
    [MAIN]: {
      args: "",
      description: "checks a fresh SBOM",
      options: { sbom: { type: "string", value: "FILE", description: "check this CycloneDX SBOM instead" } },
    },
  },
};

if (import.meta.main)
  await runCli(LICENSES_CLI, async (argv) =>
    checkLicenses(parseCommand(LICENSES_CLI, argv).values.sbom as string | undefined),
  );

async function checkLicenses(sbomFile: string | undefined): Promise<number> {
  let components: SbomComponent[];
  try {
    components = sbomFile ? readSbom(sbomFile) : generateSbom();
  } catch (error) {
    console.error(`licenses: ${(error as Error).message}`);
    return 2;
  }
  const bad = disallowed(components);
  if (bad.length) {
    console.error(
      `licenses: ${bad.length} of ${components.length} components are not on the allowlist:\n  ${bad.join("\n  ")}`,
    );
    return 1;
  }
  console.log(`licenses: all ${components.length} components are on the allowlist`);
  return 0;
}
