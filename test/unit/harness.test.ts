// The shared harness (tools/harness.ts) without the stack: a process that never gets ready is
// killed and the error says what was awaited and what was last seen; a missing metric is an error.
import { expect, test } from "bun:test";
import { metricValue, scrape, spawnUntilReady } from "../../tools/harness.ts";
import { freePort } from "../../tools/stack/processes.ts";
import { onCleanup } from "../helpers/fixtures.ts";

/** A process that answers every request with `status` on a free port. */
const answering = (status: number, port: number) => [
  "bun",
  "-e",
  `Bun.serve({ hostname: "127.0.0.1", port: ${port}, fetch: () => new Response("no", { status: ${status} }) })`,
];

test("spawnUntilReady resolves once the process answers 2xx", async () => {
  const port = freePort();
  const proc = await spawnUntilReady({
    name: "ok server",
    cmd: answering(200, port),
    readyUrl: `http://127.0.0.1:${port}/ready`,
    readyTimeoutMs: 10_000,
  });
  onCleanup(async () => {
    proc.kill("SIGKILL");
    await proc.exited;
  });
  expect(proc.exitCode).toBeNull();
  expect((await fetch(`http://127.0.0.1:${port}/ready`)).status).toBe(200);
});

test("a process that never gets ready is killed; the error names the wait and the last status seen", async () => {
  const port = freePort();
  const readyUrl = `http://127.0.0.1:${port}/ready`;
  let error: Error | undefined;
  const started = Date.now();
  await spawnUntilReady({ name: "unready server", cmd: answering(503, port), readyUrl, readyTimeoutMs: 1_500 }).catch(
    (e: Error) => {
      error = e;
    },
  );
  expect(Date.now() - started).toBeLessThan(10_000);
  expect(error?.message).toMatch(
    new RegExp(`waiting for unready server \\(pid \\d+\\) to answer ${readyUrl} as ready; last saw \\{"status":503\\}`),
  );
  // Killed by pid: nothing answers there any more.
  expect(
    await fetch(readyUrl).then(
      () => "answered",
      () => "refused",
    ),
  ).toBe("refused");
});

test("a process that exits before it is ready: the error says so, with its exit code and stderr", async () => {
  const port = freePort();
  const failure = await spawnUntilReady({
    name: "crashing server",
    cmd: ["bun", "-e", 'console.error("no config"); process.exit(3)'],
    output: "pipe",
    readyUrl: `http://127.0.0.1:${port}/ready`,
    readyTimeoutMs: 10_000,
  }).then(
    () => null,
    (e: Error) => e.message,
  );
  expect(failure).toContain("crashing server");
  expect(failure).toContain("exited with code 3");
  expect(failure).toContain("no config");
});

test("metricValue reads a series, sums labelled ones, and throws for a missing one instead of reading 0", async () => {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () =>
      new Response(
        [
          "# TYPE rows_total counter",
          "rows_total 42",
          'lag{partition="0"} 3',
          'lag{partition="1"} 4',
          "idle_total 0",
        ].join("\n"),
      ),
  });
  onCleanup(() => server.stop(true));
  const url = `http://127.0.0.1:${server.port}/metrics`;
  expect(await metricValue(url, "rows_total")).toBe(42);
  expect(await metricValue(url, "lag")).toBe(7);
  expect(await metricValue(url, "idle_total")).toBe(0);
  await expect(metricValue(url, "missing_total")).rejects.toThrow(`${url} has no series named missing_total`);
  expect((await scrape(url)).length).toBe(4);
  await expect(scrape(`http://127.0.0.1:${freePort()}/metrics`)).rejects.toThrow();
});
