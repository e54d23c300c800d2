// The client side of the Postgres HA tests (test/integration/pg-ha-*.test.ts): an open-loop
// ingest load (one single-event POST every 1/rate s, whatever the answers take) and a poller of
// the stats route, each recording every answer; and the standby's WAL receiver, found by pid.
import { spawnSync } from "node:child_process";
import { scan } from "./server.ts";

export interface Outcome {
  sentAt: number;
  answeredAt: number;
  eventId: string;
  /** HTTP status, null when the request got no answer (its error in `error`). */
  status: number | null;
  error?: string;
}

export interface Load {
  outcomes: Outcome[];
  accepted(): number;
  /** Requests sent and not answered yet. */
  inFlight(): number;
  /** Count of each answer other than 202 ("error" for no answer). */
  others(): Record<string, number>;
  stop(): Promise<Outcome[]>;
}

const tally = (outcomes: Outcome[], ok: number) => {
  const counts: Record<string, number> = {};
  for (const o of outcomes) {
    if (o.status === ok) continue;
    const k = o.status === null ? "error" : String(o.status);
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts;
};

/** Calls `send` every 1/rate s until stopped; its promises are awaited by stop(). */
function openLoop(rate: number, send: () => Promise<void>) {
  const inflight = new Set<Promise<void>>();
  let running = true;
  const loop = (async () => {
    const every = 1_000 / rate;
    let next = performance.now();
    while (running) {
      const p = send().finally(() => inflight.delete(p));
      inflight.add(p);
      next += every;
      const wait = next - performance.now();
      if (wait > 0) await Bun.sleep(wait);
    }
  })();
  return {
    inflight,
    async stop() {
      running = false;
      await loop;
      await Promise.all([...inflight]);
    },
  };
}

export function startLoad(url: string, rate: number): Load {
  const outcomes: Outcome[] = [];
  const loop = openLoop(rate, async () => {
    const event = scan();
    const sentAt = Date.now();
    try {
      const res = await fetch(`${url}/v1/scans`, {
        method: "POST",
        body: JSON.stringify(event),
        headers: { "content-type": "application/json" },
        signal: AbortSignal.timeout(30_000),
      });
      await res.arrayBuffer();
      outcomes.push({ sentAt, answeredAt: Date.now(), eventId: event.event_id, status: res.status });
    } catch (error) {
      outcomes.push({ sentAt, answeredAt: Date.now(), eventId: event.event_id, status: null, error: String(error) });
    }
  });
  return {
    outcomes,
    accepted: () => outcomes.filter((o) => o.status === 202).length,
    inFlight: () => loop.inflight.size,
    others: () => tally(outcomes, 202),
    async stop() {
      await loop.stop();
      return outcomes;
    },
  };
}

/** GET /v1/qr/QR-1/stats every 1/rate s: the edge's read side, which goes to Postgres each time. */
export function startStatsPoller(url: string, rate = 10) {
  const outcomes: Outcome[] = [];
  const loop = openLoop(rate, async () => {
    const sentAt = Date.now();
    try {
      const res = await fetch(`${url}/v1/qr/QR-1/stats`, { signal: AbortSignal.timeout(30_000) });
      await res.arrayBuffer();
      outcomes.push({ sentAt, answeredAt: Date.now(), eventId: "", status: res.status });
    } catch (error) {
      outcomes.push({ sentAt, answeredAt: Date.now(), eventId: "", status: null, error: String(error) });
    }
  });
  return {
    outcomes,
    statuses: () => tally(outcomes, 200),
    async stop() {
      await loop.stop();
      return outcomes;
    },
  };
}

/** The pid of the WAL receiver among the children of a standby's postmaster. */
export function walReceiverPid(postmaster: number): number {
  const out = spawnSync("ps", ["-o", "pid=,args=", "--ppid", String(postmaster)], { encoding: "utf8" }).stdout;
  const line = out.split("\n").find((l) => l.includes("walreceiver"));
  const pid = Number(line?.trim().split(/\s+/)[0]);
  if (!pid) throw new Error(`no walreceiver among the children of postmaster ${postmaster}:\n${out}`);
  return pid;
}
