// Issue 24: the edge's background connection (the managed keys' refresh and the replica heartbeat,
// one small client through pgbouncer) once stayed wedged after a query got no answer: every later
// refresh timed out behind it, for the process' life, so a key created afterwards was refused and a
// revocation never took effect there. Reproduced here deterministically with a TCP proxy between
// the server's background client and pgbouncer that, on the first connection, lets nothing through
// from pgbouncer once the client has sent its first query (the connection stays open, the answer
// never comes: the porsager/postgres#1173 family), then forwards every later connection normally.
// The edge must recover by itself (server/background-db.ts discards the client and opens a fresh
// one) within the deadline plus an interval or two, and say so once (a metric and one log line).
//
// Mutations, each applied alone and caught:
// | mutation                                                              | failed assertion                              |
// |-----------------------------------------------------------------------|-----------------------------------------------|
// | main as it was (no holder: keysSql used for the process' life)         | the key created after the stall: 401 for 10 s |
// | background-db.ts: on a deadline, the old client kept (no replacement) | the key created after the stall: 401 for 10 s |
// | background-db.ts: a discard per timed-out query, not per client        | one discard / one log line                    |
// | background-db.ts: the old client not ended (only replaced)            | the wedged connection closed by the edge      |
// | background-db.ts: fetch_types left on (postgres.js' default)          | the server crashed (unhandled rejection)      |
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { type Server, type Socket, createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type postgres from "postgres";
import { type KeysIo, keys } from "../../jobs/keys.ts";
import { sha256 } from "../../shared/api-keys.ts";
import { createLogger } from "../../shared/logger.ts";
import { metricValue } from "../../tools/harness.ts";
import { API_KEY, createDatabase, createTopic, onCleanup, spawnServer } from "../helpers/fixtures.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack, stack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

/**
 * A TCP proxy on 127.0.0.1 to `targetPort` that wedges its first connection: once pgbouncer has
 * said ReadyForQuery (startup done) and the client sends its first query, nothing more from
 * pgbouncer reaches the client, and the connection stays open (until the client closes it). Every
 * later connection is forwarded as is. Closed after the test, with every connection it holds.
 */
async function wedgingProxy(targetPort: number) {
  const state = { connections: 0, wedged: 0, wedgedClosedByClient: false };
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const first = state.connections++ === 0;
    const upstream = createConnection({ host: "127.0.0.1", port: targetPort });
    sockets.add(client).add(upstream);
    let ready = false;
    let wedged = false;
    // pgbouncer's messages until the first ReadyForQuery ('Z'): type byte, then a length that counts itself.
    let head = Buffer.alloc(0);
    upstream.on("data", (bytes: Buffer) => {
      if (wedged) return;
      if (!ready) {
        head = Buffer.concat([head, bytes]);
        for (let at = 0; at + 5 <= head.length; at += 1 + head.readInt32BE(at + 1)) {
          if (head[at] === 0x5a) ready = true;
        }
      }
      client.write(bytes);
    });
    client.on("data", (bytes: Buffer) => {
      if (first && ready && !wedged) {
        wedged = true;
        state.wedged++;
      }
      upstream.write(bytes);
    });
    client.on("end", () => {
      if (wedged) state.wedgedClosedByClient = true;
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", close).on("error", close);
    upstream.on("close", close).on("error", close);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onCleanup(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the proxy has no TCP address");
  return { port: address.port, state };
}

const silentIo: KeysIo = { out: () => {}, audit: createLogger("keys", "silent"), operator: "test" };

async function createKey(sql: postgres.Sql): Promise<{ id: string; secret: string }> {
  const out: string[] = [];
  expect(await keys(["create", "--name", "after-the-stall"], sql, { ...silentIo, out: (l) => out.push(l) })).toBe(0);
  return { id: /created (key_[0-9a-f]{12})/.exec(out[0] as string)?.[1] as string, secret: out.at(-1) as string };
}

test("a background query wedged past its deadline: its connection is replaced, a key created afterwards is accepted and a revoked one refused", async () => {
  const db = await createDatabase();
  const topic = await createTopic(1);
  const proxy = await wedgingProxy(stack.pgbouncerPort);
  const dir = mkdtempSync(join(tmpdir(), "wedge-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const logFile = join(dir, "server.log");
  const { url, metricsUrl } = await spawnServer(
    {
      SCANS_TOPIC: topic,
      AUTH_DISABLED: "false",
      // A static key too, so /ready does not wait for the managed keys (which the wedge holds back).
      API_KEY_SHA256: sha256(API_KEY).toString("hex"),
      DATABASE_URL: db.url,
      API_KEYS_DATABASE_URL: db.url.replace(`:${stack.pgbouncerPort}/`, `:${proxy.port}/`),
      API_KEYS_REFRESH_SECONDS: "1",
      RATE_LIMIT_HEARTBEAT_SECONDS: "1",
      // The polling below meets 401s: no 429 for them (the per-key limit, and so the heartbeat, stays on).
      AUTH_FAILURES_PER_MINUTE: "600000",
      AUTH_FAILURE_BURST: "100000",
      LOG_LEVEL: "warn",
    },
    { output: { file: logFile } },
  );
  const post = (key: string) =>
    fetch(`${url}/v1/scans`, {
      method: "POST",
      body: JSON.stringify(scan()),
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    }).then((r) => r.status);

  // The fault landed: the server's first background query got no answer and passed its 5 s deadline.
  await waitFor(
    "the first key load to pass its deadline (api_keys_refresh_failures_total >= 1)",
    () => metricValue(metricsUrl, "api_keys_refresh_failures_total"),
    (n) => n >= 1,
    15_000,
  );
  expect(proxy.state.wedged).toBe(1);

  const key = await createKey(db.sql);
  const createdAt = performance.now();
  await waitFor(
    "the key created after the stall to be accepted",
    () => post(key.secret),
    (s) => s === 202,
    10_000,
    100,
  );
  const acceptedMs = performance.now() - createdAt;
  expect(await keys(["revoke", key.id], db.sql, silentIo)).toBe(0);
  const revokedAt = performance.now();
  await waitFor(
    "the revoked key to be refused",
    () => post(key.secret),
    (s) => s === 401,
    5_000,
    100,
  );
  const refusedMs = performance.now() - revokedAt;
  console.log(
    `after the wedge: new key accepted ${Math.round(acceptedMs)} ms after its creation, revocation seen after ${Math.round(refusedMs)} ms (API_KEYS_REFRESH_SECONDS=1)`,
  );
  // One refresh interval plus a reload's own time, with room for a busy 2-core machine.
  expect(refusedMs).toBeLessThan(1_000 + 2_000);

  // Visible, once: one discard counted and logged, whatever the number of queries it failed; the
  // fresh client is a second connection through the proxy.
  expect(await metricValue(metricsUrl, "background_db_connections_discarded_total")).toBe(1);
  expect(proxy.state.connections).toBe(2);
  // The edge closed the wedged connection: not left open beside the fresh one.
  expect(proxy.state.wedgedClosedByClient).toBe(true);
  const lines = readFileSync(logFile, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { msg?: string; err?: { message?: string } });
  const discards = lines.filter((l) => l.msg?.includes("discarded"));
  expect(discards).toHaveLength(1);
  // The deadline error itself is logged once (by the task that hit it), not again with the discard.
  expect(lines.filter((l) => l.err?.message?.includes("api_keys query took more than"))).toHaveLength(1);
}, 60_000);
