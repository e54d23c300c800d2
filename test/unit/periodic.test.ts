// server/periodic.ts: the edge's background tasks (key refresh, replica heartbeat) never overlap
// themselves, and stop() waits for the run in flight. Their queries' deadline:
// test/unit/background-db.test.ts.
//
// Mutations checked (each alone): run() without the ??= (a second run overlaps); stop() not
// awaiting the run in flight.
import { expect, test } from "bun:test";
import { Periodic } from "../../server/periodic.ts";

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
