// The README's and docs/api.md's examples, run against the real edge server (its own process, on
// 127.0.0.1 and a free port) with the real Kafka and Postgres/pgbouncer of the local stack: every
// documented status, header and body must be what the server answers (see test/docs/harness.ts
// for the conventions). Changing the code's answers, or the docs, without the other fails here.
import { expect, test } from "bun:test";
import { newSecret } from "../../shared/api-keys.ts";
import { sha256 } from "../../shared/api-keys.ts";
import { createDatabase, createTopic, spawnServer } from "../helpers/fixtures.ts";
import { ensureStack } from "../helpers/stack.ts";
import { type DocBlock, failureReport, readDoc, runBlocks } from "./harness.ts";

await ensureStack();

const ROOT = new URL("../..", import.meta.url).pathname;
const KEY = newSecret();

/**
 * How many examples each doc holds. A doc with fewer runnable examples than this fails: a block
 * newly marked `skip`, or one whose fence no longer says `sh`, would otherwise go unchecked.
 */
const EXPECTED = {
  "README.md": { examples: 3, skipped: 8 },
  "docs/api.md": { examples: 22, skipped: 0 },
};

function examplesOf(file: keyof typeof EXPECTED): DocBlock[] {
  const blocks = readDoc(`${ROOT}${file}`, file);
  const examples = blocks.filter((b) => b.kind === "example");
  const skipped = blocks.filter((b) => b.kind === "skip");
  const found = { examples: examples.length, skipped: skipped.length };
  if (found.examples !== EXPECTED[file].examples || found.skipped !== EXPECTED[file].skipped) {
    const listing = (bs: DocBlock[]) =>
      bs.map((b) => `  ${b.file}:${b.line}${b.skipReason ? ` (skip: ${b.skipReason})` : ""}`).join("\n");
    throw new Error(
      `${file}: expected ${JSON.stringify(EXPECTED[file])}, found ${JSON.stringify(found)}\n` +
        `examples:\n${listing(examples)}\nskipped:\n${listing(skipped)}`,
    );
  }
  expect(found).toEqual(EXPECTED[file]);
  return blocks;
}

/** The server a reader gets from `bun run dev` (auth disabled) or `bun run server` (keys required). */
async function server(env: Record<string, string>) {
  const topic = await createTopic(3);
  return spawnServer({ SCANS_TOPIC: topic, ...env });
}

test("README: the quick start's request answers as shown, and compose.yaml validates as shown", async () => {
  const blocks = examplesOf("README.md");
  // `bun run dev` without API_KEY_SHA256 runs the server with AUTH_DISABLED=true.
  const { url } = await server({ AUTH_DISABLED: "true" });
  const results = await runBlocks(blocks, { env: { BASE_URL: url } });
  expect(results).toHaveLength(EXPECTED["README.md"].examples);
  expect(failureReport(results)).toBe("");
});

test("docs/api.md: every example answers as shown, and every curl example shows its answer", async () => {
  const blocks = examplesOf("docs/api.md");
  const unshown = blocks.filter((b) => b.kind === "example" && b.code.includes("curl") && !b.expected);
  expect(unshown.map((b) => `${b.file}:${b.line}`)).toEqual([]);

  // The stats example's QR code has 5 scans in 10:00-11:00 and 2 in 11:00-12:00 (UTC), and one
  // outside the requested range, as the workers would have counted them.
  const db = await createDatabase();
  await db.sql`insert into scan_counts (qr_id, bucket, count) values
    ('gate-7:ticket-123', '2026-11-25T10:00:00Z', 3),
    ('gate-7:ticket-123', '2026-11-25T10:59:00Z', 2),
    ('gate-7:ticket-123', '2026-11-25T11:30:00Z', 2),
    ('gate-7:ticket-123', '2026-11-25T12:00:00Z', 9),
    ('QR-1', '2026-11-25T10:00:00Z', 4)`;
  const { url } = await server({
    AUTH_DISABLED: "false",
    API_KEY_SHA256: sha256(KEY).toString("hex"),
    DATABASE_URL: db.url,
  });
  // DATABASE_URL: where `bun run keys` in the examples writes, the server's own.
  const results = await runBlocks(blocks, { env: { BASE_URL: url, KEY, DATABASE_URL: db.url } });
  expect(results).toHaveLength(EXPECTED["docs/api.md"].examples);
  expect(failureReport(results)).toBe("");
});
