// The shipped HAProxy config for the edge (deploy/haproxy/edge.cfg) run as is in front of test
// servers: its addresses come from the environment (EDGE_BIND, EDGE_STATS_BIND, EDGE1..3), so the
// file tested is the file shipped. Also reads HAProxy's stats CSV (per-server state and counters),
// and holds authenticated requests open on a server (bench/requests-in-flight.ts sends none with a key).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killProcess, spawnProcess } from "../../tools/harness.ts";
import { portOpen } from "../../tools/stack/processes.ts";
import { onCleanup } from "./cleanup.ts";
import { freePort } from "./server.ts";
import { waitFor } from "./wait.ts";

export const EDGE_CFG = new URL("../../deploy/haproxy/edge.cfg", import.meta.url).pathname;

/** One server line of the stats CSV: the counters the tests read. */
export interface ServerStats {
  name: string;
  status: string;
  /** Sessions open to it now, and in total. */
  scur: number;
  stot: number;
  /** Connection errors, response errors (closed without an answer), retries and redispatches. */
  econ: number;
  eresp: number;
  wretr: number;
  wredis: number;
}

/** HAProxy on 127.0.0.1 with the shipped config in front of the three servers on `ports`; stopped by pid after the test. */
export async function spawnEdgeBalancer(ports: [number, number, number]) {
  const dir = mkdtempSync(join(tmpdir(), "edge-haproxy-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const port = freePort();
  const statsPort = freePort();
  const log = join(dir, "haproxy.log");
  const proc = spawnProcess({
    // -db: in the foreground, so the pid is haproxy's and killing it stops it.
    cmd: ["haproxy", "-db", "-f", EDGE_CFG],
    env: {
      EDGE_BIND: `127.0.0.1:${port}`,
      EDGE_STATS_BIND: `127.0.0.1:${statsPort}`,
      EDGE1: `127.0.0.1:${ports[0]}`,
      EDGE2: `127.0.0.1:${ports[1]}`,
      EDGE3: `127.0.0.1:${ports[2]}`,
    },
    output: { file: log },
  });
  onCleanup(() => killProcess(proc));
  const statsUrl = `http://127.0.0.1:${statsPort}`;
  const stats = async (): Promise<Map<string, ServerStats>> => {
    const csv = await (await fetch(`${statsUrl}/haproxy;csv`)).text();
    const [head, ...lines] = csv.trim().split("\n");
    const cols = (head as string).replace(/^# /, "").split(",");
    const at = (row: string[], col: string) => row[cols.indexOf(col)] ?? "";
    const servers = new Map<string, ServerStats>();
    for (const line of lines) {
      const row = line.split(",");
      if (at(row, "pxname") !== "edge_replicas" || at(row, "svname") === "FRONTEND") continue;
      const n = (col: string) => Number(at(row, col) || 0);
      servers.set(at(row, "svname"), {
        name: at(row, "svname"),
        status: at(row, "status"),
        scur: n("scur"),
        stot: n("stot"),
        econ: n("econ"),
        eresp: n("eresp"),
        wretr: n("wretr"),
        wredis: n("wredis"),
      });
    }
    return servers;
  };
  await waitFor(
    `haproxy (pid ${proc.pid}) to listen on 127.0.0.1:${port}`,
    async () => ({ exited: proc.exitCode, open: await portOpen(port) }),
    (s) => s.open || s.exited !== null,
    10_000,
    50,
  );
  if (proc.exitCode !== null) throw new Error(`haproxy exited with ${proc.exitCode}:\n${readFileSync(log, "utf8")}`);
  const statusOf = async () => Object.fromEntries([...(await stats())].map(([name, s]) => [name, s.status]));
  // Checks every 500 ms, up after 2: about a second.
  await waitFor(
    "haproxy to see every edge replica UP (checks on /ready)",
    statusOf,
    (s) => ["edge1", "edge2", "edge3"].every((n) => s[n] === "UP"),
    10_000,
    100,
  );
  return { proc, url: `http://127.0.0.1:${port}`, statsUrl, stats, statusOf };
}

/** What happened to a held request: connected, its bytes sent, then its answer's status or none. */
export interface HeldRequest {
  ids: string[];
  connected: boolean;
  sent: boolean;
  status: number | null;
  error: string | null;
}

/**
 * POST /v1/scans of `events` to 127.0.0.1:`port` with `key`, all but the body's last byte: the
 * server has authenticated it and waits for the rest, so the request is open there until it dies.
 */
export function sendHeld(port: number, events: Record<string, unknown>[], key: string) {
  const body = Buffer.from(JSON.stringify(events));
  const head =
    `POST /v1/scans HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
    `Authorization: Bearer ${key}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  const r: HeldRequest = {
    ids: events.map((e) => String(e.event_id).toLowerCase()),
    connected: false,
    sent: false,
    status: null,
    error: null,
  };
  let answer = "";
  const socket = connect({ host: "127.0.0.1", port });
  onCleanup(() => socket.destroy());
  const ended = new Promise<void>((resolve) => {
    socket.on("connect", () => {
      r.connected = true;
      socket.write(Buffer.concat([Buffer.from(head), body.subarray(0, body.length - 1)]), () => {
        r.sent = true;
      });
    });
    socket.on("data", (chunk: Buffer) => {
      answer += chunk.toString("latin1");
      const status = /^HTTP\/1\.[01] (\d{3}) /.exec(answer);
      if (status && r.status === null) r.status = Number(status[1]);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      r.error = error.code ?? error.message;
    });
    socket.on("close", () => resolve());
  });
  return { request: r, ended };
}
