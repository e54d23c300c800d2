// Secrets and personal data, through the real processes. The server and a worker pool run at
// LOG_LEVEL=trace with test secrets (an API key, database passwords, metrics credentials); the
// test drives traffic (accepted events, wrong keys, a stats read whose database login fails,
// scrapes with and without credentials), stops both, and greps every line they wrote for each
// secret in every form a line could carry it (verbatim, URL-encoded, base64 and base64url at any
// alignment: a Basic credential, a header base64'd whole), after a positive control proves the grep
// finds each planted one. The database passwords hold characters a URL must encode. Mutations
// (tools/mutations/catalog/edge.ts): the 401 audit line with the Authorization header base64'd
// (found: wrongKey, base64 at offset 1); the metrics listener logging a Basic header (found:
// metricsPassword, base64 at offset 2: a verbatim search passes); the server's start line with
// DATABASE_URL (found: wrongDbPassword, URL-encoded). On the same run: the
// metrics listeners want their credentials while /health stays open, and the stored row holds
// the client's address truncated (CLIENT_IP_STORAGE=truncated).
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newSecret } from "../../shared/api-keys.ts";
import { stopProcess } from "../../tools/harness.ts";
import {
  createDatabase,
  onCleanup,
  spawnPgbouncer,
  spawnServer,
  spawnSupervisor,
  workerEnv,
} from "../helpers/fixtures.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack, stack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

const random = () => crypto.randomUUID().replaceAll("-", "");

/**
 * The substrings any encoding of `secret` contains, by form: verbatim, URL-encoded, and base64 and
 * base64url wherever the secret sits in the encoded bytes (`Basic base64(user:password)`, a whole
 * header base64'd): for each of the 3 byte alignments, the characters that depend on the secret's
 * bytes alone. A secret of 18 bytes or more leaves at least 22 such characters at each alignment.
 */
function secretForms(secret: string): Record<string, string> {
  const bytes = Buffer.from(secret);
  const forms: Record<string, string> = { verbatim: secret };
  const url = encodeURIComponent(secret);
  if (url !== secret) forms["URL-encoded"] = url;
  const form = url.replaceAll("%20", "+");
  if (form !== url) forms["form-encoded"] = form;
  for (let k = 0; k < 3; k++) {
    const encoded = Buffer.concat([Buffer.alloc(k), bytes]).toString("base64");
    const inner = encoded.slice(Math.ceil((8 * k) / 6), Math.floor((8 * (k + bytes.length)) / 6));
    forms[`base64 at offset ${k}`] = inner;
    forms[`base64url at offset ${k}`] = inner.replaceAll("+", "-").replaceAll("/", "_");
  }
  return forms;
}

/** The lines of `text` that contain any of `secrets` in any of its forms, with which one and how. */
function linesWithSecrets(text: string, secrets: Record<string, string>): string[] {
  const needles = Object.entries(secrets).flatMap(([name, secret]) =>
    Object.entries(secretForms(secret)).map(([form, needle]) => ({ what: `${name} (${form})`, needle })),
  );
  const found: string[] = [];
  for (const line of text.split("\n")) {
    for (const { what, needle } of needles) if (line.includes(needle)) found.push(`${what}: ${line.slice(0, 300)}`);
  }
  return found;
}

describe("no secret in any log line; metrics credentials; the stored address", () => {
  test("server, supervisor and worker at trace: traffic incl. failed auth and a failed database login leaves no secret in their output", async () => {
    const dir = mkdtempSync(join(tmpdir(), "secrets-"));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    const secrets = {
      apiKey: newSecret(),
      wrongKey: newSecret(),
      // Characters a URL must percent-encode, so DATABASE_URL holds them encoded: a line printing
      // the URL would show the encoded form, not the verbatim one.
      dbPassword: `dbpw/${random()}+=@:?`,
      wrongDbPassword: `dbpw/${random()}#&= ;`,
      metricsToken: `mt-${random()}`,
      metricsPassword: `mp/${random()}+=`,
    };
    const tokenFile = join(dir, "metrics-token");
    const basicFile = join(dir, "metrics-basic");
    writeFileSync(tokenFile, `${secrets.metricsToken}\n`);
    writeFileSync(basicFile, `prometheus:${secrets.metricsPassword}\n`);

    const db = await createDatabase();
    const bouncer = await spawnPgbouncer({ users: { [stack.user]: secrets.dbPassword } });
    const env = await workerEnv(bouncer.url(stack.user, db.name), 2);
    const serverLog = join(dir, "server.log");
    const workerLog = join(dir, "worker.log");

    const server = await spawnServer(
      {
        LOG_LEVEL: "trace",
        AUTH_DISABLED: "false",
        API_KEY_SHA256: new Bun.CryptoHasher("sha256").update(secrets.apiKey).digest("hex"),
        SCANS_TOPIC: env.scansTopic,
        // The stats route's login fails: the error path must not print the password either.
        DATABASE_URL: `postgres://${stack.user}:${encodeURIComponent(secrets.wrongDbPassword)}@127.0.0.1:${bouncer.port}/${db.name}`,
        METRICS_BEARER_TOKEN_FILE: tokenFile,
        TRUSTED_PROXIES: "127.0.0.1",
        CLIENT_IP_STORAGE: "truncated",
      },
      { output: { file: serverLog } },
    );
    // The supervisor and its worker (whose output goes to the supervisor's) share the credentials.
    const pool = await spawnSupervisor(env, {
      workers: 1,
      extra: { LOG_LEVEL: "trace", METRICS_BASIC_AUTH_FILE: basicFile },
      output: { file: workerLog },
    });

    // Traffic: accepted events from a client behind the trusted proxy, wrong and missing keys.
    const post = (key: string | null, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${server.url}/v1/scans`, {
        method: "POST",
        body: JSON.stringify(body),
        headers: {
          "content-type": "application/json",
          "x-forwarded-for": "203.0.113.77",
          ...(key ? { authorization: `Bearer ${key}` } : {}),
          ...headers,
        },
      });
    const event = scan({ qr_id: "QR-secrets" });
    expect((await post(secrets.apiKey, [event])).status).toBe(202);
    expect((await post(null, [scan()], { "x-api-key": secrets.apiKey })).status).toBe(202);
    expect((await post(secrets.wrongKey, [scan()])).status).toBe(401);
    expect((await post(null, [scan()], { "x-api-key": secrets.wrongKey })).status).toBe(401);
    expect((await post(null, [scan()])).status).toBe(401);
    const stats = await fetch(
      `${server.url}/v1/qr/QR-secrets/stats?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z`,
      { headers: { authorization: `Bearer ${secrets.apiKey}` } },
    );
    expect(stats.status).toBeGreaterThanOrEqual(500);

    // Metrics listeners: credentials required for /metrics, /health open.
    const serverMetrics = server.metricsUrl;
    expect((await fetch(serverMetrics)).status).toBe(401);
    expect((await fetch(serverMetrics, { headers: { authorization: `Bearer ${secrets.wrongKey}` } })).status).toBe(401);
    const scraped = await fetch(serverMetrics, { headers: { authorization: `Bearer ${secrets.metricsToken}` } });
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain("rate_limited_total");
    const basic = `Basic ${btoa(`prometheus:${secrets.metricsPassword}`)}`;
    for (const base of [pool.workerUrl(0), pool.supervisorUrl]) {
      await waitFor(
        `${base}/health to answer 200 without credentials`,
        async () => (await fetch(`${base}/health`)).status,
        (s) => s === 200,
        30_000,
      );
      expect((await fetch(`${base}/metrics`)).status).toBe(401);
      const wrong = { authorization: `Bearer ${secrets.metricsToken}` };
      expect((await fetch(`${base}/metrics`, { headers: wrong })).status).toBe(401);
      expect((await fetch(`${base}/metrics`, { headers: { authorization: basic } })).status).toBe(200);
    }

    // The stored row: the address truncated to its /24, before it was produced.
    const [row] = await waitFor(
      "the worker to store the event from 203.0.113.77",
      () => db.sql`select host(client_ip) as ip from scan_events where event_id = ${event.event_id}`,
      (rows) => rows.length === 1,
      60_000,
    );
    expect(row?.ip).toBe("203.0.113.0");

    // Stop both (their shutdown lines are output too), then grep everything they wrote.
    await stopProcess(server.proc);
    await stopProcess(pool.proc);
    const output = `${readFileSync(serverLog, "utf8")}\n${readFileSync(workerLog, "utf8")}`;
    // Both wrote their lines, including the failure paths where a secret would be likeliest.
    for (const msg of [
      "edge server listening",
      "password authentication failed",
      "worker started",
      '"service":"supervisor"',
      '"msg":"stopped"',
    ])
      expect(output).toContain(msg);
    // Positive control: a planted line with each secret, in each way a log line could carry it, is
    // found by the same grep: verbatim, in a URL, in an Authorization header base64'd whole, in a
    // Basic credential (user:password base64'd), base64url'd.
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const carriers: [string, (s: string) => string][] = [
      ["verbatim", (s) => s],
      ["a URL", (s) => `postgres://qrscan:${encodeURIComponent(s)}@127.0.0.1:5432/x`],
      ["a bearer header base64'd", (s) => b64(`Bearer ${s}`)],
      ["a Basic credential", (s) => `Basic ${b64(`prometheus:${s}`)}`],
      ["a Basic credential, user of 1 byte", (s) => `Basic ${b64(`u:${s}`)}`],
      ["base64url", (s) => Buffer.from(`x${s}`).toString("base64url")],
    ];
    for (const [name, secret] of Object.entries(secrets)) {
      const found = carriers.map(([how, carry]) => ({
        how,
        found: linesWithSecrets(`{"level":"info","msg":"planted","value":"${carry(secret)}"}`, secrets).length > 0,
      }));
      expect({ name, found }).toEqual({ name, found: carriers.map(([how]) => ({ how, found: true })) });
    }
    expect(linesWithSecrets(output, secrets)).toEqual([]);
    // The full address is not logged either.
    expect(output).not.toContain("203.0.113.77");
  }, 180_000);
});
