// Least-privilege database roles (sql/migrations/0009_roles.sql; docs/security.md, "Database
// roles"): the grants are exactly the expected ones, and each login user, connecting through
// pgbouncer as the product does, can do its job and is refused (SQLSTATE 42501) everything else.
//
// Mutations, each applied alone and caught (2026-12-06):
// | mutation                                                        | failed test                          |
// |-----------------------------------------------------------------|--------------------------------------|
// | 0009 + GRANT ALL ON ALL TABLES IN SCHEMA public TO qrscan_edge  | the grants; the edge (INSERT… passed) |
// | 0009 + GRANT CREATE ON SCHEMA public TO qrscan_worker           | the grants; the worker (CREATE TABLE) |
// | 0009 without SECURITY DEFINER on the partition function         | the grants; the worker stores         |
// | 0009 without the column SELECT on dead_letters                  | the worker stores (no dead letter)    |
// | 0009 without REVOKE … TEMPORARY … FROM PUBLIC                   | the grants; the edge (temp table)     |
import { expect, test } from "bun:test";
import postgres from "postgres";
import { sha256 } from "../../shared/api-keys.ts";
import type { ScanEvent } from "../../shared/event.ts";
import {
  API_KEY,
  createDatabase,
  createKeyStore,
  createProducer,
  createTestApp,
  onCleanup,
  spawnWorker,
  urlAs,
  workerEnv,
} from "../helpers/fixtures.ts";
import { tally } from "../helpers/postgres.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack, stack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { produceEvents } from "../helpers/worker.ts";

await ensureStack();
const { edge, worker } = stack.logins;

/**
 * Every privilege PUBLIC and the two group roles hold in the database, its public schema and its
 * objects, as "grantee: PRIVILEGE[(column)] on object". Partitions are included (they need none).
 * The owner's own rights are not listed: it owns everything.
 */
async function grants(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql<{ line: string }[]>`
    with grantees(oid, name) as (
      values (0::oid, 'PUBLIC'),
             ((select oid from pg_roles where rolname = 'qrscan_edge'), 'qrscan_edge'),
             ((select oid from pg_roles where rolname = 'qrscan_worker'), 'qrscan_worker')
    ), acls(object, acl, owner) as (
      select 'database', coalesce(datacl, acldefault('d'::"char", datdba)), datdba from pg_database
        where datname = current_database()
      union all
      select 'schema public', coalesce(nspacl, acldefault('n'::"char", nspowner)), nspowner from pg_namespace
        where nspname = 'public'
      union all
      select c.relname, coalesce(c.relacl, acldefault((case when c.relkind = 'S' then 's' else 'r' end)::"char", c.relowner)), c.relowner
        from pg_class c where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'S', 'v', 'm', 'f')
      union all
      select p.oid::regprocedure::text, coalesce(p.proacl, acldefault('f'::"char", p.proowner)), p.proowner
        from pg_proc p where p.pronamespace = 'public'::regnamespace
    ), columns(object, col, acl) as (
      select c.relname, a.attname, a.attacl from pg_attribute a join pg_class c on c.oid = a.attrelid
        where c.relnamespace = 'public'::regnamespace and a.attacl is not null and not a.attisdropped
    )
    select g.name || ': ' || x.privilege_type || ' on ' || a.object as line
      from acls a, aclexplode(a.acl) x, grantees g where x.grantee = g.oid and x.grantee <> a.owner
    union all
    select g.name || ': ' || x.privilege_type || '(' || c.col || ') on ' || c.object
      from columns c, aclexplode(c.acl) x, grantees g where x.grantee = g.oid
    order by 1`;
  return rows.map((r) => r.line);
}

/** What each role may do, per object (docs/security.md, "Database roles"). */
const EXPECTED: { object: string; lines: string[] }[] = [
  {
    object: "database",
    lines: ["qrscan_edge: CONNECT", "qrscan_worker: CONNECT", "qrscan_worker: TEMPORARY"],
  },
  // PUBLIC's USAGE is Postgres's default; CREATE is revoked.
  { object: "schema public", lines: ["PUBLIC: USAGE", "qrscan_edge: USAGE", "qrscan_worker: USAGE"] },
  { object: "api_keys", lines: ["qrscan_edge: SELECT", "qrscan_edge: UPDATE(last_used_at)"] },
  { object: "rollup_state", lines: ["qrscan_edge: SELECT"] },
  {
    object: "scan_counts",
    lines: ["qrscan_edge: SELECT", "qrscan_worker: SELECT", "qrscan_worker: INSERT", "qrscan_worker: UPDATE(count)"],
  },
  { object: "scan_counts_hourly", lines: ["qrscan_edge: SELECT"] },
  { object: "scan_events", lines: ["qrscan_worker: SELECT", "qrscan_worker: INSERT"] },
  {
    object: "dead_letters",
    lines: [
      "qrscan_worker: INSERT",
      "qrscan_worker: SELECT(source_topic)",
      "qrscan_worker: SELECT(source_partition)",
      "qrscan_worker: SELECT(source_offset)",
    ],
  },
  { object: "dead_letters_id_seq", lines: ["qrscan_worker: USAGE"] },
  { object: "ensure_scan_event_partition_days(date[])", lines: ["qrscan_worker: EXECUTE"] },
  // Migration 0008: the rate limits' replica heartbeats (server/replicas.ts).
  {
    object: "edge_replicas",
    lines: ["qrscan_edge: SELECT", "qrscan_edge: INSERT", "qrscan_edge: UPDATE", "qrscan_edge: DELETE"],
  },
];

/** The expected lines, "grantee: PRIVILEGE on object". */
function expectedGrants(): string[] {
  return EXPECTED.flatMap((e) => e.lines.map((l) => `${l} on ${e.object}`)).sort();
}

/** The SQLSTATE a statement fails with, or "ok". */
async function outcome(sql: postgres.Sql, statement: string): Promise<string> {
  try {
    await sql.unsafe(statement);
    return "ok";
  } catch (error) {
    return String((error as { code?: unknown }).code ?? (error as Error).message);
  }
}

/** Each statement's outcome, as "statement -> SQLSTATE", for one readable comparison. */
async function outcomes(sql: postgres.Sql, statements: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const s of statements) out.push(`${s} -> ${await outcome(sql, s)}`);
  return out;
}

const loginSql = (url: string) => {
  const sql = postgres(url, { prepare: false, max: 1, onnotice: () => {} });
  onCleanup(() => sql.end({ timeout: 1 }));
  return sql;
};

test("the grants are exactly the expected ones: nothing for PUBLIC, no DDL for the edge or the worker", async () => {
  const db = await createDatabase();
  // A day partition made the way the worker makes them: it must not widen anything.
  await db.sql`select ensure_scan_event_partition_days('{2026-12-01}'::date[])`;
  const [actual, expected] = [await grants(db.sql), expectedGrants()];
  expect(actual.sort()).toEqual(expected);
  // The worker's only way to DDL runs as the owner, blind to the caller's temporary objects.
  const fns = await db.sql<{ proname: string; prosecdef: boolean; proconfig: string[] | null }[]>`
    select proname, prosecdef, proconfig from pg_proc
    where pronamespace = 'public'::regnamespace and proname like 'ensure_scan_event_partition%' order by 1`;
  expect(fns.map((f) => ({ ...f }))).toEqual([
    { proname: "ensure_scan_event_partition_days", prosecdef: true, proconfig: ["search_path=pg_catalog, pg_temp"] },
    { proname: "ensure_scan_event_partitions", prosecdef: false, proconfig: null },
  ]);
  // The group roles cannot log in and carry no attributes; the stack's logins are members of one each.
  const roles = await db.sql<{ rolname: string; attributes: string; member_of: string[] }[]>`
    select r.rolname,
           concat_ws(',', case when r.rolcanlogin then 'login' end, case when r.rolsuper then 'superuser' end,
                     case when r.rolcreaterole then 'createrole' end, case when r.rolcreatedb then 'createdb' end,
                     case when r.rolbypassrls then 'bypassrls' end, case when r.rolreplication then 'replication' end) as attributes,
           array(select g.rolname::text from pg_auth_members m join pg_roles g on g.oid = m.roleid where m.member = r.oid order by 1) as member_of
    from pg_roles r where r.rolname in ('qrscan_edge', 'qrscan_worker', ${edge.user}, ${worker.user}) order by 1`;
  expect(roles.map((r) => ({ ...r }))).toEqual(
    [
      { rolname: edge.user, attributes: "login", member_of: ["qrscan_edge"] },
      { rolname: "qrscan_edge", attributes: "", member_of: [] },
      { rolname: "qrscan_worker", attributes: "", member_of: [] },
      { rolname: worker.user, attributes: "login", member_of: ["qrscan_worker"] },
    ].sort((a, b) => a.rolname.localeCompare(b.rolname)),
  );
});

test("the edge, through pgbouncer: serves stats and keys, writes last_used_at; refused everything else (42501)", async () => {
  const db = await createDatabase();
  const edgeUrl = urlAs(db.url, edge);
  // What it needs: the stats route and the key store, as the edge.
  const bucket = new Date(Math.floor(Date.now() / 60_000) * 60_000 - 60_000);
  await db.sql`insert into scan_counts (qr_id, bucket, count) values ('QR-roles', ${bucket}, 7)`;
  const t = await createTestApp({}, { sql: loginSql(edgeUrl), waitForKafka: false });
  const res = await t.app.request("/v1/qr/QR-roles/stats?interval=minute", {
    headers: { authorization: `Bearer ${API_KEY}` },
  });
  expect({ status: res.status, total: ((await res.json()) as { total?: number }).total }).toEqual({
    status: 200,
    total: 7,
  });
  const digest = sha256("qrs_roles-test-secret");
  await db.sql`
    insert into api_keys (id, name, prefix, secret_sha256, scopes)
    values ('key_0123456789ab', 'roles', 'qrs_role', ${digest}, '{stats:read}')`;
  const { store, registry } = await createKeyStore(edgeUrl);
  const record = store.lookup(digest.toString("hex"));
  expect(record?.principal.id).toBe("key_0123456789ab");
  (record as { usedAt: number }).usedAt = Date.now();
  await store.refresh();
  const [key] = await db.sql<{ last_used_at: Date | null }[]>`select last_used_at from api_keys`;
  expect(key?.last_used_at).not.toBeNull();
  const failures = await registry.getSingleMetric("api_keys_last_used_write_failures_total")?.get();
  expect(failures?.values[0]?.value).toBe(0);

  // What it may not: each refused for lack of privilege.
  const sql = loginSql(edgeUrl);
  const forbidden = [
    `insert into scan_events (event_id, scanned_at, qr_id, received_at, schema_version, kafka_partition, kafka_offset) values (gen_random_uuid(), now(), 'x', now(), 1, 0, 0)`,
    "select count(*) from scan_events",
    "update api_keys set revoked_at = null",
    "update api_keys set secret_sha256 = secret_sha256",
    "update api_keys set scopes = '{scans:write,stats:read}'",
    `insert into api_keys (id, name, prefix, secret_sha256, scopes) values ('key_000000000000', 'x', 'qrs_xxxx', '\\x${"00".repeat(32)}', '{stats:read}')`,
    "delete from api_keys",
    "update scan_counts set count = 0",
    "select count(*) from scan_counts_daily",
    "select count(*) from dead_letters",
    "select count(*) from archived_days",
    "select count(*) from schema_migrations",
    "create table edge_was_here (a int)",
    "create temp table edge_was_here (a int)",
    "drop table scan_counts",
    "truncate scan_counts",
    "alter table api_keys add column x int",
    "select ensure_scan_event_partition_days('{2026-12-02}'::date[])",
  ];
  expect(await outcomes(sql, forbidden)).toEqual(forbidden.map((s) => `${s} -> 42501`));
});

test("the worker, through pgbouncer: stores events (a new day's partition too) and dead letters; refused everything else (42501)", async () => {
  const db = await createDatabase();
  const workerUrl = urlAs(db.url, worker);
  const env = await workerEnv(workerUrl, 1);
  spawnWorker(env);
  const producer = createProducer();
  // Today and a day with no partition yet: the worker has it made (through the definer function).
  const day = new Date(Date.now() - 3 * 86_400_000).toISOString();
  const events = [
    ...Array.from({ length: 20 }, () => scan({ qr_id: "QR-w" }) as ScanEvent),
    ...Array.from({ length: 20 }, () => scan({ qr_id: "QR-w", scanned_at: day }) as ScanEvent),
  ];
  await produceEvents(producer, env.scansTopic, events);
  // An undecodable record: dead-lettered through the dead-letter topic into dead_letters.
  await producer.send([{ topic: env.scansTopic, key: "poison", value: "not json" }]);
  const stored = await waitFor(
    "the worker (as the worker role) to store 40 events and 1 dead letter",
    async () => ({
      ...(await tally(db.sql)),
      deadLetters: Number((await db.sql`select count(*)::int as n from dead_letters`)[0]?.n),
    }),
    (s) => s.rows === 40 && s.counted === 40 && s.deadLetters === 1,
    30_000,
  );
  expect(stored).toMatchObject({ rows: 40, counted: 40, deadLetters: 1 });

  const sql = loginSql(workerUrl);
  const forbidden = [
    "select count(*) from api_keys",
    "update api_keys set revoked_at = null",
    `insert into api_keys (id, name, prefix, secret_sha256, scopes) values ('key_000000000000', 'x', 'qrs_xxxx', '\\x${"00".repeat(32)}', '{stats:read}')`,
    "select payload from dead_letters",
    "update dead_letters set replayed_at = now()",
    "delete from dead_letters",
    "delete from scan_events",
    "update scan_events set qr_id = 'x'",
    "truncate scan_counts",
    "select count(*) from scan_counts_hourly",
    "select count(*) from archived_days",
    "select count(*) from rollup_state",
    "create table worker_was_here (a int)",
    "drop table scan_events",
    "alter table scan_events add column x int",
    `create table scan_events_29990101 partition of scan_events for values from ('2999-01-01') to ('2999-01-02')`,
  ];
  expect(await outcomes(sql, forbidden)).toEqual(forbidden.map((s) => `${s} -> 42501`));
});
