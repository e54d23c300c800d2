// `bun run dev --demo`: the whole product comes up, demo traffic is ingested and stored, the
// status line reports it, and Ctrl-C (SIGINT) stops every process it started.
import { expect, test } from "bun:test";
import { childPids } from "../../tools/pipeline.ts";
import { isAlive } from "../../tools/stack/processes.ts";
import { onCleanup } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/server.ts";
import { ensureStack, stack } from "../helpers/stack.ts";

await ensureStack();

test("bun run dev --demo runs the pipeline and Ctrl-C leaves no process behind", async () => {
  const port = freePort();
  const workerMetrics = freePort();
  const proc = Bun.spawn(["bun", "tools/dev.ts", "--demo", "--rate", "200"], {
    cwd: new URL("../..", import.meta.url).pathname,
    env: {
      ...process.env,
      PORT: String(port),
      METRICS_PORT: String(freePort()),
      WORKER_METRICS_PORT: String(workerMetrics),
      SUPERVISOR_METRICS_PORT: String(freePort()),
      WORKER_POOL_SIZE: "1",
    },
    stdout: "pipe",
    stderr: "inherit",
  });
  const descendants = new Set<number>();
  onCleanup(async () => {
    if (proc.exitCode === null) proc.kill("SIGKILL");
    for (const pid of descendants) if (isAlive(pid)) process.kill(pid, "SIGKILL");
  });
  let output = "";
  const reading = (async () => {
    for await (const chunk of proc.stdout) output += new TextDecoder().decode(chunk);
  })();
  const deadline = Date.now() + 60_000;
  // Wait until the status line shows rows being stored.
  while (Date.now() < deadline && !/rows +[1-9]\d*\/s/.test(output)) await Bun.sleep(250);
  expect(output).toContain(`http://127.0.0.1:${port}/v1/scans`);
  // Ops see where to look: the stack's Prometheus and Alertmanager.
  expect(output).toContain(`Prometheus  http://127.0.0.1:${stack.prometheusPort}`);
  expect(output).toContain(`Alertmanager http://127.0.0.1:${stack.alertmanagerPort}`);
  expect(output).toMatch(/accepted +[1-9]\d*\/s/);
  expect(output).toMatch(/rows +[1-9]\d*\/s/);
  // The committed lag comes from the supervisor (read from the broker), not from a worker's poll loop.
  expect(output).toContain("(supervisor: committed lag per partition, restarts)");
  expect(output).toMatch(/lag +\d+ /);
  for (const child of childPids(proc.pid)) {
    descendants.add(child);
    for (const grandchild of childPids(child)) descendants.add(grandchild);
  }
  expect(descendants.size).toBeGreaterThanOrEqual(3); // server, supervisor, one worker

  proc.kill("SIGINT");
  expect(await proc.exited).toBe(0);
  await reading;
  expect(output).toMatch(/distinct events acknowledged/);
  expect([...descendants].filter(isAlive)).toEqual([]);
}, 120_000);
