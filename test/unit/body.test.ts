// The body reader (server/body.ts) and the in-flight body budget (server/body-budget.ts) in-process:
// each limit's status and message (content type, charset, encoding, size before and after gzip,
// UTF-8, JSON and NDJSON, event count), and that the budget refuses past its limit and releases
// what each request reserved. test/integration/server-fuzz.test.ts and edge-limits.test.ts send
// the same through a real server.
import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { Hono } from "hono";
import { bodyBudget, reservation } from "../../server/body-budget.ts";
import { firstInvalidUtf8, readEvents } from "../../server/body.ts";
import { ApiError, errorHandler } from "../../server/errors.ts";
import { createLogger } from "../../shared/logger.ts";

const LIMITS = { maxBytes: 1_000, maxEvents: 3 };

function post(body: string | Uint8Array, headers: Record<string, string> = {}) {
  return new Request("http://edge/v1/scans", {
    method: "POST",
    body,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** [status, message] of the ApiError readEvents throws, or the events it returns. */
async function read(req: Request, limits = LIMITS): Promise<unknown> {
  try {
    return await readEvents(req, limits);
  } catch (error) {
    if (error instanceof ApiError) return [error.status, error.message];
    throw error;
  }
}

describe("readEvents", () => {
  test("JSON: an object is one event, an array its events, in order", async () => {
    expect(await read(post('{"a":1}'))).toEqual([{ a: 1 }]);
    expect(await read(post('[{"a":1},{"a":2}]'))).toEqual([{ a: 1 }, { a: 2 }]);
    expect(await read(post('{"a":1}', { "content-type": "application/vnd.scan+json" }))).toEqual([{ a: 1 }]);
    expect(await read(post('{"a":1}', { "content-type": " Application/JSON ; charset=UTF-8" }))).toEqual([{ a: 1 }]);
  });

  test("NDJSON in its three media types: blank lines skipped, a bad line named by its number", async () => {
    for (const type of ["application/x-ndjson", "application/ndjson", "application/jsonl"]) {
      expect(await read(post('{"a":1}\n\n  \n{"a":2}\r\n', { "content-type": type }))).toEqual([{ a: 1 }, { a: 2 }]);
    }
    const bad = (await read(post('{"a":1}\n{"a":\n', { "content-type": "application/x-ndjson" }))) as [number, string];
    expect(bad[0]).toBe(400);
    expect(bad[1]).toStartWith("malformed JSON on NDJSON line 2: ");
  });

  test("other media types and charsets are 415s that say what to send", async () => {
    expect(await read(post("{}", { "content-type": "text/plain" }))).toEqual([
      415,
      'unsupported Content-Type "text/plain": use application/json or application/x-ndjson',
    ]);
    expect(await read(new Request("http://edge/", { method: "POST", body: "{}" }))).toEqual([
      415,
      'unsupported Content-Type "": use application/json or application/x-ndjson',
    ]);
    expect(((await read(post("{}", { "content-type": "application/jsonx" }))) as unknown[])[0]).toBe(415);
    expect(await read(post("{}", { "content-type": 'application/json; charset="latin1"' }))).toEqual([
      415,
      'unsupported charset "latin1": the body must be UTF-8 (send charset=utf-8, or no charset parameter)',
    ]);
    for (const ok of ['charset="utf-8"', "CHARSET=utf8", "boundary=x", "charset"]) {
      expect(await read(post("{}", { "content-type": `application/json; ${ok}` }))).toEqual([{}]);
    }
  });

  test("size: the declared length, the bytes received and the inflated gzip are each capped (413)", async () => {
    const big = JSON.stringify({ pad: "x".repeat(1_000) });
    expect(await read(post(big))).toEqual([413, "body is larger than 1000 bytes"]);
    expect(await read(post("{}", { "content-length": "1001" }))).toEqual([413, "body is larger than 1000 bytes"]);
    expect(await read(post('{"a":1}', { "content-length": "1000" }))).toEqual([{ a: 1 }]);
    const exact = JSON.stringify({ pad: "x".repeat(1_000 - 10) });
    expect(exact.length).toBe(1_000);
    expect(await read(post(exact))).toEqual([{ pad: "x".repeat(990) }]);
    const bomb = gzipSync(Buffer.from(JSON.stringify({ pad: "0".repeat(100_000) })));
    expect(bomb.byteLength).toBeLessThan(1_000);
    expect(await read(post(bomb, { "content-encoding": "gzip" }))).toEqual([
      413,
      "body is larger than 1000 bytes decompressed",
    ]);
  });

  test("gzip and identity are the only encodings; a broken gzip stream is a 400", async () => {
    const gz = gzipSync(Buffer.from('[{"a":1}]'));
    expect(await read(post(gz, { "content-encoding": " GZIP " }))).toEqual([{ a: 1 }]);
    expect(await read(post("{}", { "content-encoding": "identity" }))).toEqual([{}]);
    expect(await read(post("{}", { "content-encoding": "br" }))).toEqual([
      415,
      'unsupported Content-Encoding "br": use gzip or none',
    ]);
    const broken = (await read(post(gz.subarray(0, 12), { "content-encoding": "gzip" }))) as [number, string];
    expect(broken[0]).toBe(400);
    expect(broken[1]).toStartWith("invalid gzip body: ");
  });

  test("bytes that are not UTF-8 are a 400 naming the first bad offset, never replaced", async () => {
    const bytes = new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]);
    expect(await read(post(bytes))).toEqual([400, "the body is not valid UTF-8 (first invalid byte at offset 6)"]);
  });

  test("malformed JSON, no events and too many events", async () => {
    const malformed = (await read(post('{"a":'))) as [number, string];
    expect(malformed[0]).toBe(400);
    expect(malformed[1]).toStartWith("malformed JSON: ");
    expect(await read(post("[]"))).toEqual([400, "no events in the body"]);
    expect(await read(post("\n\n", { "content-type": "application/x-ndjson" }))).toEqual([
      400,
      "no events in the body",
    ]);
    expect(await read(post("[1,2,3]"))).toEqual([1, 2, 3]);
    expect(await read(post("[1,2,3,4]"))).toEqual([413, "4 events in one request; the limit is 3"]);
  });
});

describe("firstInvalidUtf8", () => {
  const at = (...b: number[]) => firstInvalidUtf8(new Uint8Array(b));
  test("well-formed sequences of every length pass", () => {
    expect(
      at(0x41, 0xc2, 0x80, 0xe0, 0xa0, 0x80, 0xed, 0x9f, 0xbf, 0xf0, 0x90, 0x80, 0x80, 0xf4, 0x8f, 0xbf, 0xbf),
    ).toBe(-1);
    expect(at(0xdf, 0xbf, 0xef, 0xbf, 0xbf)).toBe(-1);
    expect(at()).toBe(-1);
  });
  test("bad leads, overlongs, surrogates, out-of-range and truncated sequences are found where they start", () => {
    expect(at(0x41, 0x80)).toBe(1); // lone continuation
    expect(at(0xc1, 0xbf)).toBe(0); // overlong 2-byte
    expect(at(0x41, 0xe0, 0x9f, 0xbf)).toBe(1); // overlong 3-byte
    expect(at(0xed, 0xa0, 0x80)).toBe(0); // surrogate
    expect(at(0xf0, 0x8f, 0xbf, 0xbf)).toBe(0); // overlong 4-byte
    expect(at(0xf4, 0x90, 0x80, 0x80)).toBe(0); // above U+10FFFF
    expect(at(0xf5, 0x80, 0x80, 0x80)).toBe(0);
    expect(at(0x41, 0x42, 0xe2, 0x82)).toBe(2); // truncated
    expect(at(0xe2, 0x82, 0x41)).toBe(0); // third byte not a continuation
    expect(at(0xf0, 0x90, 0x80, 0xc0)).toBe(0); // fourth byte not a continuation
    expect(at(0xc2)).toBe(0);
    expect(at(0xc2, 0xc0)).toBe(0);
  });
});

describe("body budget", () => {
  test("a request reserves its declared length, capped; an unknown or malformed one the per-body maximum", () => {
    expect(reservation("100", 1_000)).toBe(100);
    expect(reservation("5000", 1_000)).toBe(1_000);
    expect(reservation(undefined, 1_000)).toBe(1_000);
    expect(reservation("12abc", 1_000)).toBe(1_000);
    expect(reservation("-5", 1_000)).toBe(1_000);
    expect(reservation("0", 1_000)).toBe(0);
  });

  test("past the limit a request is a 503 + Retry-After at once; what was reserved is released after the answer", async () => {
    const budget = bodyBudget({ limitBytes: 250, maxBodyBytes: 200, retryAfterSeconds: 4 });
    const app = new Hono();
    app.onError(errorHandler({ logger: createLogger("test", "silent") }));
    const gates: (() => void)[] = [];
    app.post("/", budget.middleware, async (c) => {
      await new Promise<void>((resolve) => gates.push(resolve));
      return c.text("ok");
    });
    // A body of that many bytes (Content-Length set from it), or "x": a streamed body of unknown length.
    const send = (length: string) =>
      app.request("/", {
        method: "POST",
        ...(length === "x"
          ? { body: new ReadableStream({ start: (c) => c.close() }) }
          : { body: "b".repeat(Number(length)), headers: { "content-length": length } }),
      });
    const first = send("150");
    await Bun.sleep(1);
    expect(budget.inFlight).toBe(150);
    const second = send("100");
    await Bun.sleep(1);
    expect(budget.inFlight).toBe(250);
    const refused = await send("1");
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("4");
    expect(((await refused.json()) as { error: string }).error).toBe(
      "the server is already receiving 250 bytes of request bodies (limit 250); retry later",
    );
    expect(budget.inFlight).toBe(250);
    for (const open of gates.splice(0)) open();
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
    expect(budget.inFlight).toBe(0);
    // An unknown length reserves the per-body maximum: 200 fits, a second does not.
    const unknown = send("x");
    await Bun.sleep(1);
    expect(budget.inFlight).toBe(200);
    expect((await send("51")).status).toBe(503);
    const fits = send("50");
    await Bun.sleep(1);
    expect(budget.inFlight).toBe(250);
    for (const open of gates.splice(0)) open();
    expect([(await unknown).status, (await fits).status, budget.inFlight]).toEqual([200, 200, 0]);
  });

  test("a handler that throws still releases its reservation", async () => {
    const budget = bodyBudget({ limitBytes: 100, maxBodyBytes: 100, retryAfterSeconds: 1 });
    const app = new Hono();
    app.onError(errorHandler({ logger: createLogger("test", "silent") }));
    app.post("/", budget.middleware, () => {
      throw new ApiError(400, "bad");
    });
    expect((await app.request("/", { method: "POST", body: "b".repeat(100) })).status).toBe(400);
    expect(budget.inFlight).toBe(0);
  });
});
