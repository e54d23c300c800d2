// The edge server as a real process, spoken to over raw TCP: the request-body budget under slow
// uploads.
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { createTopic, onCleanup } from "../helpers/kafka.ts";
import { scan, spawnServer } from "../helpers/server.ts";

/** A raw client connection: writes bytes as given and records everything the server sends back. */
async function connect(url: string) {
  const { hostname, port } = new URL(url);
  let received = "";
  let closed = false;
  let pending: Uint8Array[] = [];
  let wake = () => {};
  const flush = (s: Socket<undefined>) => {
    while (pending.length) {
      const head = pending[0] as Uint8Array;
      const n = s.write(head);
      if (n < head.length) {
        pending[0] = head.subarray(Math.max(n, 0));
        return;
      }
      pending.shift();
    }
  };
  const socket = await Bun.connect({
    hostname,
    port: Number(port),
    socket: {
      data(_s, data) {
        received += data.toString("latin1");
        wake();
      },
      drain: flush,
      close() {
        closed = true;
        wake();
      },
      error() {
        closed = true;
        wake();
      },
    },
  });
  onCleanup(() => socket.end());
  return {
    /** Queues bytes; what the kernel does not take now is written on drain. */
    write(data: string | Uint8Array) {
      pending.push(typeof data === "string" ? Buffer.from(data, "latin1") : data);
      flush(socket);
    },
    get received() {
      return received;
    },
    get closed() {
      return closed;
    },
    /** Resolves once `done()` holds (checked on every byte received and on close), or throws after `timeoutMs`. */
    async until(done: () => boolean, what: string, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!done()) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for ${what}; received ${JSON.stringify(received)}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, Math.min(left, 100));
        });
      }
    },
    end() {
      pending = [];
      socket.end();
    },
  };
}

/** Complete HTTP/1.1 responses (with Content-Length) in `raw`, in order. */
function responses(raw: string): { status: number; headers: Record<string, string>; body: string }[] {
  const out = [];
  let rest = raw;
  for (;;) {
    const end = rest.indexOf("\r\n\r\n");
    if (end < 0) break;
    const [statusLine, ...lines] = rest.slice(0, end).split("\r\n");
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers["content-length"] ?? 0);
    if (rest.length < end + 4 + length) break;
    out.push({
      status: Number(statusLine?.split(" ")[1]),
      headers,
      body: rest.slice(end + 4, end + 4 + length),
    });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

const postHead = (length: number) =>
  `POST /v1/scans HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;

describe("request-body budget, over the wire", () => {
  test("slow uploads beyond MAX_BODY_BYTES_IN_FLIGHT get 503 + Retry-After at once; the admitted ones finish; then a normal request works", async () => {
    const topic = await createTopic(1);
    const maxBody = 65_536;
    const { url } = await spawnServer({
      SCANS_TOPIC: topic,
      MAX_BODY_BYTES: String(maxBody),
      MAX_BODY_BYTES_IN_FLIGHT: String(4 * maxBody),
    });
    const body = Buffer.from(JSON.stringify([scan()]).padEnd(maxBody, " "));
    // 12 uploads declare a full-size body, send 1,000 bytes of it and stall: 4 fit in the budget.
    const uploads = await Promise.all(Array.from({ length: 12 }, () => connect(url)));
    for (const u of uploads) u.write(Buffer.concat([Buffer.from(postHead(maxBody)), body.subarray(0, 1_000)]));
    const answered = () => uploads.filter((u) => responses(u.received).length > 0);
    await Promise.all(uploads.map((u) => u.until(() => answered().length >= 8, "8 refusals")));
    for (const u of answered()) {
      const [res] = responses(u.received);
      expect(res?.status).toBe(503);
      expect(res?.headers["retry-after"]).toBe("2");
      expect(res?.headers["content-type"]).toStartWith("application/json");
      expect(JSON.parse(res?.body as string).error).toMatch(
        /^the server is already receiving \d+ bytes of request bodies \(limit 262144\); retry later$/,
      );
    }
    // The refused ones send the rest too (Bun discards it); the admitted ones complete and are stored.
    for (const u of uploads) u.write(body.subarray(1_000));
    await Promise.all(uploads.map((u) => u.until(() => responses(u.received).length === 1, "an answer")));
    const statuses = uploads.map((u) => responses(u.received)[0]?.status).sort();
    expect(statuses).toEqual([202, 202, 202, 202, 503, 503, 503, 503, 503, 503, 503, 503]);
    for (const u of uploads) u.end();

    const res = await fetch(`${url}/v1/scans`, {
      method: "POST",
      body: JSON.stringify([scan()]),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(202);
  }, 60_000);

  test("an upload whose client goes away mid-body releases its share of the budget", async () => {
    const topic = await createTopic(1);
    const { url } = await spawnServer({
      SCANS_TOPIC: topic,
      MAX_BODY_BYTES: "65536",
      MAX_BODY_BYTES_IN_FLIGHT: "65536",
    });
    const post = () =>
      fetch(`${url}/v1/scans`, {
        method: "POST",
        body: JSON.stringify([scan()]),
        headers: { "content-type": "application/json" },
      }).then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      });
    const upload = await connect(url);
    upload.write(`${postHead(65_536)}[{"event_id":`);
    // While it holds the whole budget, others are refused.
    let status = 0;
    const deadline = Date.now() + 10_000;
    while (status !== 503 && Date.now() < deadline) status = await post();
    expect(status).toBe(503);
    upload.end();
    // Bun rejects the abandoned body's read; the reservation is released in the handler's finally.
    while (status !== 202 && Date.now() < deadline + 10_000) status = await post();
    expect(status).toBe(202);
  }, 60_000);
});
