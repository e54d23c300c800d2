// The shared wait helper: a timeout names what it waited for and the last value it saw.
import { expect, test } from "bun:test";
import { waitFor } from "../helpers/wait.ts";

test("waitFor resolves with the value once the condition holds", async () => {
  let n = 0;
  expect(
    await waitFor(
      "n to reach 3",
      async () => ++n,
      (x) => x >= 3,
      5_000,
      1,
    ),
  ).toBe(3);
});

test("waitFor's timeout says what it waited for and what it last saw", async () => {
  await expect(
    waitFor(
      "rows to reach 10",
      async () => ({ rows: 7 }),
      (x) => x.rows >= 10,
      50,
      5,
    ),
  ).rejects.toThrow('timed out after 50 ms waiting for rows to reach 10; last saw {"rows":7}');
  await expect(
    waitFor(
      "the metrics port",
      async () => {
        throw new Error("connection refused");
      },
      () => true,
      30,
      5,
    ),
  ).rejects.toThrow("waiting for the metrics port; last saw error: connection refused");
});

test("the timeout reports the last value seen, not the first", async () => {
  let n = 0;
  const message = await waitFor(
    "n to reach 1000",
    async () => ++n,
    (x) => x >= 1_000,
    100,
    10,
  ).then(
    () => "resolved",
    (error: Error) => error.message,
  );
  expect(n).toBeGreaterThan(1);
  expect(message).toBe(`timed out after 100 ms waiting for n to reach 1000; last saw ${n}`);
});
