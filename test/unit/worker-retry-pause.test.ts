// pauseWhileRetrying (worker/retry.ts): fetching stops while any batch retries and resumes after
// the last one, with the paused-partitions gauge following. Driven through the real retrier.
//
// Mutations checked (each alone, then reverted): the `retrying++ > 0` guard removed → "two batches
// retrying at once" fails (pause called twice); the `--retrying > 0` guard removed → it fails
// (resume after the first batch, gauge 0 while one still retries).
import { describe, expect, test } from "bun:test";
import type { TopicPartition } from "bun-rdkafka";
import { createRetrier, pauseWhileRetrying } from "../../worker/retry.ts";

function recordingConsumer(assignment: TopicPartition[]) {
  const calls: string[] = [];
  const consumer = {
    assignment: () => [...assignment],
    pause: (ps: TopicPartition[]) => calls.push(`pause ${ps.map((p) => p.partition).join(",")}`),
    resume: (ps: TopicPartition[]) => calls.push(`resume ${ps.map((p) => p.partition).join(",")}`),
  };
  let gauge = 0;
  const paused = {
    inc(n: number) {
      gauge += n;
    },
    dec(n: number) {
      gauge -= n;
    },
  };
  return { consumer, calls, paused, gauge: () => gauge };
}

const transient = () => Object.assign(new Error("connection lost"), { code: "08006" });
const partitions = [0, 1, 2].map((partition) => ({ topic: "scans", partition }));

describe("pauseWhileRetrying", () => {
  test("one retrying batch pauses the whole assignment and resumes the same partitions once it succeeds", async () => {
    const r = recordingConsumer(partitions);
    const retry = createRetrier({ baseMs: 1, capMs: 2, maxMs: 5_000, ...pauseWhileRetrying(r.consumer, r.paused) });
    let attempts = 0;
    let gaugeWhileRetrying = -1;
    await retry("write", async () => {
      if (++attempts < 3) throw transient();
      gaugeWhileRetrying = r.gauge();
      return "ok";
    });
    expect(gaugeWhileRetrying).toBe(3);
    expect(r.calls).toEqual(["pause 0,1,2", "resume 0,1,2"]);
    expect(r.gauge()).toBe(0);
  });

  test("two batches retrying at once: paused on the first, resumed only after the last", async () => {
    const r = recordingConsumer(partitions);
    const retry = createRetrier({ baseMs: 1, capMs: 2, maxMs: 5_000, ...pauseWhileRetrying(r.consumer, r.paused) });
    const { promise: firstMayFinish, resolve: releaseFirst } = Promise.withResolvers<void>();
    let firstAttempts = 0;
    let secondAttempts = 0;
    const first = retry("batch 1", async () => {
      if (++firstAttempts === 1) throw transient();
      await firstMayFinish;
    });
    const second = retry("batch 2", async () => {
      if (++secondAttempts < 3) throw transient();
    });
    await second;
    // The second batch is done, the first still retrying: still paused, once.
    expect(r.calls).toEqual(["pause 0,1,2"]);
    expect(r.gauge()).toBe(3);
    releaseFirst();
    await first;
    expect(r.calls).toEqual(["pause 0,1,2", "resume 0,1,2"]);
    expect(r.gauge()).toBe(0);
  });

  test("a batch that succeeds at once never pauses", async () => {
    const r = recordingConsumer(partitions);
    const retry = createRetrier({ baseMs: 1, capMs: 2, maxMs: 5_000, ...pauseWhileRetrying(r.consumer, r.paused) });
    expect(await retry("write", async () => 7)).toBe(7);
    expect(r.calls).toEqual([]);
  });

  test("retries exhausted: the partitions are resumed and the gauge is back to 0", async () => {
    const r = recordingConsumer(partitions);
    const retry = createRetrier({ baseMs: 1, capMs: 2, maxMs: 30, ...pauseWhileRetrying(r.consumer, r.paused) });
    await expect(
      retry("write", async () => {
        throw transient();
      }),
    ).rejects.toThrow(/still failing after/);
    expect(r.calls).toEqual(["pause 0,1,2", "resume 0,1,2"]);
    expect(r.gauge()).toBe(0);
  });
});
