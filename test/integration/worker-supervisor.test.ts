// The supervisor: N workers in one group, a crashed worker restarted, SIGTERM forwarded to all.
import { expect, test } from "bun:test";
import { isAlive } from "../../scripts/stack/processes.ts";
import { createProducer, onCleanup } from "../helpers/kafka.ts";
import { createDatabase, tally } from "../helpers/postgres.ts";
import { freePort } from "../helpers/server.ts";
import { events, eventually, produceEvents, workerEnv, workerProcessEnv } from "../helpers/worker.ts";

test("restarts a worker killed with -9, forwards SIGTERM, exits 0 leaving no process behind", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url);
  const proc = Bun.spawn(["bun", "worker/supervisor.ts"], {
    cwd: new URL("../..", import.meta.url).pathname,
    // info level: the test reads the supervisor's "worker started" lines to learn the workers' pids.
    env: {
      ...process.env,
      ...workerProcessEnv(env),
      WORKER_POOL_SIZE: "2",
      METRICS_PORT: String(freePort()),
      LOG_LEVEL: "info",
    },
    stdout: "pipe",
    stderr: "inherit",
  });
  const started: { worker: number; pid: number }[] = [];
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of proc.stdout) {
      buffer += decoder.decode(chunk);
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.includes('"worker started"') || !line.includes('"service":"supervisor"')) continue;
        const { worker, pid } = JSON.parse(line) as { worker: number; pid: number };
        started.push({ worker, pid });
      }
    }
  })();
  onCleanup(async () => {
    if (proc.exitCode === null) proc.kill("SIGKILL");
    for (const s of started) if (isAlive(s.pid)) process.kill(s.pid, "SIGKILL");
  });

  expect(await eventually(async () => started.length === 2, 20_000)).toBe(true);
  const producer = createProducer();
  await produceEvents(producer, env.scansTopic, events(1_000));
  expect(await eventually(async () => (await tally(db.sql)).rows === 1_000)).toBe(true);

  const victim = started[0] as { worker: number; pid: number };
  process.kill(victim.pid, "SIGKILL");
  expect(await eventually(async () => started.length === 3, 20_000)).toBe(true);
  expect(started[2]?.worker).toBe(victim.worker);
  expect(started[2]?.pid).not.toBe(victim.pid);

  await produceEvents(producer, env.scansTopic, events(1_000));
  expect(await eventually(async () => (await tally(db.sql)).rows === 2_000)).toBe(true);

  proc.kill("SIGTERM");
  expect(await proc.exited).toBe(0);
  await reading;
  expect(started.slice(1).every((s) => !isAlive(s.pid))).toBe(true);
}, 120_000);
