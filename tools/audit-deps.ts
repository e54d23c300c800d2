// Fails on a dependency with a known vulnerability, where an advisory source is reachable:
// `bun audit --json` asks the configured npm registry's bulk-advisory endpoint about every package
// in bun.lock. Run on a machine that reaches the registry (CI's hosted runners, a workstation):
//   bun run audit:deps
// Exit 0: no known advisory; 1: vulnerable (the advisories are printed); 3: the advisory source is
// unreachable or refused the request (no verdict: not the same as clean); 2: anything else.
// docs/security.md "Dependency baseline" records the state and the local procedure.
import { spawnSync } from "node:child_process";

export type Verdict =
  | { kind: "clean" }
  | { kind: "vulnerable"; advisories: { pkg: string; severity: string; title: string; url?: string }[] }
  | { kind: "unreachable"; reason: string }
  | { kind: "error"; reason: string };

export const EXIT_CODES: Record<Verdict["kind"], number> = { clean: 0, vulnerable: 1, error: 2, unreachable: 3 };

/** What a `bun audit --json` run means, from its exit code and output. */
export function classify(status: number | null, stdout: string, stderr: string): Verdict {
  const out = stdout.trim();
  // The endpoint answered with an HTTP error, or could not be reached at all.
  const httpError = stderr.match(/error: (?:POST|GET) \S+ - (\d{3})/);
  if (httpError) return { kind: "unreachable", reason: `the advisory endpoint answered HTTP ${httpError[1]}` };
  const network = stderr.match(
    /\b(ConnectionRefused|ConnectionClosed|ENOTFOUND|ECONNREFUSED|ETIMEDOUT|UnableToConnect|FailedToOpenSocket|DNS[^\n]*)\b/,
  );
  if (network) return { kind: "unreachable", reason: `the advisory endpoint could not be reached (${network[1]})` };
  if (status === 0 && (out === "" || out === "{}")) return { kind: "clean" };
  if (out.startsWith("{")) {
    let report: Record<string, { severity?: string; title?: string; url?: string }[]>;
    try {
      report = JSON.parse(out);
    } catch (error) {
      return { kind: "error", reason: `bun audit printed unparsable JSON (${(error as Error).message})` };
    }
    const advisories = Object.entries(report).flatMap(([pkg, list]) =>
      (Array.isArray(list) ? list : []).map((a) => ({
        pkg,
        severity: a.severity ?? "unknown",
        title: a.title ?? "",
        url: a.url,
      })),
    );
    return advisories.length ? { kind: "vulnerable", advisories } : { kind: "clean" };
  }
  return {
    kind: "error",
    reason: `bun audit exited ${status} with no verdict: ${(stderr || stdout).trim().slice(0, 500)}`,
  };
}

if (import.meta.main) {
  const r = spawnSync("bun", ["audit", "--json"], {
    cwd: new URL("..", import.meta.url).pathname,
    encoding: "utf8",
    timeout: 120_000,
  });
  const verdict = r.error
    ? ({ kind: "error", reason: `could not run bun audit: ${r.error.message}` } as const)
    : classify(r.status, r.stdout, r.stderr);
  switch (verdict.kind) {
    case "clean":
      console.log("audit-deps: no known advisory for any package in bun.lock");
      break;
    case "vulnerable":
      console.error(`audit-deps: ${verdict.advisories.length} advisories:`);
      for (const a of verdict.advisories) console.error(`  ${a.pkg}: [${a.severity}] ${a.title} ${a.url ?? ""}`);
      break;
    case "unreachable":
      console.error(
        `audit-deps: UNREACHABLE: ${verdict.reason}. No verdict; run it where the registry's advisory endpoint is reachable (docs/security.md "Dependency baseline").`,
      );
      break;
    case "error":
      console.error(`audit-deps: ${verdict.reason}`);
      break;
  }
  process.exit(EXIT_CODES[verdict.kind]);
}
