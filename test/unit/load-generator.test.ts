// The load generator (bench/load.ts) against in-process servers: every body it sends is valid
// (the edge's own event schema, scanned_at now, qr_id spread over QR-0 … QR-4999), every event id
// is unique across the run's requests, and the acknowledged ids (--acked-out) are exactly the ids
// of the requests the server answered 202, whatever else it answered (429, 503 with Retry-After,
// a closed connection, chunked or split responses). Its HTTP response parser is tested alone too.
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import * as v from "valibot";
import { type ParsedResponse, RequestTemplate, type Scenario, parseResponse, runLoad } from "../../bench/load.ts";
import { ScanEventSchema } from "../../shared/event.ts";

/** What a test server saw: every event id received, and those of requests it answered 202. */
interface Seen {
  ids: string[];
  acceptedIds: string[];
  statuses: Record<string, number>;
  retryAfters: number;
  problems: string[];
}

const newSeen = (): Seen => ({ ids: [], acceptedIds: [], statuses: {}, retryAfters: 0, problems: [] });

/** Parses and validates a request body as the edge would; records problems instead of throwing. */
function checkBody(body: string, contentType: string, seen: Seen): string[] {
  let events: unknown[];
  try {
    events =
      contentType === "application/x-ndjson"
        ? body.split("\n").map((line) => JSON.parse(line))
        : ((x) => (Array.isArray(x) ? x : [x]))(JSON.parse(body));
  } catch (e) {
    seen.problems.push(`not JSON (${contentType}): ${(e as Error).message}: ${body.slice(0, 200)}`);
    return [];
  }
  const ids: string[] = [];
  for (const event of events) {
    const r = v.safeParse(ScanEventSchema, event);
    if (!r.success) {
      seen.problems.push(`invalid event ${JSON.stringify(event)}: ${r.issues[0]?.message}`);
      continue;
    }
    const skew = Math.abs(Date.now() - Date.parse(r.output.scanned_at));
    if (skew > 5_000) seen.problems.push(`scanned_at ${r.output.scanned_at} is ${skew} ms from now`);
    const qr = /^QR-(\d{1,4})$/.exec(r.output.qr_id);
    if (!qr || Number(qr[1]) >= 5000) seen.problems.push(`qr_id ${r.output.qr_id} outside QR-0 … QR-4999`);
    ids.push(r.output.event_id);
  }
  return ids;
}

/** A Bun.serve that answers 202, or 503 / 429 with Retry-After for some requests, in turn. */
function answeringServer(seen: Seen) {
  let n = 0;
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const ids = checkBody(await req.text(), req.headers.get("content-type") ?? "", seen);
      seen.ids.push(...ids);
      n++;
      const status = n % 7 === 0 ? 503 : n % 11 === 0 ? 429 : 202;
      seen.statuses[status] = (seen.statuses[status] ?? 0) + 1;
      if (status === 202) {
        seen.acceptedIds.push(...ids);
        return Response.json({ accepted: ids.length, rejected: [] }, { status });
      }
      seen.retryAfters++;
      return Response.json({ error: "later" }, { status, headers: { "Retry-After": status === 503 ? "3" : "1" } });
    },
  });
}

function expectExact(seen: Seen, acknowledged: string[], result: Awaited<ReturnType<typeof runLoad>>) {
  expect(seen.problems).toEqual([]);
  expect(seen.ids.length).toBeGreaterThan(0);
  // No id twice across the run's requests.
  expect(new Set(seen.ids).size).toBe(seen.ids.length);
  // Exactly the ids the server answered 202 for: none missing, none extra, none twice.
  expect(acknowledged.length).toBe(seen.acceptedIds.length);
  expect(new Set(acknowledged)).toEqual(new Set(seen.acceptedIds));
  expect(result.events).toBe(seen.acceptedIds.length);
  expect(result.requests).toBe(Object.values(seen.statuses).reduce((a, b) => a + b, 0));
  for (const [status, count] of Object.entries(seen.statuses)) expect(result.statuses[status]).toBe(count);
  expect(result.retry_after.responses).toBe(seen.retryAfters);
  if (seen.retryAfters > 0) expect(result.retry_after.max_s).toBeGreaterThanOrEqual(1);
  expect(result.generator.cpu_s).toBeGreaterThan(0);
}

describe("load generator against a server that answers 202, 429 and 503", () => {
  const cases: { scenario: Scenario; batch: number; rate: number }[] = [
    { scenario: "single", batch: 1, rate: 0 },
    { scenario: "batch", batch: 10, rate: 0 },
    { scenario: "ndjson", batch: 7, rate: 0 },
    { scenario: "single", batch: 1, rate: 400 },
    { scenario: "batch", batch: 10, rate: 300 },
  ];
  for (const c of cases) {
    test(`${c.scenario} x${c.batch}, ${c.rate ? `open loop at ${c.rate}/s` : "closed loop"}: valid, unique, acknowledged exactly`, async () => {
      const seen = newSeen();
      const server = answeringServer(seen);
      try {
        const acknowledged: string[] = [];
        const result = await runLoad({
          url: server.url.href,
          scenario: c.scenario,
          batch: c.batch,
          concurrency: 8,
          durationS: 1,
          rate: c.rate,
          acknowledged,
        });
        expectExact(seen, acknowledged, result);
        expect(result.statuses["503"]).toBeGreaterThan(0);
        if (c.rate) expect(result.requests).toBeGreaterThan(c.rate * 0.9);
      } finally {
        server.stop(true);
      }
    });
  }

  test("two runs never repeat an id (each run's ids carry their own random prefix)", async () => {
    const seen = newSeen();
    const server = answeringServer(seen);
    try {
      for (let i = 0; i < 2; i++) {
        await runLoad({ url: server.url.href, scenario: "batch", batch: 5, concurrency: 4, durationS: 0.3, rate: 0 });
      }
      expect(new Set(seen.ids).size).toBe(seen.ids.length);
    } finally {
      server.stop(true);
    }
  });
});

describe("load generator against a raw HTTP/1.1 server", () => {
  // Answers in ways Bun.serve does not: chunked bodies split over two writes, a response whose head
  // arrives in pieces, and every 5th answer with Connection: close and the socket closed after it.
  function rawServer(seen: Seen) {
    let n = 0;
    const buffers = new Map<Socket<undefined>, string>();
    return Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket, chunk) {
          const text = (buffers.get(socket) ?? "") + chunk.toString("latin1");
          const headEnd = text.indexOf("\r\n\r\n");
          if (headEnd < 0) return void buffers.set(socket, text);
          const length = Number(/content-length: (\d+)/i.exec(text.slice(0, headEnd))?.[1]);
          if (text.length < headEnd + 4 + length) return void buffers.set(socket, text);
          buffers.delete(socket);
          const contentType = /content-type: ([^\r]+)/i.exec(text.slice(0, headEnd))?.[1] ?? "";
          const ids = checkBody(
            Buffer.from(text.slice(headEnd + 4), "latin1").toString("utf8"),
            contentType.trim(),
            seen,
          );
          seen.ids.push(...ids);
          n++;
          const close = n % 5 === 0;
          const status = n % 4 === 0 ? 503 : 202;
          seen.statuses[status] = (seen.statuses[status] ?? 0) + 1;
          if (status === 202) seen.acceptedIds.push(...ids);
          else seen.retryAfters++;
          const body = JSON.stringify({ accepted: ids.length });
          const head =
            `HTTP/1.1 ${status} X\r\nContent-Type: application/json\r\n` +
            `${status === 503 ? "retry-after: 2\r\n" : ""}${close ? "Connection: close\r\n" : ""}`;
          if (n % 2 === 0) {
            // Chunked, in two writes, the head itself split.
            const all = `${head}Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
            socket.write(all.slice(0, 20));
            setTimeout(() => {
              socket.write(all.slice(20));
              if (close) socket.end();
            }, 1);
          } else {
            socket.write(`${head}Content-Length: ${body.length}\r\n\r\n${body}`);
            if (close) socket.end();
          }
        },
      },
    });
  }

  for (const rate of [0, 300]) {
    test(`${rate ? `open loop at ${rate}/s` : "closed loop"}: statuses, Retry-After and acknowledged ids exact`, async () => {
      const seen = newSeen();
      const server = rawServer(seen);
      try {
        const acknowledged: string[] = [];
        const result = await runLoad({
          url: `http://127.0.0.1:${server.port}`,
          scenario: "batch",
          batch: 3,
          concurrency: 4,
          durationS: 1,
          rate,
          acknowledged,
        });
        expectExact(seen, acknowledged, result);
        expect(result.retry_after.max_s).toBe(2);
        expect(result.statuses.error).toBeUndefined();
        expect(result.generator.connections).toBeGreaterThan(1); // reconnected after each close
      } finally {
        server.stop(true);
      }
    });
  }

  test("a refused connection is an error per request, not a hang", async () => {
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = server.port;
    server.stop(true);
    const result = await runLoad({
      url: `http://127.0.0.1:${port}`,
      scenario: "single",
      batch: 1,
      concurrency: 2,
      durationS: 0.3,
      rate: 50,
      acknowledged: [],
    });
    expect(result.events).toBe(0);
    expect(result.statuses.error).toBe(result.requests);
    expect(result.requests).toBeGreaterThan(5);
  });
});

describe("request template", () => {
  test("patches ids, QR numbers and the timestamp in place; the body stays the declared length", () => {
    const t = new RequestTemplate({
      scenario: "batch",
      batch: 3,
      prefix: "01234567-89ab-4cde-8f01-",
      host: "example:80",
      path: "/v1/scans",
      apiKey: "k",
      origin: "https://o.example",
    });
    const ts = new TextEncoder().encode("2026-01-31T12:00:00.000Z");
    const text = () => new TextDecoder().decode(t.fill(0x123456789ab, ts));
    const request = text();
    const [head, body] = request.split("\r\n\r\n") as [string, string];
    expect(head).toContain("POST /v1/scans HTTP/1.1\r\nHost: example:80\r\n");
    expect(head).toContain("Authorization: Bearer k\r\nOrigin: https://o.example");
    expect(Number(/Content-Length: (\d+)/.exec(head)?.[1])).toBe(Buffer.byteLength(body));
    const events = JSON.parse(body) as { event_id: string; qr_id: string; scanned_at: string }[];
    expect(events.map((e) => e.event_id)).toEqual([
      "01234567-89ab-4cde-8f01-0123456789ab",
      "01234567-89ab-4cde-8f01-0123456789ac",
      "01234567-89ab-4cde-8f01-0123456789ad",
    ]);
    for (const e of events) expect(e.scanned_at).toBe("2026-01-31T12:00:00.000Z");
    // A short QR number after a long one leaves no digit behind.
    const qrs = new Set<string>();
    for (let first = 0; first < 20_000; first += 3) {
      const b = new TextDecoder().decode(t.fill(first, ts)).split("\r\n\r\n")[1] as string;
      for (const e of JSON.parse(b) as { qr_id: string }[]) qrs.add(e.qr_id);
    }
    expect(qrs.size).toBe(5000);
  });
});

describe("parseResponse", () => {
  const out = (): ParsedResponse => ({ length: -1, status: 0, close: false, retryAfterS: -1 });
  const parse = (s: string) => parseResponse(Buffer.from(s), out());

  test("Content-Length: complete only with the whole body", () => {
    const r = "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\nContent-Length: 5\r\n\r\n{...}";
    expect(parse(r)).toEqual({ length: r.length, status: 202, close: false, retryAfterS: -1 });
    expect(parse(r.slice(0, -1)).length).toBe(-1);
    expect(parse(r.slice(0, 30)).length).toBe(-1);
  });
  test("chunked, Retry-After and Connection: close, any case", () => {
    const r =
      "HTTP/1.1 503 X\r\nRETRY-AFTER: 7\r\nconnection: Close\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    expect(parse(r)).toEqual({ length: r.length, status: 503, close: true, retryAfterS: 7 });
    expect(parse(r.slice(0, -2)).length).toBe(-1);
    expect(parse(r.slice(0, -8)).length).toBe(-1);
  });
  test("HTTP/1.0 closes; no length reads to the close; 204 has no body", () => {
    expect(parse("HTTP/1.0 202 OK\r\nContent-Length: 0\r\n\r\n").close).toBe(true);
    const unbounded = "HTTP/1.1 202 OK\r\nX: y\r\n\r\nab";
    expect(parse(unbounded)).toMatchObject({ length: unbounded.length, status: 202, close: true });
    expect(parse("HTTP/1.1 204 No Content\r\n\r\n")).toMatchObject({ length: 27, status: 204, close: false });
  });
});
