// The modules Stryker mutates and, for each, the unit tests that exercise it in-process (no stack):
// one list read by the Stryker config (what to mutate) and by the Bun runner (what to run).

export const targets: Record<string, string[]> = {
  "shared/event.ts": [
    "test/unit/event-schema.test.ts",
    "test/unit/worker-logic.test.ts",
    "test/unit/scan-loop.test.ts",
  ],
  "shared/scan-events.ts": [
    "test/unit/scan-events.test.ts",
    "test/unit/worker-logic.test.ts",
    "test/unit/scan-loop.test.ts",
  ],
  "shared/db-errors.ts": [
    "test/unit/db-errors.test.ts",
    "test/unit/worker-logic.test.ts",
    "test/unit/background-db.test.ts",
  ],
  "server/body.ts": ["test/unit/body.test.ts"],
  "server/body-budget.ts": ["test/unit/body.test.ts"],
  "server/rate-limit.ts": ["test/unit/rate-limit.test.ts", "test/unit/edge-security.test.ts"],
  "server/client-ip.ts": ["test/unit/client-ip.test.ts", "test/unit/edge-security.test.ts"],
  "server/principal.ts": ["test/unit/edge-security.test.ts", "test/unit/auth.test.ts"],
  "server/auth.ts": ["test/unit/auth-audit.test.ts", "test/unit/auth.test.ts"],
  "worker/retry.ts": [
    "test/unit/retry-edges.test.ts",
    "test/unit/worker-retry-pause.test.ts",
    "test/unit/worker-logic.test.ts",
    "test/unit/scan-loop.test.ts",
  ],
  "worker/scan-loop.ts": ["test/unit/scan-loop-sink.test.ts", "test/unit/scan-loop.test.ts"],
  "worker/commit.ts": ["test/unit/scan-loop-sink.test.ts", "test/unit/scan-loop.test.ts"],
  "worker/progress.ts": ["test/unit/progress.test.ts", "test/unit/worker-logic.test.ts", "test/unit/scan-loop.test.ts"],
};

/** Every target's tests, once each: the dry run that must pass before any mutant runs. */
export function allTests(): string[] {
  return [...new Set(Object.values(targets).flat())];
}

/** The tests for a mutated file, given as any path ending in a target's repo path (Stryker passes the original's absolute path). */
export function testsFor(file: string): string[] {
  const target = Object.keys(targets).find((t) => file === t || file.endsWith(`/${t}`));
  if (!target) throw new Error(`tools/stryker/targets.ts lists no tests for ${file}: add it there`);
  return targets[target] as string[];
}
