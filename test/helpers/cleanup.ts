// Cleanup registry for tests: factories register what they created; test/setup.ts (preloaded by
// bunfig.toml) runs everything registered after each test, in every test file.
const cleanups: (() => unknown)[] = [];

export function onCleanup(fn: () => unknown): void {
  cleanups.push(fn);
}

/** Runs every registered cleanup, newest first; one failing does not stop the others. */
export async function runCleanups(): Promise<void> {
  const errors: unknown[] = [];
  while (cleanups.length) {
    try {
      await cleanups.pop()?.();
    } catch (error) {
      errors.push(error);
    }
  }
  if (errors.length) throw new AggregateError(errors, `${errors.length} test cleanup(s) failed`);
}
