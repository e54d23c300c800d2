// The scan-client README's examples run as written (each its own Bun process) against the real
// edge (with a real API key), Kafka, worker and Postgres: they exit 0 and their scans are stored.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sha256 } from "../../shared/api-keys.ts";
import { API_KEY, createDatabase, onCleanup, spawnServer, spawnWorker, workerEnv } from "../helpers/fixtures.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

const EXAMPLES = join(import.meta.dir, "../../packages/scan-client/examples");

for (const [file, qrPrefix, count] of [
  ["quick-start.ts", "gate-7:", 3],
  ["offline-gate.ts", "gate-3:", 25],
] as const) {
  test(`examples/${file} runs and its ${count} scans are stored`, async () => {
    const db = await createDatabase();
    const env = await workerEnv(db.url, 2);
    spawnWorker(env, {}, { output: "ignore" });
    const server = await spawnServer({
      SCANS_TOPIC: env.scansTopic,
      DATABASE_URL: db.url,
      AUTH_DISABLED: "false",
      API_KEYS_DB: "false",
      API_KEY_SHA256: sha256(API_KEY).toString("hex"),
    });
    const dir = mkdtempSync(join(tmpdir(), "scan-client-example-"));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    const proc = Bun.spawn(["bun", join(EXAMPLES, file)], {
      env: {
        ...process.env,
        SCAN_CLIENT_ENDPOINT: server.url,
        SCAN_CLIENT_API_KEY: API_KEY,
        SCAN_CLIENT_JOURNAL: join(dir, "q.journal"),
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    onCleanup(async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await proc.exited;
    });
    const [code, stdout, stderr] = await Promise.all([
      proc.exited,
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    const metrics = JSON.parse(stdout.trim().split("\n").at(-1) as string);
    expect(metrics).toMatchObject({ queued: 0, sent: count, refused: 0 });
    await waitFor(
      `${count} rows with qr_id ${qrPrefix}* and their counts`,
      async () =>
        (
          await db.sql`select (select count(*)::int from scan_events where qr_id like ${`${qrPrefix}%`}) as rows,
                              (select coalesce(sum(count), 0)::int from scan_counts) as counted`
        )[0],
      (r) => r?.rows === count && r?.counted === count,
      30_000,
    );
  });
}
