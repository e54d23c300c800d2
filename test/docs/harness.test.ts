// The docs harness's own logic: block extraction, markers, and output matching (pure, no stack).
import { describe, expect, test } from "bun:test";
import { DocParseError, checkOutput, extractBlocks, jsonSubset, parseJsonValues, runBlocks } from "./harness.ts";

const doc = `# Title

<!-- doc-test: setup -->
\`\`\`sh
GREETING=\${GREETING:-hello}
\`\`\`

Prose.

\`\`\`sh
echo "$GREETING"
\`\`\`

\`\`\`text
hello
\`\`\`

<!-- doc-test: skip (starts a server that never exits) -->

\`\`\`bash
sleep infinity
\`\`\`

\`\`\`json
{"a": 1}
\`\`\`

\`\`\`
a diagram, not run
\`\`\`
`;

describe("extractBlocks", () => {
  test("finds setup, examples with their expected output, and skipped blocks with the reason", () => {
    const blocks = extractBlocks(doc, "doc.md");
    expect(blocks.map((b) => [b.kind, b.line, b.expected?.lang ?? null])).toEqual([
      ["setup", 4, null],
      ["example", 10, "text"],
      ["skip", 20, "json"],
    ]);
    expect(blocks[1]?.expected).toEqual({ lang: "text", text: "hello", line: 14 });
    expect(blocks[2]?.skipReason).toBe("starts a server that never exits");
  });

  test("an output block after prose is not an expected output", () => {
    const blocks = extractBlocks("```sh\necho 1\n```\nsome prose\n```json\n1\n```\n");
    expect(blocks).toHaveLength(1);
    expect(blocks[0]?.expected).toBeUndefined();
  });

  test("refuses a skip without a reason, an unknown marker, a stray marker and an unclosed block", () => {
    expect(() => extractBlocks("<!-- doc-test: skip -->\n```sh\nx\n```\n", "d.md")).toThrow(DocParseError);
    expect(() => extractBlocks("<!-- doc-test: skip() -->\n```sh\nx\n```\n", "d.md")).toThrow(
      /unknown doc-test marker/,
    );
    expect(() => extractBlocks("<!-- doc-test: setup -->\nprose\n```sh\nx\n```\n", "d.md")).toThrow(
      /d\.md:1: a doc-test marker must directly precede/,
    );
    expect(() => extractBlocks("<!-- doc-test: setup -->\n```sh\nx\n```\n```json\n1\n```\n", "d.md")).toThrow(
      /d\.md:5: expected output after a setup block/,
    );
    expect(() => extractBlocks("```sh\nx\n", "d.md")).toThrow(/d\.md:1: code block is never closed/);
  });
});

describe("matching", () => {
  test("JSON subset: extra keys allowed, missing keys, other values and other lengths are not", () => {
    expect(jsonSubset({ a: 1 }, { a: 1, request_id: "x" })).toEqual([]);
    expect(jsonSubset({ a: 1, b: 2 }, { a: 1 })).toEqual(['$: missing key "b" in {"a":1}']);
    expect(jsonSubset({ a: [{ b: 1 }] }, { a: [{ b: 2 }] })).toEqual(["$.a[0].b: expected 1, got 2"]);
    expect(jsonSubset([1], [1, 2])).toEqual(["$: expected 1 element(s), got 2: [1,2]"]);
    expect(jsonSubset("…", "anything")).toEqual([]);
    expect(jsonSubset("…", undefined)).toHaveLength(1);
    expect(jsonSubset("no route…", "no route for GET /x")).toEqual([]);
    expect(jsonSubset("no route…", "other")).toHaveLength(1);
    expect(jsonSubset(202, "202")).toHaveLength(1);
  });

  test("several JSON values, pretty-printed or not", () => {
    expect(parseJsonValues('{"a": "}"}\n[1,\n 2] 3 "x"')).toEqual([{ a: "}" }, [1, 2], 3, "x"]);
  });

  test("HTTP: the status, each header shown, and the body as JSON subset", () => {
    const actual =
      'HTTP/1.1 405 Method Not Allowed\r\nallow: POST\r\ncontent-type: application/json\r\nx-request-id: 9f\r\n\r\n{"error":"GET is not allowed"}';
    const expected = (status: number, allow: string, error: string) => ({
      lang: "http" as const,
      line: 1,
      text: `HTTP/1.1 ${status} Method Not Allowed\nAllow: ${allow}\nX-Request-Id: …\n\n{"error": "${error}"}`,
    });
    expect(checkOutput(expected(405, "POST", "GET is not allowed"), actual)).toEqual([]);
    expect(checkOutput(expected(400, "POST", "GET is not allowed"), actual)).toEqual(["status: expected 400, got 405"]);
    expect(checkOutput(expected(405, "GET", "GET is not allowed"), actual)).toEqual([
      'header allow: expected "GET", got "POST"',
    ]);
    expect(checkOutput(expected(405, "POST", "other"), actual)).toEqual([
      'body.error: expected "other", got "GET is not allowed"',
    ]);
    expect(checkOutput({ lang: "http", line: 1, text: "HTTP/1.1 200 OK\nretry-after: 2" }, actual)).toEqual([
      "status: expected 200, got 405",
      "header retry-after: missing",
    ]);
  });

  test("text: line for line", () => {
    expect(checkOutput({ lang: "text", line: 1, text: "a\nb" }, "a  \nb\n")).toEqual([]);
    expect(checkOutput({ lang: "text", line: 1, text: "a\nb" }, "a\nc\n")).toHaveLength(1);
  });
});

describe("runBlocks", () => {
  test("runs examples after the setup, checks exit status and output, and bounds each in time", async () => {
    const blocks = extractBlocks(
      [
        "<!-- doc-test: setup -->",
        "```sh",
        "N=${N:-1}",
        "```",
        "```sh",
        'echo "{\\"n\\": $N}"',
        "```",
        "```json",
        '{"n": 2}',
        "```",
        "```sh",
        "false",
        "echo unreachable",
        "```",
        "```sh",
        "echo $UNSET_VARIABLE_IN_DOC",
        "```",
        "```sh",
        "sleep 5",
        "```",
      ].join("\n"),
      "t.md",
    );
    const results = await runBlocks(blocks, { env: { N: "2" }, timeoutMs: 1_000 });
    expect(results.map((r) => r.problems)).toEqual([
      [],
      ["exited 1"],
      ["exited 1"],
      ["did not finish within 1000 ms (killed)"],
    ]);
    const ts = await runBlocks(
      extractBlocks(
        "```ts\nconst n: number = Number(process.env.N);\nconsole.log(await Promise.resolve(n * 2));\n```\n```text\n4\n```\n",
      ),
      { env: { N: "2" } },
    );
    expect(ts.map((r) => r.problems)).toEqual([[]]);
    const wrong = await runBlocks(blocks.slice(0, 2), { env: { N: "3" } });
    expect(wrong[0]?.problems).toEqual(["output.n: expected 2, got 3"]);
  });
});
