// The worker's retrier (worker/retry.ts) at its edges: a budget already spent means no retry at
// all, the exhausted error's name and message, the caller's logger handed to onRetry whether given
// as a logger or as a function making one, and pauseWhileRetrying without a gauge.
import { describe, expect, test } from "bun:test";
import type { TopicPartition } from "bun-rdkafka";
import { createLogger } from "../../shared/logger.ts";
import { RetriesExhaustedError, createRetrier, pauseWhileRetrying } from "../../worker/retry.ts";

const transient = () => Object.assign(new Error("connection lost"), { code: "08006" });

describe("createRetrier", () => {
  test("maxMs 0: the first transient failure is final, as RetriesExhaustedError naming the call", async () => {
    let attempts = 0;
    const retry = createRetrier({ baseMs: 1, capMs: 2, maxMs: 0 });
    // A clock that stands still within the first attempt, so no time at all has passed when it fails.
    const realNow = Date.now;
    let reads = 0;
    Date.now = () => 1_000_000 + (reads++ < 2 ? 0 : 10);
    const error = await retry("write batch", async () => {
      attempts++;
      throw transient();
    })
      .then(
        () => null,
        (e: unknown) => e,
      )
      .finally(() => {
        Date.now = realNow;
      });
    expect(attempts).toBe(1);
    expect(error).toBeInstanceOf(RetriesExhaustedError);
    expect((error as Error).name).toBe("RetriesExhaustedError");
    expect((error as Error).message).toBe("write batch: still failing after 0 ms of retries: connection lost");
  });

  test("onRetry gets the caller's logger, given as one or as a function making it", async () => {
    const seen: unknown[] = [];
    const retry = createRetrier({
      baseMs: 1,
      capMs: 1,
      maxMs: 5_000,
      onRetry: (_w, _a, _d, _e, log) => seen.push(log),
    });
    const logger = createLogger("test", "silent");
    const child = logger.child({ batch_id: 3 });
    const flaky = () => {
      let n = 0;
      return async () => {
        if (n++ === 0) throw transient();
        return n;
      };
    };
    expect(await retry("a", flaky(), logger)).toBe(2);
    expect(await retry("b", flaky(), () => child)).toBe(2);
    expect(await retry("c", flaky())).toBe(2);
    expect(seen).toEqual([logger, child, undefined]);
  });
});

describe("pauseWhileRetrying without a gauge", () => {
  test("pauses and resumes the assignment all the same", async () => {
    const calls: string[] = [];
    const assignment: TopicPartition[] = [{ topic: "scans", partition: 4 }];
    const consumer = {
      assignment: () => assignment,
      pause: (ps: TopicPartition[]) => calls.push(`pause ${ps.map((p) => p.partition)}`),
      resume: (ps: TopicPartition[]) => calls.push(`resume ${ps.map((p) => p.partition)}`),
    };
    const retry = createRetrier({ baseMs: 1, capMs: 1, maxMs: 5_000, ...pauseWhileRetrying(consumer) });
    let n = 0;
    await retry("write", async () => {
      if (n++ === 0) throw transient();
    });
    expect(calls).toEqual(["pause 4", "resume 4"]);
  });
});
