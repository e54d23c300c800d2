// A planned switchover of the local stack's Patroni cluster (PG_HA=1) that no client sees: a
// plain switchover cuts the sessions on the old leader (HAProxy's shutdown-sessions) and refuses
// new ones until HAProxy marks the new leader up, so the stats route answers 503 and the workers
// retry (measured by test/integration/pg-ha-switchover.test.ts). This command PAUSEs pgbouncer
// (transactions in flight finish, new ones wait in pgbouncer instead of failing), switches over
// through Patroni's REST API, waits until HAProxy routes to the new leader, drops pgbouncer's
// server connections to the old one (RECONNECT) and RESUMEs. The pause must stay well below
// pgbouncer's query_wait_timeout (5 s), or the waiting clients get errors anyway: it is printed.
//   bun run pg-switchover [--candidate pg2] [--no-pause]
// Configuration: the stack's STACK_* variables and PG_HA (shared/local-stack.ts). docs/runbooks/postgres-ha.md.
import { spawnSync } from "node:child_process";
import { type CliSpec, MAIN, UsageError, parseCommand, runCli } from "../shared/cli.ts";
import { type LocalStack, localStack } from "../shared/local-stack.ts";
import { haproxyServerStates, leaderOf, patroniCluster, syncStandbyOf } from "./stack/patroni.ts";

export const PG_SWITCHOVER_CLI: CliSpec = {
  program: "bun run pg-switchover",
  description:
    "A planned switchover of the PG_HA stack's Postgres leader to its synchronous standby, pgbouncer paused meanwhile.",
  commands: {
    [MAIN]: {
      args: "",
      description: "switches over, clients wait in pgbouncer instead of failing; prints the pause",
      options: {
        candidate: { type: "string", value: "NAME", description: "the new leader (default: the synchronous standby)" },
        "no-pause": { type: "boolean", description: "the plain switchover, without pausing pgbouncer" },
      },
    },
  },
};

/** Longest wait for the clients' transactions to finish before the pause holds. */
const PAUSE_TIMEOUT_MS = 3_000;
/**
 * Longest the pause may hold: below pgbouncer's query_wait_timeout (5 s), so the clients waiting in
 * it never get its error. Past it pgbouncer resumes and the switchover goes on unpaused.
 */
const PAUSE_BUDGET_MS = 4_000;
/** Longest wait for Patroni's switchover and for HAProxy to route to the new leader. */
const SWITCH_TIMEOUT_MS = 30_000;

export class SwitchoverError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SwitchoverError";
  }
}

/** One statement on pgbouncer's admin console (psql: the console speaks the simple protocol only). */
function console_(stack: LocalStack, command: string, timeoutMs: number): void {
  const url = `postgres://${stack.user}:${stack.password}@127.0.0.1:${stack.pgbouncerPort}/pgbouncer`;
  const res = spawnSync("psql", [url, "-XtAq", "-v", "ON_ERROR_STOP=1", "-c", command], {
    encoding: "utf8",
    timeout: timeoutMs,
  });
  if (res.status !== 0) {
    throw new SwitchoverError(
      `pgbouncer ${command} on 127.0.0.1:${stack.pgbouncerPort} failed (${res.error?.message ?? `exit ${res.status}`}): ${res.stderr.trim()}`,
    );
  }
}

/** Which server HAProxy (STACK_PG_PORT) reaches now: its port, and whether it is a primary. */
function routedTo(stack: LocalStack): { port: number; primary: boolean } | null {
  const res = spawnSync(
    "psql",
    [stack.adminDatabaseUrl, "-XtAq", "-F", " ", "-c", "select inet_server_port(), not pg_is_in_recovery()"],
    { encoding: "utf8", timeout: 2_000, env: { ...process.env, PGCONNECT_TIMEOUT: "1" } },
  );
  if (res.status !== 0) return null;
  const [port, primary] = res.stdout.trim().split(" ");
  return { port: Number(port), primary: primary === "t" };
}

export interface SwitchoverResult {
  from: string;
  to: string;
  /** From PAUSE holding to RESUME (null with --no-pause): how long new transactions waited. */
  pausedMs: number | null;
  /** From the PAUSE (or, unpaused, the switchover request) to HAProxy routing to the new leader. */
  switchMs: number;
  /** The pause reached PAUSE_BUDGET_MS and pgbouncer was resumed before the switchover ended. */
  pauseOverran: boolean;
}

export async function switchover(
  stack: LocalStack,
  { candidate, pause = true }: { candidate?: string; pause?: boolean } = {},
): Promise<SwitchoverResult> {
  if (!stack.pgHa) throw new UsageError("the stack runs one Postgres server: set PG_HA=1 (a Patroni cluster) first");
  const members = await patroniCluster(stack);
  const from = leaderOf(members);
  const to = candidate ?? syncStandbyOf(members);
  if (!from || !to || from === to) {
    throw new SwitchoverError(
      `no leader and synchronous standby to switch between: ${JSON.stringify(members?.map((m) => [m.name, m.role, m.state]))}`,
    );
  }
  const target = stack.patroniMembers.find((m) => m.name === to);
  const leader = stack.patroniMembers.find((m) => m.name === from);
  if (!target || !leader)
    throw new UsageError(`--candidate ${to}: not a member (${stack.patroniMembers.map((m) => m.name).join(", ")})`);
  // A pgbouncer left paused fails every client after query_wait_timeout: whatever happens from the
  // PAUSE on (a PAUSE that timed out may still hold), RESUME before returning, throwing or exiting.
  let paused = false;
  let pausedAt = 0;
  let pausedMs: number | null = null;
  const resume = () => {
    if (!paused) return;
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        console_(stack, "RESUME", 5_000);
      } catch (error) {
        last = error;
        // Not paused after all (the PAUSE never reached it): nothing to undo.
        if (!String((error as Error).message).includes("not paused")) continue;
      }
      paused = false;
      pausedMs = performance.now() - pausedAt;
      return;
    }
    throw last;
  };
  const onSignal = (signal: NodeJS.Signals) => {
    try {
      resume();
    } finally {
      process.exit(signal === "SIGINT" ? 130 : 143);
    }
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const started = performance.now();
  let switchMs = 0;
  let pauseOverran = false;
  try {
    if (pause) {
      paused = true;
      pausedAt = performance.now();
      // PAUSE returns once every server connection is back in the pool: transactions in flight finish.
      console_(stack, "PAUSE", PAUSE_TIMEOUT_MS);
      pausedAt = performance.now();
    }
    const res = await fetch(`http://127.0.0.1:${leader.restPort}/switchover`, {
      method: "POST",
      body: JSON.stringify({ leader: from, candidate: to }),
      signal: AbortSignal.timeout(SWITCH_TIMEOUT_MS),
    });
    const text = await res.text();
    if (res.status !== 200)
      throw new SwitchoverError(`Patroni refused the switchover ${from} → ${to}: ${res.status} ${text}`);
    const deadline = Date.now() + SWITCH_TIMEOUT_MS;
    // Routed: HAProxy has the new leader UP and the old one DOWN (no new connection can reach the
    // demoted server), and a connection through it lands on a primary, the new leader.
    const routed = async () => {
      const states = await haproxyServerStates(stack);
      const via = states?.[to] === "UP" && states[from]?.startsWith("DOWN") ? routedTo(stack) : null;
      return { states, via, ok: via?.primary === true && via.port === target.pgPort };
    };
    let seen = await routed();
    while (!seen.ok) {
      if (Date.now() > deadline) {
        throw new SwitchoverError(
          `HAProxy does not route to ${to} (127.0.0.1:${target.pgPort}) alone yet; last saw ${JSON.stringify(seen)}`,
        );
      }
      if (paused && performance.now() - pausedAt > PAUSE_BUDGET_MS) {
        pauseOverran = true;
        resume();
      }
      await Bun.sleep(50);
      seen = await routed();
    }
    // pgbouncer's idle server connections still lead to the old leader (cut by HAProxy): new ones.
    if (pause) console_(stack, "RECONNECT", 5_000);
    switchMs = performance.now() - started;
  } catch (error) {
    try {
      resume();
    } catch (resumeError) {
      throw new SwitchoverError(
        `${(error as Error).message}; RESUME failed too, so pgbouncer may still be paused: run RESUME on its admin console (${(resumeError as Error).message})`,
      );
    }
    throw error;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  resume();
  return { from, to, pausedMs, switchMs, pauseOverran };
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseCommand(PG_SWITCHOVER_CLI, argv);
  const r = await switchover(localStack(), {
    candidate: values.candidate as string | undefined,
    pause: values["no-pause"] !== true,
  });
  const paused =
    r.pausedMs === null
      ? "pgbouncer not paused"
      : `pgbouncer paused ${Math.round(r.pausedMs)} ms (PAUSE to RESUME)${r.pauseOverran ? `, resumed at the ${PAUSE_BUDGET_MS} ms budget before HAProxy routed to the new leader: clients may have waited into errors` : ""}`;
  console.log(
    `switched over ${r.from} → ${r.to}: HAProxy routes to ${r.to} ${Math.round(r.switchMs)} ms after the request; ${paused}`,
  );
  return 0;
}

if (import.meta.main) await runCli(PG_SWITCHOVER_CLI, main);
