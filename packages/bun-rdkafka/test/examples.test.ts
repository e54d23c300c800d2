// The README's examples (examples/*.ts), run as they are against the local stack's broker:
// produce with delivery reports, consume with manual commits, then lag via admin shows nothing left.
import { describe, expect, test } from "bun:test";
import { createTopic } from "../../../test/helpers/fixtures.ts";
import { ensureStack } from "../../../test/helpers/stack.ts";
import { produceConsumeLag } from "./run-examples.ts";

await ensureStack();
const EXAMPLES = new URL("../examples/", import.meta.url).pathname;

describe("examples", () => {
  test("produce (delivery reports), consume (manual commit), lag (admin) run against the broker", async () => {
    const topic = await createTopic(3);
    const { produced, consumed, lag } = await produceConsumeLag(EXAMPLES, topic);
    expect(produced).toMatch(new RegExp(`^delivered to ${topic}/[0-2] at offset 0$`, "m"));
    expect(produced).toContain("delivered 100 more");
    expect(consumed).toContain("consumed and committed 101 messages");
    // Lag 0 on every partition: the consumer's commits reached the group coordinator.
    expect(lag.match(/committed -?\d+, high watermark \d+, lag 0$/gm)?.length).toBe(3);
    expect(lag).toContain("total lag 0");
  });
});
