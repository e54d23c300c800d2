// `bun run dlq` (jobs/dlq.ts) against the real Postgres and Kafka: list, show, and replay after a
// fix, where a payload the worker still cannot store is skipped and named, and a replayed event is
// stored once by a real worker.
//
// Mutations checked (each alone, then reverted): stillPoison() always null → the undecodable dead
// letter is replayed (the dry run's "1 would be replayed" and the skip line fail); replayed_at not
// set → the second replay produces it again (expected "replayed 0").
import { expect, test } from "bun:test";
import { createDatabase, spawnWorker, workerEnv, workerProcessEnv } from "../helpers/fixtures.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { record } from "../helpers/worker.ts";

await ensureStack();

const ROOT = new URL("../..", import.meta.url).pathname;

async function dlq(env: Record<string, string>, ...args: string[]) {
  const proc = Bun.spawn(["bun", "jobs/dlq.ts", ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, out: stdout + stderr };
}

test("list, show, replay after a fix: storable ones replayed once and stored, the rest skipped by name", async () => {
  const db = await createDatabase();
  const env = await workerEnv(db.url, 1);
  const processEnv = workerProcessEnv(env);
  const fixed = record();
  const [storable] = await db.sql<{ id: string }[]>`
    insert into dead_letters (source_topic, source_partition, source_offset, key, payload, error, failed_at)
    values (${env.scansTopic}, 0, 41, ${Buffer.from(fixed.event.qr_id)}, ${Buffer.from(fixed.value)},
            'rejected by Postgres: a bug since fixed', now())
    returning id`;
  const [garbage] = await db.sql<{ id: string }[]>`
    insert into dead_letters (source_topic, source_partition, source_offset, key, payload, error, failed_at)
    values (${env.scansTopic}, 0, 42, null, ${Buffer.from("{not json")}, 'undecodable payload', now())
    returning id`;

  const listed = await dlq(processEnv, "list");
  expect(listed.code).toBe(0);
  expect(listed.out).toStartWith("2 pending dead letter(s); newest first:\n");
  expect(listed.out).toContain(`${storable?.id}\t${env.scansTopic}/0@41\t`);
  expect(listed.out).toContain(`${garbage?.id}\t${env.scansTopic}/0@42\t`);

  const shown = await dlq(processEnv, "show", String(garbage?.id));
  expect(shown.out).toContain("payload     {not json");
  expect(shown.out).toMatch(/replayable {2}no: undecodable payload/);

  const dry = await dlq(processEnv, "replay", "--all", "--dry-run");
  expect(dry.code).toBe(1);
  expect(dry.out).toContain(`skip ${garbage?.id} (${env.scansTopic}/0@42): still not storable: undecodable payload`);
  expect(dry.out).toContain(`dry run: 1 would be replayed to ${env.scansTopic}, 1 skipped`);

  const replayed = await dlq(processEnv, "replay", "--all");
  expect(replayed.code).toBe(1);
  expect(replayed.out).toContain(`replayed 1 to ${env.scansTopic}; 1 skipped`);
  const states = await db.sql<{ id: string; replayed: boolean }[]>`
    select id, replayed_at is not null as replayed from dead_letters order by id`;
  expect(states.map((s) => [s.id, s.replayed])).toEqual([
    [String(storable?.id), true],
    [String(garbage?.id), false],
  ]);

  // A real worker stores the replayed event, once.
  spawnWorker(env);
  const stored = await waitFor(
    "the replayed event's row",
    async () =>
      (await db.sql`select count(*)::int as n from scan_events where event_id = ${fixed.event.event_id}`)[0]?.n,
    (n) => n === 1,
    30_000,
  );
  expect(stored).toBe(1);

  const again = await dlq(processEnv, "replay", String(storable?.id));
  expect(again.code).toBe(0);
  expect(again.out).toContain(`replayed 0 to ${env.scansTopic}; 0 skipped`);
  expect((await dlq(processEnv, "list")).out).toStartWith("1 pending dead letter(s)");
  expect((await dlq(processEnv, "frobnicate")).code).toBe(2);
}, 90_000);
