// Waiting for a condition in tests, benches and tools (no side effects on import): a timeout
// says what it waited for and what it last saw.

/**
 * Polls `read` until `done(value)` holds; resolves with that value. On timeout it throws, naming
 * what it waited for and the last value it saw (or the last error reading it).
 */
export async function waitFor<T>(
  what: string,
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 60_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: { value?: T; error?: string } = {};
  for (;;) {
    try {
      const value = await read();
      last = { value };
      if (done(value)) return value;
    } catch (error) {
      last = { error: (error as Error).message };
    }
    if (Date.now() > deadline) {
      const seen = "value" in last ? JSON.stringify(last.value) : `error: ${last.error}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last saw ${seen}`);
    }
    await Bun.sleep(everyMs);
  }
}
