// One real TLS path: a pgbouncer requiring client TLS, with a certificate signed by a CA made in
// this test (openssl), in front of the stack's Postgres. The worker connects with
// DATABASE_URL=…?sslmode=verify-full and the CA given through NODE_EXTRA_CA_CERTS (the documented
// configuration, docs/security.md) and stores events; a client trusting another CA, or naming
// another host, or not using TLS, is refused.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import {
  createDatabase,
  createProducer,
  onCleanup,
  spawnPgbouncer,
  spawnWorker,
  workerEnv,
} from "../helpers/fixtures.ts";
import { ensureStack, stack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";
import { events, produceEvents } from "../helpers/worker.ts";

await ensureStack();

function openssl(args: string[], cwd: string): void {
  const r = spawnSync("openssl", args, { cwd, encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
}

/** A CA, and a server certificate it signed for localhost and 127.0.0.1; plus an unrelated CA. */
function makeCertificates() {
  const dir = mkdtempSync(join(tmpdir(), "tls-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(
    ["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=qrscan test CA"],
    dir,
  );
  openssl(
    ["req", "-x509", ...ec, "-keyout", "other.key", "-out", "other.pem", "-days", "1", "-subj", "/CN=other CA"],
    dir,
  );
  openssl(["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], dir);
  writeFileSync(join(dir, "san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "1",
      "-extfile",
      "san.ext",
      "-out",
      "server.pem",
    ],
    dir,
  );
  chmodSync(join(dir, "server.key"), 0o600);
  spawnSync("chown", ["-R", "postgres:postgres", dir]);
  chmodSync(dir, 0o755);
  return {
    dir,
    ca: join(dir, "ca.pem"),
    otherCa: join(dir, "other.pem"),
    certFile: join(dir, "server.pem"),
    keyFile: join(dir, "server.key"),
  };
}

const PASSWORD = "tls-test-password";

describe("TLS to pgbouncer with verify-full", () => {
  test("the worker stores events over TLS (sslmode=verify-full, CA from NODE_EXTRA_CA_CERTS)", async () => {
    const certs = makeCertificates();
    const db = await createDatabase();
    const bouncer = await spawnPgbouncer({ users: { [stack.user]: PASSWORD }, tls: certs });
    const url = `${bouncer.url(stack.user, db.name)}?sslmode=verify-full`;
    const env = await workerEnv(url, 2);
    spawnWorker(env, { NODE_EXTRA_CA_CERTS: certs.ca });
    const producer = createProducer();
    await produceEvents(producer, env.scansTopic, events(50, 5));
    await waitFor(
      "the worker to store 50 events through the TLS pgbouncer",
      async () => Number((await db.sql`select count(*)::int as n from scan_events`)[0]?.n),
      (n) => n === 50,
      60_000,
    );
  }, 120_000);

  test("verify-full refuses another CA, another host name, and a client without TLS", async () => {
    const certs = makeCertificates();
    const db = await createDatabase();
    const bouncer = await spawnPgbouncer({ users: { [stack.user]: PASSWORD }, tls: certs });
    const attempt = async (ssl: postgres.Options<Record<string, never>>["ssl"], host = "127.0.0.1") => {
      const sql = postgres({
        host,
        port: bouncer.port,
        user: stack.user,
        password: PASSWORD,
        database: db.name,
        ssl,
        prepare: false,
        max: 1,
        connect_timeout: 10,
        onnotice: () => {},
      });
      try {
        const [row] = await sql`select 1 as one`;
        return `ok ${row?.one}`;
      } catch (error) {
        return `refused: ${(error as Error).message}`;
      } finally {
        await sql.end({ timeout: 1 });
      }
    };
    const ca = await Bun.file(certs.ca).text();
    const otherCa = await Bun.file(certs.otherCa).text();
    // The positive control: the right CA and name connect.
    expect(await attempt({ ca, rejectUnauthorized: true, servername: "localhost" }, "localhost")).toBe("ok 1");
    expect(await attempt({ ca: otherCa, rejectUnauthorized: true, servername: "localhost" }, "localhost")).toMatch(
      /^refused: .*(certificate|self[- ]signed|issuer)/i,
    );
    expect(await attempt({ ca, rejectUnauthorized: true, servername: "db.example" })).toMatch(
      /^refused: .*(host|altname|name|certificate)/i,
    );
    expect(await attempt(false)).toMatch(/^refused: .*SSL required/i);
  }, 120_000);
});
