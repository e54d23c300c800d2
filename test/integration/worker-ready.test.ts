// A worker's /ready: in the consumer group (owning partitions or not) and its database answers.
// Liveness (/health) is the stall detector's (worker-stall.test.ts).
//
// Mutations checked (each alone, then reverted): /ready requiring an owned partition → "more
// workers than partitions" fails (the idle worker stays 503); the database check removed → "a
// worker whose database is unreachable" fails (200); the error text back in the body → fails.
import { expect, test } from "bun:test";
import { createDatabase, spawnWorker, workerEnv } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

type ReadyAnswer = { status: number; body: { status: string; reason?: string } };
const probe = async (metricsUrl: string): Promise<ReadyAnswer> => {
  const url = metricsUrl.replace(/\/metrics$/, "/ready");
  return fetch(url).then(
    async (r) => ({ status: r.status, body: (await r.json()) as { status: string; reason?: string } }),
    (e: Error) => ({ status: 0, body: { status: `no answer: ${e.message}` } }),
  );
};

test("more workers than partitions: the one without partitions is ready too", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  const workers = [spawnWorker(env), spawnWorker(env)];
  for (const [i, w] of workers.entries()) {
    const answer = await waitFor(
      `worker ${i}'s /ready to answer 200`,
      () => probe(w.metricsUrl),
      (a) => a.status === 200,
      60_000,
    );
    expect(answer.body).toEqual({ status: "ready" });
  }
  const owned = await Promise.all(
    workers.map(async (w) => {
      const text = await fetch(w.metricsUrl).then((r) => r.text());
      return Number(/^worker_assigned_partitions(?:\{[^}]*\})? (\d+)$/m.exec(text)?.[1]);
    }),
  );
  // One partition, two workers: exactly one owns it, and both are ready.
  expect(owned.sort()).toEqual([0, 1]);
}, 90_000);

test("a worker whose database is unreachable is not ready: the probe names the state, the log the cause", async () => {
  const env = await workerEnv(`postgres://qrscan:qrscan@127.0.0.1:${freePort()}/nowhere`, 1);
  const w = spawnWorker(env, {}, { output: "pipe" });
  const answer = await waitFor(
    "/ready to answer 503 for the database",
    () => probe(w.metricsUrl),
    (a) => a.status === 503 && a.body.status === "database unreachable",
    60_000,
  );
  // Unauthenticated: nothing of Postgres' or the driver's error text (ECONNREFUSED, the host).
  expect(answer.body).toEqual({ status: "database unreachable" });
  w.proc.kill("SIGKILL");
  const log = await new Response(w.proc.stdout as ReadableStream).text();
  const lines = log.split("\n").filter((l) => l.includes("/ready: the database is unreachable"));
  // Logged once, however many probes saw it.
  expect(lines.length).toBe(1);
  expect(JSON.parse(lines[0] as string).err).toBeTruthy();
}, 90_000);
