// docs/api.md's "From TypeScript" example does what its rate-limit section says: against a real
// edge whose key's limit is tiny, a 429 with Retry-After is waited out and resent (never thrown),
// and a batch larger than the key's burst (429 + Max-Batch-Events) is split and every event answered.
// api-docs.test.ts runs the same block against a server with no limit in reach.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newSecret, sha256 } from "../../shared/api-keys.ts";
import { metricValue } from "../../tools/harness.ts";
import { createTopic, onCleanup, spawnServer } from "../helpers/fixtures.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { readDoc } from "./harness.ts";

await ensureStack();

const ROOT = new URL("../..", import.meta.url).pathname;
const KEY = newSecret();

/** The example block that defines sendScans, as a module this test can import. */
function exampleModule(): string {
  const blocks = readDoc(join(ROOT, "docs/api.md"), "docs/api.md");
  const example = blocks.find((b) => b.lang === "ts" && b.code.includes("export async function sendScans"));
  if (!example) throw new Error("docs/api.md has no ts block exporting sendScans");
  const dir = mkdtempSync(join(tmpdir(), "api-example-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "example.ts");
  writeFileSync(file, example.code);
  return file;
}

test("the example resends a 429 after Retry-After and splits a batch over Max-Batch-Events", async () => {
  const { url, metricsUrl } = await spawnServer({
    SCANS_TOPIC: await createTopic(3),
    AUTH_DISABLED: "false",
    API_KEY_SHA256: sha256(KEY).toString("hex"),
    // Two events at once, one more a second: the example's requests meet both kinds of 429.
    RATE_LIMIT_EVENTS_PER_SECOND: "1",
    RATE_LIMIT_BURST: "2",
    AUTH_FAILURES_PER_MINUTE: "0",
    LOG_LEVEL: "warn",
  });
  process.env.BASE_URL = url;
  process.env.KEY = KEY;
  // Its top level sends one event (and prints 1 []); then sendScans is the function under test.
  const { sendScans } = (await import(exampleModule())) as {
    sendScans: (
      baseUrl: string,
      key: string,
      events: object[],
    ) => Promise<{ accepted: number; rejected: { index: number }[] }>;
  };
  const limited = () => metricValue(metricsUrl, "rate_limited_total");

  // The key's bucket emptied (one-event requests until one is refused), then one event: 429 +
  // Retry-After (the next token is a second away, and this request follows at once), waited out
  // and resent.
  const statuses: number[] = [];
  while (statuses.at(-1) !== 429 && statuses.length < 5) {
    const res = await fetch(`${url}/v1/scans`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: JSON.stringify([scan()]),
    });
    statuses.push(res.status);
  }
  expect(statuses.at(-1)).toBe(429);
  const before = await limited();
  expect(await sendScans(url, KEY, [scan()])).toMatchObject({ accepted: 1, rejected: [] });
  const afterRetry = await limited();
  expect(afterRetry).toBeGreaterThan(before);

  // Five events, one invalid, for a key that may send two at once: split, waited out, all answered.
  const events = [scan(), scan(), scan({ qr_id: "no spaces" }), scan(), scan()];
  const answer = await sendScans(url, KEY, events);
  expect(answer.accepted).toBe(4);
  expect(answer.rejected.map((r) => r.index)).toEqual([2]);
  // At least its 429 + Max-Batch-Events.
  expect(await limited()).toBeGreaterThan(afterRetry);
});
