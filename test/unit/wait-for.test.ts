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
