// worker/supervisor.ts starts the pool only as the entry point (`bun worker/supervisor.ts`):
// importing it, or the pool and lag modules, runs nothing.
import { expect, test } from "bun:test";

const ROOT = new URL("../..", import.meta.url).pathname;

test("importing the supervisor's modules starts nothing; running it as the entry point does", () => {
  // An invalid WORKER_POOL_SIZE makes a start visible at once: the supervisor logs it and exits 1.
  const env = { ...process.env, WORKER_POOL_SIZE: "0" };
  const imported = Bun.spawnSync(
    [
      "bun",
      "-e",
      'await import("./worker/supervisor.ts"); await import("./worker/pool.ts"); await import("./worker/group-lag.ts"); console.log("imported")',
    ],
    { cwd: ROOT, env },
  );
  expect(imported.stdout.toString().trim()).toBe("imported");
  expect(imported.exitCode).toBe(0);

  const entry = Bun.spawnSync(["bun", "worker/supervisor.ts"], { cwd: ROOT, env });
  expect(entry.exitCode).toBe(1);
  expect(entry.stdout.toString()).toContain('WORKER_POOL_SIZE=\\"0\\": must be >= 1');
});
