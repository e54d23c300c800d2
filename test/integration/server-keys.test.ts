// Managed API keys against the real stack: `bun run keys` writes the api_keys table of a throwaway
// database (through pgbouncer), the edge loads it (in-process, or as its own process for the
// refresh loop, fail static and /ready), and scopes and tenants are enforced per route.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KeysIo, keys } from "../../jobs/keys.ts";
import { newSecret } from "../../shared/api-keys.ts";
import { sha256 } from "../../shared/api-keys.ts";
import { createLogger } from "../../shared/logger.ts";
import { migrate, readMigrations } from "../../sql/migrate.ts";
import { killProcess, metricValue, spawnProcess } from "../../tools/harness.ts";
import {
  API_KEY,
  createDatabase,
  createKeyStore,
  createTestApp,
  createTopic,
  onCleanup,
  spawnServer,
} from "../helpers/fixtures.ts";
import { freePort, scan } from "../helpers/server.ts";
import { brokerConfig, ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

/** Runs `bun run keys …` in-process against `sql`; its output lines and audit lines. */
async function run(sql: Parameters<typeof keys>[1], ...argv: string[]) {
  const out: string[] = [];
  const auditLines: string[] = [];
  const io: KeysIo = {
    out: (l) => out.push(l),
    audit: createLogger("keys", "info", { write: (l: string) => void auditLines.push(l) }),
    operator: "test",
  };
  const code = await keys(argv, sql, io);
  return { code, out, audit: auditLines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** Creates a key; its id and secret. */
async function create(sql: Parameters<typeof keys>[1], ...argv: string[]) {
  const r = await run(sql, "create", "--name", "acme", ...argv);
  expect(r.code).toBe(0);
  const secret = r.out.at(-1) as string;
  const id = /created (key_[0-9a-f]{12})/.exec(r.out[0] as string)?.[1] as string;
  expect(secret).toMatch(/^qrs_[A-Za-z0-9_-]{43}$/);
  return { id, secret, audit: r.audit };
}

const headers = (key: string) => ({ authorization: `Bearer ${key}`, "content-type": "application/json" });

type Database = Awaited<ReturnType<typeof createDatabase>>;

async function managedApp(
  env: Record<string, string> = {},
  { refreshSeconds = 1, database }: { refreshSeconds?: number; database?: Database } = {},
) {
  const db = database ?? (await createDatabase());
  const { store, registry } = await createKeyStore(db.url, { refreshSeconds });
  const t = await createTestApp({ API_KEY_SHA256: "", ...env }, { keyStore: store, sql: db.sql });
  const post = (key: string, events: unknown = [scan()]) =>
    t.app.request("/v1/scans", { method: "POST", body: JSON.stringify(events), headers: headers(key) });
  const stats = (key: string, qrId: string) =>
    t.app.request(`/v1/qr/${encodeURIComponent(qrId)}/stats`, { headers: headers(key) });
  const failures = async (reason: string) =>
    (await t.registry.getSingleMetric("auth_failures_total")?.get())?.values.find((v) => v.labels.reason === reason)
      ?.value;
  return { db, store, registry, t, post, stats, failures };
}

describe("bun run keys", () => {
  test("create prints the secret once and stores only its digest; list never shows it; audit lines carry no secret", async () => {
    const { sql } = await createDatabase();
    const a = await create(
      sql,
      "--scopes",
      "scans:write,stats:read",
      "--qr-prefix",
      "acme:",
      "--rate",
      "50",
      "--burst",
      "100",
    );
    const [row] = await sql<{ secret_sha256: Buffer; prefix: string; scopes: string[] }[]>`
      select secret_sha256, prefix, scopes from api_keys where id = ${a.id}`;
    expect(row?.secret_sha256.toString("hex")).toBe(new Bun.CryptoHasher("sha256").update(a.secret).digest("hex"));
    expect(row?.prefix).toBe(a.secret.slice(0, 8));
    expect(row?.scopes).toEqual(["scans:write", "stats:read"]);
    expect(a.audit).toHaveLength(1);
    expect(a.audit[0]).toMatchObject({ audit: "api_key", action: "create", key_id: a.id, operator: "test" });
    expect(JSON.stringify(a.audit)).not.toContain(a.secret.slice(8));

    const list = await run(sql, "list");
    expect(list.out).toHaveLength(2);
    expect(list.out[1]).toContain(a.id);
    expect(list.out[1]).toContain("acme:");
    expect(list.out[1]).toContain("50/100");
    expect(list.out.join("\n")).not.toContain(a.secret.slice(8));

    const revoked = await run(sql, "revoke", a.id);
    expect(revoked.code).toBe(0);
    expect(revoked.audit[0]).toMatchObject({ action: "revoke", key_id: a.id });
    expect((await run(sql, "list")).out).toHaveLength(1);
    expect((await run(sql, "list", "--all")).out[1]).toContain("revoked");
    expect((await run(sql, "revoke", "key_000000000000")).code).toBe(1);
    expect((await run(sql, "rotate", a.id)).code).toBe(1); // a revoked key is not rotated
    await expect(run(sql, "create", "--name", "x", "--scopes", "admin")).rejects.toThrow(/--scopes: admin/);
    await expect(run(sql, "create")).rejects.toThrow(/needs --name/);
  });

  test("as a process: the secret alone on stdout's last line, one JSON audit line on stderr", async () => {
    const db = await createDatabase();
    const proc = spawnProcess({
      cmd: ["bun", "jobs/keys.ts", "create", "--name", "cli"],
      env: { DATABASE_URL: db.url },
      output: "pipe",
    });
    onCleanup(() => killProcess(proc));
    const [code, stdout, stderr] = await Promise.all([
      proc.exited,
      new Response(proc.stdout as ReadableStream).text(),
      new Response(proc.stderr as ReadableStream).text(),
    ]);
    expect({ code, stderr: code ? stderr : "" }).toEqual({ code: 0, stderr: "" });
    const secret = stdout.trim().split("\n").at(-1) as string;
    expect(secret).toMatch(/^qrs_/);
    const audit = stderr.trim().split("\n");
    expect(audit).toHaveLength(1);
    expect(JSON.parse(audit[0] as string)).toMatchObject({ service: "keys", action: "create", name: "cli" });
    expect(stderr).not.toContain(secret.slice(8));
  }, 30_000);
});

describe("tenants, rotation's expiry and static keys (issue 22)", () => {
  test("--qr-prefix is a tenant prefix ending in ':' that neither contains nor extends another live tenant's", async () => {
    const { sql } = await createDatabase();
    for (const bad of ["acme", "acme-", "acme:eu", "*", "", "ac me:"]) {
      await expect(run(sql, "create", "--name", "x", "--qr-prefix", bad)).rejects.toThrow(
        `--qr-prefix ${JSON.stringify(bad)}: a tenant is one or more segments of A-Z a-z 0-9 . _ - each ending in ":"`,
      );
    }
    const acme = await create(sql, "--qr-prefix", "acme:");
    const acme2 = await create(sql, "--qr-prefix", "acme:"); // another key of the same tenant
    await create(sql, "--qr-prefix", "acme2:"); // starts with "acme" but is another segment
    await create(sql, "--qr-prefix", "globex:eu:");
    // Extends acme: (it would be inside acme's QR ids), contains globex:eu: (it would read them).
    await expect(run(sql, "create", "--name", "eu", "--qr-prefix", "acme:eu:")).rejects.toThrow(
      `--qr-prefix acme:eu:: overlaps another tenant's keys (${[acme.id, acme2.id]
        .sort()
        .map((id) => `${id} (acme, acme:)`)
        .join(", ")})`,
    );
    await expect(run(sql, "create", "--name", "globex", "--qr-prefix", "globex:")).rejects.toThrow(
      /--qr-prefix globex:: overlaps another tenant's keys \(key_[0-9a-f]{12} \(acme, globex:eu:\)\)/,
    );
    const [{ n } = { n: 0 }] = await sql<{ n: number }[]>`select count(*)::int as n from api_keys`;
    expect(n).toBe(4);
    // Revoked keys read nothing: their tenant is free again.
    await run(sql, "revoke", acme.id);
    await run(sql, "revoke", acme2.id);
    await create(sql, "--qr-prefix", "acme:eu:");
  });

  test("the edge: a key of tenant acme: reads and writes acme:… only, never acme2-secret or acme2:…", async () => {
    const { db, store, post, stats } = await managedApp();
    await db.sql`insert into scan_counts (qr_id, bucket, count) values ('acme:1', now(), 3), ('acme2-secret', now(), 5), ('acme2:1', now(), 7)`;
    const k = await create(db.sql, "--scopes", "scans:write,stats:read", "--qr-prefix", "acme:");
    await store.refresh();
    expect((await stats(k.secret, "acme:1")).status).toBe(200);
    expect((await post(k.secret, [scan({ qr_id: "acme:1" })])).status).toBe(202);
    for (const other of ["acme2-secret", "acme2:1", "acme-1", "acme"]) {
      expect({
        other,
        read: (await stats(k.secret, other)).status,
        write: (await post(k.secret, [scan({ qr_id: other })])).status,
      }).toEqual({ other, read: 403, write: 403 });
    }
  }, 30_000);

  test("a key whose prefix lacks the delimiter (written before migration 0007) matches no QR id, on either route", async () => {
    // An edge of this version against a database not yet migrated to 0007 (a rolling upgrade).
    const database = await createDatabase({ migrated: false });
    const dir = mkdtempSync(join(tmpdir(), "qrscan-migrations-"));
    for (const m of readMigrations().filter((m) => m.version < 7)) {
      writeFileSync(join(dir, `${String(m.version).padStart(4, "0")}_${m.name}.sql`), m.sql);
    }
    await migrate(database.directUrl, dir);
    const legacy = newSecret();
    await database.sql`
      insert into api_keys (id, name, prefix, secret_sha256, scopes, qr_prefix)
      values ('key_00000000aaaa', 'acme', ${legacy.slice(0, 8)}, ${sha256(legacy)}, ${["scans:write", "stats:read"]}, 'acme')`;
    await database.sql`insert into scan_counts (qr_id, bucket, count) values ('acme2-secret', now(), 5), ('acme-1', now(), 1)`;
    const { store, post, stats } = await managedApp({}, { database });
    await store.refresh();
    // The issue's case: prefix acme read acme2-secret's stats (200). Now nothing matches it.
    for (const qr of ["acme2-secret", "acme-1", "acme:1"]) {
      expect({
        qr,
        read: (await stats(legacy, qr)).status,
        write: (await post(legacy, [scan({ qr_id: qr })])).status,
      }).toEqual({ qr, read: 403, write: 403 });
    }
  }, 30_000);

  test("rotate keeps the expiry policy: a 90-day key's successor is a 90-day key, a permanent key's is permanent, --expires-in changes it", async () => {
    const { sql } = await createDatabase();
    const successorExpiry = async (id: string, ...argv: string[]) => {
      const r = await run(sql, "rotate", id, ...argv);
      expect(r.code).toBe(0);
      const [row] = await sql<
        { expires_at: Date | null }[]
      >`select expires_at from api_keys where rotated_from = ${id}`;
      return { row, out: r.out[0] as string, audit: r.audit[0] };
    };
    const day = 86_400_000;
    const k90 = await create(sql, "--expires-in", "90d");
    const a = await successorExpiry(k90.id);
    expect(Math.abs((a.row?.expires_at?.getTime() ?? 0) - (Date.now() + 90 * day))).toBeLessThan(60_000);
    expect(a.out).toContain(`expires ${a.row?.expires_at?.toISOString().replace(/\.\d+Z$/, "Z")}`);
    expect(a.audit?.expires_at).toBe(a.row?.expires_at?.toISOString());

    const permanent = await create(sql);
    const b = await successorExpiry(permanent.id);
    expect(b.row?.expires_at).toBeNull();
    expect(b.out).toContain("does not expire");

    const changed = await successorExpiry((await create(sql, "--expires-in", "90d")).id, "--expires-in", "7d");
    expect(Math.abs((changed.row?.expires_at?.getTime() ?? 0) - (Date.now() + 7 * day))).toBeLessThan(60_000);
  });

  test("keys static prints a 256-bit key and its digest, without a database; the edge refuses a static key of another shape (weak_key)", async () => {
    const proc = spawnProcess({
      cmd: ["bun", "jobs/keys.ts", "static"],
      // Nothing listens there: the command must not need the database.
      env: { DATABASE_URL: `postgres://qrscan:qrscan@127.0.0.1:${freePort()}/qrscan` },
      output: "pipe",
    });
    onCleanup(() => killProcess(proc));
    const [code, stdout] = await Promise.all([proc.exited, new Response(proc.stdout as ReadableStream).text()]);
    const lines = stdout.trim().split("\n");
    expect({ code, lines: lines.length }).toEqual({ code: 0, lines: 4 });
    const [, key, , digest] = lines as [string, string, string, string];
    expect(key).toMatch(/^qrs_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(key.slice(4), "base64url")).toHaveLength(32);
    expect(digest).toBe(sha256(key).toString("hex"));

    const weak = "change-me";
    const { post, failures } = await managedApp({ API_KEY_SHA256: `${sha256(weak).toString("hex")},${digest}` });
    const refused = await post(weak);
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({
      error:
        "API key refused: static keys must come from `bun run keys static` (qrs_ and 43 random characters); ask the operator for one",
    });
    expect((await post(key)).status).toBe(202);
    expect(await failures("weak_key")).toBe(1);
  }, 30_000);
});

describe("the edge with managed keys", () => {
  test("keys from Postgres are accepted; revoked, expired and unknown ones are 401s counted by reason", async () => {
    const { db, store, post, failures } = await managedApp();
    const a = await create(db.sql);
    const b = await create(db.sql, "--expires-in", "2s");
    await store.refresh();
    expect((await post(a.secret)).status).toBe(202);
    expect((await post(b.secret)).status).toBe(202);
    // Expiry is checked per request, without a reload.
    await Bun.sleep(2_100);
    const expired = await post(b.secret);
    expect(expired.status).toBe(401);
    expect(await expired.json()).toMatchObject({ error: "API key expired: ask for a new one" });
    await run(db.sql, "revoke", a.id);
    await store.refresh();
    const revoked = await post(a.secret);
    expect(revoked.status).toBe(401);
    expect(await revoked.json()).toMatchObject({ error: "API key revoked: ask for a new one" });
    expect((await post("qrs_notakeyatallnotakeyatallnotakeyatall")).status).toBe(401);
    expect((await post(API_KEY)).status).toBe(401); // static keys are off here (API_KEY_SHA256="")
    expect([await failures("expired_key"), await failures("revoked_key"), await failures("unknown_key")]).toEqual([
      1, 1, 2,
    ]);
  }, 30_000);

  test("last use is written back once per refresh, not per request", async () => {
    // Only the explicit refreshes below: a timer's refresh between the requests and the first
    // read would flush early (it did once, in a loaded CI run).
    const { db, store, post } = await managedApp({}, { refreshSeconds: 3_600 });
    const a = await create(db.sql);
    await store.refresh();
    for (let i = 0; i < 3; i++) expect((await post(a.secret)).status).toBe(202);
    const before = await db.sql<{ last_used_at: Date | null }[]>`select last_used_at from api_keys where id = ${a.id}`;
    expect(before[0]?.last_used_at).toBeNull();
    await store.refresh();
    const [after] = await db.sql<{ last_used_at: Date }[]>`select last_used_at from api_keys where id = ${a.id}`;
    expect(Date.now() - (after?.last_used_at.getTime() ?? 0)).toBeLessThan(10_000);
  }, 30_000);

  test("rotate: both keys work during the overlap, then only the successor", async () => {
    const { db, store, post } = await managedApp();
    const old = await create(db.sql, "--scopes", "scans:write,stats:read", "--qr-prefix", "acme:");
    const r = await run(db.sql, "rotate", old.id, "--overlap", "3s");
    expect(r.code).toBe(0);
    const successor = r.out.at(-1) as string;
    expect(r.audit[0]).toMatchObject({ action: "rotate", old_key_id: old.id, qr_prefix: "acme:" });
    const [row] = await db.sql<{ scopes: string[]; qr_prefix: string; rotated_from: string }[]>`
      select scopes, qr_prefix, rotated_from from api_keys where secret_sha256 = ${new Bun.CryptoHasher("sha256").update(successor).digest()}`;
    expect(row).toEqual({ scopes: ["scans:write", "stats:read"], qr_prefix: "acme:", rotated_from: old.id });
    await store.refresh();
    const event = [scan({ qr_id: "acme:1" })];
    expect([(await post(old.secret, event)).status, (await post(successor, event)).status]).toEqual([202, 202]);
    await waitFor(
      "the old key to expire at the end of the overlap",
      async () => (await post(old.secret, event)).status,
      (s) => s === 401,
      10_000,
      250,
    );
    expect((await post(successor, event)).status).toBe(202);
  }, 30_000);

  test("scopes per route and tenants: 403s, counted by reason", async () => {
    const { db, store, post, stats, failures } = await managedApp();
    await db.sql`insert into scan_counts (qr_id, bucket, count) values ('acme:1', now(), 3), ('globex:1', now(), 4)`;
    const writer = await create(db.sql, "--scopes", "scans:write");
    const reader = await create(db.sql, "--scopes", "stats:read");
    const tenant = await create(db.sql, "--scopes", "scans:write,stats:read", "--qr-prefix", "acme:");
    await store.refresh();

    expect((await stats(writer.secret, "acme:1")).status).toBe(403);
    const noWrite = await post(reader.secret);
    expect(noWrite.status).toBe(403);
    expect(await noWrite.json()).toMatchObject({ error: "this credential lacks the scope scans:write" });
    expect((await stats(reader.secret, "globex:1")).status).toBe(200);

    const own = await stats(tenant.secret, "acme:1");
    expect(own.status).toBe(200);
    expect(await own.json()).toMatchObject({ total: 3 });
    const other = await stats(tenant.secret, "globex:1");
    expect(other.status).toBe(403);
    expect(await other.json()).toMatchObject({
      error: `qr_id "globex:1" is outside this credential's QR ids (acme:…)`,
    });
    expect((await post(tenant.secret, [scan({ qr_id: "acme:7" })])).status).toBe(202);
    // One event outside the tenant refuses the whole request, before anything is sent.
    const mixed = await post(tenant.secret, [scan({ qr_id: "acme:7" }), scan({ qr_id: "globex:7" })]);
    expect(mixed.status).toBe(403);
    expect(await mixed.json()).toMatchObject({
      error: `event 1: qr_id "globex:7" is outside this credential's QR ids (acme:…)`,
    });
    expect([await failures("scope"), await failures("tenant")]).toEqual([2, 2]);
  }, 30_000);

  test("static keys keep working beside managed ones, with both scopes and no tenant", async () => {
    const { db, store, post, stats } = await managedApp({
      API_KEY_SHA256: new Bun.CryptoHasher("sha256").update(API_KEY).digest("hex"),
    });
    const managed = await create(db.sql);
    await store.refresh();
    expect((await post(API_KEY, [scan({ qr_id: "any-1" })])).status).toBe(202);
    expect((await stats(API_KEY, "any-1")).status).toBe(200);
    expect((await post(managed.secret)).status).toBe(202);
  }, 30_000);
});

describe("the audit trail of failures", () => {
  test("a flood of bad keys is counted in full but logged once per reason per 10 s, with the shown prefix only", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger("server-test", "warn", { write: (l: string) => void lines.push(JSON.parse(l)) });
    // The per-address failed-auth limit (server/rate-limit.ts) would answer 429 after its burst: off.
    const t = await createTestApp({ AUTH_FAILURES_PER_MINUTE: "0" }, { logger });
    const guesses = Array.from({ length: 50 }, (_, i) => `qrs_guess${i}${"x".repeat(40)}`);
    for (const key of guesses) expect((await t.post(JSON.stringify(scan()), headers(key))).status).toBe(401);
    const short = await t.post(JSON.stringify(scan()), { authorization: "Bearer short-secret" });
    expect(short.status).toBe(401);
    const counted = (await t.registry.getSingleMetric("auth_failures_total")?.get())?.values.find(
      (v) => v.labels.reason === "unknown_key",
    );
    expect(counted?.value).toBe(51);
    const logged = lines.filter((l) => l.reason === "unknown_key");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ key_prefix: "qrs_gues", msg: "authentication failed; answered 401" });
    const all = JSON.stringify(lines);
    expect(guesses.filter((g) => all.includes(g.slice(8)))).toEqual([]);
    expect(all).not.toContain("short-secret");
  });
});

describe("the edge server process", () => {
  test("a revocation takes effect within the refresh interval; with Postgres gone the last good set keeps serving", async () => {
    const db = await createDatabase();
    const a = await create(db.sql);
    const b = await create(db.sql);
    const topic = await createTopic(1);
    const { url, metricsUrl } = await spawnServer({
      SCANS_TOPIC: topic,
      AUTH_DISABLED: "false",
      DATABASE_URL: db.url,
      API_KEYS_REFRESH_SECONDS: "1",
    });
    const post = (key: string) =>
      fetch(`${url}/v1/scans`, { method: "POST", body: JSON.stringify(scan()), headers: headers(key) }).then(
        (r) => r.status,
      );
    expect([await post(a.secret), await post(b.secret)]).toEqual([202, 202]);

    await run(db.sql, "revoke", a.id);
    const revokedAt = performance.now();
    await waitFor(
      "the revoked key to be refused",
      () => post(a.secret),
      (s) => s === 401,
      10_000,
      50,
    );
    const tookMs = performance.now() - revokedAt;
    console.log(`revocation took effect after ${Math.round(tookMs)} ms (API_KEYS_REFRESH_SECONDS=1)`);
    // One interval, plus a reload's own time and the polling on a busy 2-core machine.
    expect(tookMs).toBeLessThan(1_000 + 2_000);
    expect(await metricValue(metricsUrl, "api_keys_loaded")).toBe(1);

    // Postgres gone for the server: its database is dropped. Refreshes fail; the last set stays.
    const failuresBefore = await metricValue(metricsUrl, "api_keys_refresh_failures_total");
    await db.drop();
    await waitFor(
      "api_keys_refresh_failures_total to grow",
      () => metricValue(metricsUrl, "api_keys_refresh_failures_total"),
      (n) => n >= failuresBefore + 2,
      15_000,
    );
    const lastSuccess = await metricValue(metricsUrl, "api_keys_last_refresh_success_timestamp_seconds");
    expect(Date.now() / 1000 - lastSuccess).toBeGreaterThan(1);
    expect([await post(b.secret), await post(a.secret)]).toEqual([202, 401]);
    expect((await fetch(`${url}/ready`)).status).toBe(200);
  }, 60_000);

  test("/ready is 503 while no key set can be trusted (Postgres unreachable, or no api_keys table), 200 once one loads", async () => {
    const topic = await createTopic(1);
    /** A server with managed keys only, on `databaseUrl`; its /ready. */
    const start = (databaseUrl: string) => {
      const port = freePort();
      const proc = spawnProcess({
        cmd: ["bun", "server/main.ts"],
        env: {
          HOST: "127.0.0.1",
          PORT: String(port),
          METRICS_PORT: String(freePort()),
          AUTH_DISABLED: "false",
          API_KEY_SHA256: "",
          LOG_LEVEL: "fatal",
          KAFKA_BROKERS: String(brokerConfig["bootstrap.servers"]),
          SCANS_TOPIC: topic,
          DATABASE_URL: databaseUrl,
          API_KEYS_REFRESH_SECONDS: "1",
        },
        output: "ignore",
      });
      onCleanup(() => killProcess(proc));
      return () =>
        fetch(`http://127.0.0.1:${port}/ready`, { signal: AbortSignal.timeout(2_000) }).then(async (r) => ({
          status: r.status,
          body: (await r.json()) as { status: string },
        }));
    };
    const waitingForKeys = (r: { body: { status: string } }) => r.body.status === "waiting for the API keys";

    // Postgres unreachable: past "waiting for Kafka" (the broker is up), the keys are what it waits for.
    const unreachable = start(`postgres://qrscan:qrscan@127.0.0.1:${freePort()}/qrscan`);
    const seen = await waitFor("/ready to say it waits for the API keys", unreachable, waitingForKeys, 20_000);
    expect(seen.status).toBe(503);

    // A database without the api_keys table: 503 too, until the migration runs; then 200.
    const db = await createDatabase({ migrated: false });
    const unmigrated = start(db.url);
    expect((await waitFor("/ready to wait for the keys", unmigrated, waitingForKeys, 20_000)).status).toBe(503);
    await Bun.sleep(1_500);
    expect(await unmigrated()).toEqual({ status: 503, body: { status: "waiting for the API keys" } });
    await migrate(db.directUrl);
    await waitFor("/ready to answer 200 once the keys load", unmigrated, (r) => r.status === 200, 10_000);
    expect(await unreachable()).toEqual(seen);
  }, 60_000);
});
