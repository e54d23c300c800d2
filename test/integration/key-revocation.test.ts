// A revocation reaches the edge whatever else happens on the database side: a last_used_at
// write-back the role may not do does not hold back the reload (server/keys.ts), and a stats route
// saturated with slow queries does not delay the key refresh, which has its own pool in the server
// and in pgbouncer (API_KEYS_DATABASE_URL, the `<database>_keys` alias of tools/stack/postgres.ts).
//
// Mutations, each applied alone and caught (2026-12-06):
// | mutation                                                    | failed test                                         |
// |-------------------------------------------------------------|-----------------------------------------------------|
// | keys.ts: the write-back first, its failure skipping the reload (today's code before the fix) | SELECT-only role: revoked key still 202 after 5 s |
// | main.ts: the key refresh on DATABASE_URL (API_KEYS_DATABASE_URL ignored) | saturated stats: still 202 after 3 s     |
// | postgres.ts: pgbouncerIni without the `_keys` alias          | saturated stats: the key never loads                |
// pgbouncer pools per (database, user), so the alias has a pool of its own whatever its pool_size.
import { expect, test } from "bun:test";
import postgres from "postgres";
import { type KeysIo, keys } from "../../jobs/keys.ts";
import { sha256 } from "../../shared/api-keys.ts";
import { KEYS_DATABASE_SUFFIX } from "../../shared/local-stack.ts";
import { createLogger } from "../../shared/logger.ts";
import { metricValue } from "../../tools/harness.ts";
import {
  API_KEY,
  createDatabase,
  createKeyStore,
  createTestApp,
  createTopic,
  onCleanup,
  spawnPgbouncer,
  spawnServer,
} from "../helpers/fixtures.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack, stack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

const silentIo: KeysIo = { out: () => {}, audit: createLogger("keys", "silent"), operator: "test" };

/** `bun run keys create` (as the owner); the key's id and secret. */
async function createKey(sql: postgres.Sql): Promise<{ id: string; secret: string }> {
  const out: string[] = [];
  const code = await keys(["create", "--name", "revocation"], sql, { ...silentIo, out: (l) => out.push(l) });
  expect(code).toBe(0);
  return { id: /created (key_[0-9a-f]{12})/.exec(out[0] as string)?.[1] as string, secret: out.at(-1) as string };
}

const revoke = async (sql: postgres.Sql, id: string) => expect(await keys(["revoke", id], sql, silentIo)).toBe(0);
const headers = (key: string) => ({ authorization: `Bearer ${key}`, "content-type": "application/json" });

test("a role that may SELECT api_keys but not UPDATE last_used_at still sees a revocation within the interval", async () => {
  const role = `keys_ro_${Math.random().toString(36).slice(2, 8)}`;
  const admin = postgres(stack.adminDatabaseUrl, { max: 1, onnotice: () => {} });
  onCleanup(async () => {
    // After the database (cleanups run newest first): the role then owns and holds nothing.
    await admin.unsafe(`drop role if exists ${role}`);
    await admin.end({ timeout: 1 });
  });
  const db = await createDatabase();
  await admin.unsafe(`create role ${role} login password 'ro'`);
  await db.sql.unsafe(`grant connect on database ${db.name} to ${role}; grant select on api_keys to ${role}`);
  const bouncer = await spawnPgbouncer({ users: { [role]: "ro" } });
  const { store, registry } = await createKeyStore(bouncer.url(role, db.name), { refreshSeconds: 1 });
  const t = await createTestApp({ API_KEY_SHA256: "" }, { keyStore: store });
  const post = async (key: string) =>
    (await t.app.request("/v1/scans", { method: "POST", body: JSON.stringify(scan()), headers: headers(key) })).status;

  const key = await createKey(db.sql);
  await waitFor(
    "the new key to load",
    () => post(key.secret),
    (s) => s === 202,
    5_000,
    50,
  );
  // It was used: every refresh from now on tries to write last_used_at, and is refused (42501).
  await revoke(db.sql, key.id);
  const revokedAt = performance.now();
  await waitFor(
    "the revoked key to be refused",
    () => post(key.secret),
    (s) => s === 401,
    5_000,
    50,
  );
  const tookMs = performance.now() - revokedAt;
  expect(tookMs).toBeLessThan(1_000 + 2_000);
  const value = async (name: string) => (await registry.getSingleMetric(name)?.get())?.values[0]?.value;
  // The fault landed: the write-back was refused. It runs after the reload that saw the
  // revocation, so it may finish just after the 401 above.
  await waitFor(
    "a refused last_used_at write-back (api_keys_last_used_write_failures_total >= 1)",
    () => value("api_keys_last_used_write_failures_total"),
    (n) => (n ?? 0) >= 1,
    5_000,
    50,
  );
  expect(await value("api_keys_refresh_failures_total")).toBe(0);
}, 30_000);

test("the stats route saturated with slow queries (pgbouncer's pool full) does not delay a revocation", async () => {
  const db = await createDatabase();
  const topic = await createTopic(1);
  const key = await createKey(db.sql);
  // The product's pgbouncer.ini for this database: its pool of 20 and the `_keys` alias.
  const { edge } = stack.logins;
  const bouncer = await spawnPgbouncer({ users: { [edge.user]: edge.password }, product: { database: db.name } });
  const { url, metricsUrl } = await spawnServer({
    SCANS_TOPIC: topic,
    AUTH_DISABLED: "false",
    API_KEY_SHA256: sha256(API_KEY).toString("hex"),
    DATABASE_URL: bouncer.url(edge.user, db.name),
    API_KEYS_DATABASE_URL: bouncer.url(edge.user, `${db.name}${KEYS_DATABASE_SUFFIX}`),
    // More stats connections than pgbouncer's pool (default_pool_size 20 + reserve 5).
    DB_POOL_MAX: "40",
    API_KEYS_REFRESH_SECONDS: "1",
  });
  const post = () =>
    fetch(`${url}/v1/scans`, { method: "POST", body: JSON.stringify(scan()), headers: headers(key.secret) }).then(
      (r) => r.status,
    );
  await waitFor("the managed key to load", post, (s) => s === 202, 10_000, 50);

  // Slow stats queries: every one waits on a lock the test holds on rollup_state, which the stats
  // route reads first (the key refresh reads only api_keys).
  const direct = postgres(db.directUrl, { max: 1, onnotice: () => {} });
  onCleanup(() => direct.end({ timeout: 1 }));
  let release = () => {};
  const held = new Promise<void>((r) => {
    release = r;
  });
  let locked = () => {};
  const lockTaken = new Promise<void>((r) => {
    locked = r;
  });
  const lock = direct.begin(async (tx) => {
    await tx`lock table rollup_state in access exclusive mode`;
    locked();
    await held;
  });
  onCleanup(async () => {
    release();
    await lock;
  });
  await lockTaken;
  // Stopped by aborting what is in flight: the server is killed afterwards anyway.
  const stopFlood = new AbortController();
  const flood = Array.from({ length: 60 }, async () => {
    while (!stopFlood.signal.aborted) {
      await fetch(`${url}/v1/qr/QR-1/stats`, { headers: headers(API_KEY), signal: stopFlood.signal }).catch(() => {});
    }
  });
  onCleanup(async () => {
    stopFlood.abort();
    release();
    await Promise.all(flood);
  });
  // As the monitoring login (pg_monitor): other roles' activity is hidden from the owner.
  const { monitor } = stack.logins;
  const activity = postgres(`postgres://${monitor.user}:${monitor.password}@127.0.0.1:${stack.pgPort}/postgres`, {
    max: 1,
    onnotice: () => {},
  });
  onCleanup(() => activity.end({ timeout: 1 }));
  const waiting = await waitFor(
    "pgbouncer's pool for the stats route to be full: 20 stats queries waiting on the lock",
    async () =>
      Number(
        (
          await activity<{ n: number }[]>`
            select count(*)::int as n from pg_stat_activity
            where datname = ${db.name} and wait_event_type = 'Lock' and query like '%rollup_state%'`
        )[0]?.n,
      ),
    (n) => n >= 20,
    15_000,
  );
  expect(waiting).toBeGreaterThanOrEqual(20);

  await revoke(db.sql, key.id);
  const revokedAt = performance.now();
  await waitFor("the revoked key to be refused while stats are saturated", post, (s) => s === 401, 3_000, 50);
  const tookMs = performance.now() - revokedAt;
  console.log(`revocation with the stats route saturated: ${Math.round(tookMs)} ms (API_KEYS_REFRESH_SECONDS=1)`);
  expect(await metricValue(metricsUrl, "api_keys_refresh_failures_total")).toBe(0);
  stopFlood.abort();
  release();
  await lock;
  await Promise.all(flood);
}, 60_000);
