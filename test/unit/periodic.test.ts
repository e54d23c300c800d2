// server/periodic.ts: the edge's background tasks (key refresh, replica heartbeat) never overlap
// themselves, stop() waits for the run in flight, and a query past its bound is rejected by name
// (shared/db-errors.ts withDeadline, with the edge's error instead of the worker's fatal one).
//
// Mutations checked (each alone): run() without the ??= (a second run overlaps); stop() not
// awaiting the run in flight; withDeadline ignoring its late error.
import { expect, test } from "bun:test";
import { Periodic, tookTooLong } from "../../server/periodic.ts";
import { DbDeadlineError, withDeadline } from "../../shared/db-errors.ts";

test("a run joins the one in flight instead of overlapping it, and stop() waits for it", async () => {
  let active = 0;
  let most = 0;
  let runs = 0;
  let finished = 0;
  const task = new Periodic(async () => {
    runs++;
    most = Math.max(most, ++active);
    await Bun.sleep(30);
    active--;
    finished++;
  }, 60_000);
  const first = task.run();
  const second = task.run();
  expect(second).toBe(first);
  await Promise.all([first, second]);
  expect({ runs, most }).toEqual({ runs: 1, most: 1 });
  void task.run();
  await task.stop();
  expect(finished).toBe(2);
});

test("start() runs at once, then every interval, until stop()", async () => {
  let runs = 0;
  const task = new Periodic(async () => {
    runs++;
  }, 20);
  await task.start();
  expect(runs).toBe(1);
  await Bun.sleep(110);
  await task.stop();
  const atStop = runs;
  expect(atStop).toBeGreaterThanOrEqual(3);
  await Bun.sleep(60);
  expect(runs).toBe(atStop);
});

test("a background query past its bound rejects with the edge's error, not the worker's fatal one", async () => {
  expect(await withDeadline("a query", 100, Promise.resolve(7), tookTooLong)).toBe(7);
  const slow = Bun.sleep(500).then(() => 1);
  const error = await withDeadline("api_keys query", 20, slow, tookTooLong).catch((e: Error) => e);
  expect(error).not.toBeInstanceOf(DbDeadlineError);
  expect((error as Error).message).toBe("api_keys query took more than 20 ms");
});
