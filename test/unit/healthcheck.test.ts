// The images' HEALTHCHECK (server/healthcheck.ts, worker/healthcheck.ts) exits 0 only on a 2xx
// /health, and says what it saw otherwise: a 503 (stalled worker, fatal producer) or no answer.
import { afterAll, expect, spyOn, test } from "bun:test";
import { probeHealth } from "../../shared/healthcheck.ts";
import { freePort } from "../../tools/stack/processes.ts";

let status = 200;
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: () => Response.json({ status: status === 200 ? "ok" : "stalled" }, { status }),
});
afterAll(() => server.stop(true));
const url = `http://127.0.0.1:${server.port}/health`;

test("exit code 0 on 200, 1 with the answer on 503, 1 with the error when nothing listens", async () => {
  const errors = spyOn(console, "error").mockImplementation(() => {});
  try {
    status = 200;
    expect(await probeHealth(url)).toBe(0);
    expect(errors).not.toHaveBeenCalled();

    status = 503;
    expect(await probeHealth(url)).toBe(1);
    expect(String(errors.mock.calls[0]?.[0])).toBe(`${url} answered 503: {"status":"stalled"}`);

    const closed = `http://127.0.0.1:${freePort()}/health`;
    expect(await probeHealth(closed, 1_000)).toBe(1);
    expect(String(errors.mock.calls[1]?.[0])).toStartWith(`${closed}: `);
  } finally {
    errors.mockRestore();
  }
});
