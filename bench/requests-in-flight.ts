// Requests in flight to the edge server when it is killed, for the crash suite: raw HTTP/1.1 over
// TCP (node:net), so what happened to each is known exactly: connected or not, sent, answered
// (the status line) or cut off (closed or reset with no byte of an answer).
//
// - held: the headers and all of a valid body but its last byte: the server has the request open
//   (its handler waits for the body) until it answers or dies;
// - complete: whole requests sent after the held ones. The server accepts connections in the order
//   they were queued, so once it answers one of these it had accepted every held one before it.
import { type Socket, connect } from "node:net";

export interface RawRequest {
  /** The events' ids (lower case), acknowledged if the answer is a 202. */
  ids: string[];
  held: boolean;
  connectedAt: number | null;
  /** When the last byte meant to be sent was handed to the socket (all but one for a held request). */
  sentAt: number | null;
  /** The answer's status, when its status line arrived. */
  status: number | null;
  answeredAt: number | null;
  /** When the connection ended: closed by the peer, reset, or refused. */
  endedAt: number | null;
  /** The socket error's code (ECONNRESET, ECONNREFUSED…), if it ended with one. */
  error: string | null;
}

/** A valid single-day batch of `n` new events. */
export function freshEvents(n: number): Record<string, unknown>[] {
  const now = new Date().toISOString();
  return Array.from({ length: n }, (_, i) => ({
    event_id: crypto.randomUUID(),
    qr_id: `QR-INFLIGHT-${i % 7}`,
    scanned_at: now,
    scanner_id: "crash-suite",
  }));
}

/** Sends one POST /v1/scans of `events` to 127.0.0.1:`port`; `held` keeps its last body byte back. */
export function sendRaw(port: number, events: Record<string, unknown>[], held: boolean) {
  const body = Buffer.from(JSON.stringify(events));
  const head = Buffer.from(
    `POST /v1/scans HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
  );
  const r: RawRequest = {
    ids: events.map((e) => String(e.event_id).toLowerCase()),
    held,
    connectedAt: null,
    sentAt: null,
    status: null,
    answeredAt: null,
    endedAt: null,
    error: null,
  };
  let answer = "";
  const socket: Socket = connect({ host: "127.0.0.1", port });
  const ended = new Promise<void>((resolve) => {
    socket.on("connect", () => {
      r.connectedAt = Date.now();
      socket.write(Buffer.concat([head, held ? body.subarray(0, body.length - 1) : body]), () => {
        r.sentAt = Date.now();
      });
    });
    socket.on("data", (chunk: Buffer) => {
      answer += chunk.toString("latin1");
      const status = /^HTTP\/1\.[01] (\d{3}) /.exec(answer);
      if (status && r.status === null) {
        r.status = Number(status[1]);
        r.answeredAt = Date.now();
      }
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      r.error = error.code ?? error.message;
    });
    socket.on("close", () => {
      r.endedAt = Date.now();
      resolve();
    });
  });
  return { request: r, ended, destroy: () => socket.destroy() };
}
