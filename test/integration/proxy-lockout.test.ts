// The failed-authentication limit through a real proxy hop: Debian's haproxy (option forwardfor)
// in front of the edge server process, on the loopback range, where every 127.x address is this
// machine's: haproxy reaches the server from 127.0.0.2 (a trusted peer), clients reach haproxy from
// addresses of their own (127.0.0.10, .11, …) and a direct client reaches the server from another
// (untrusted). Shows that one client behind the proxy cannot lock out the others, that a valid
// managed key or JWT is never locked out, that an untrusted peer's X-Forwarded-For is ignored, and
// that TRUSTED_PROXIES takes CIDRs and IPv4-mapped forms.
//
// Mutations, each caught (2026-12-06): ipGate letting only "api_key" through (the JWT's 202 fails);
// ipGuard refusing every request over the limit before auth (today's code: the managed key's 202);
// TrustedProxies.has matching exact strings (the CIDR and mapped servers: the other client's 401 is
// a 429); the resolver believing any peer's X-Forwarded-For (the direct peer's 429 is a 202).
import { describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT, importPKCS8 } from "jose";
import { type KeysIo, keys } from "../../jobs/keys.ts";
import { newSecret } from "../../shared/api-keys.ts";
import { createLogger } from "../../shared/logger.ts";
import { killProcess, scrape, spawnProcess } from "../../tools/harness.ts";
import { portOpen } from "../../tools/stack/processes.ts";
import { createDatabase, createTopic, onCleanup, spawnServer } from "../helpers/fixtures.ts";
import { freePort, scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";
import { waitFor } from "../helpers/wait.ts";

await ensureStack();

const PROXY = "127.0.0.2";
const ATTACKER = "127.0.0.10";
const NEIGHBOUR = "127.0.0.11";
// A static key of the generated shape (server/auth.ts refuses any other): still limited per address.
const STATIC_KEY = newSecret();
const digest = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");

/** haproxy in HTTP mode on 127.0.0.1, appending X-Forwarded-For, reaching `backendPort` from `source`. */
async function spawnHaproxy(backendPort: number, source: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "haproxy-"));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const port = freePort();
  const cfg = join(dir, "haproxy.cfg");
  writeFileSync(
    cfg,
    [
      "global",
      "  maxconn 200",
      "defaults",
      "  mode http",
      "  timeout connect 2s",
      "  timeout client 10s",
      "  timeout server 10s",
      "frontend edge",
      `  bind 127.0.0.1:${port}`,
      "  option forwardfor",
      "  default_backend servers",
      "backend servers",
      `  server edge 127.0.0.1:${backendPort} source ${source}`,
      "",
    ].join("\n"),
  );
  const log = join(dir, "haproxy.log");
  // -db: in the foreground, so the pid is haproxy's and killing it stops it.
  const proc = spawnProcess({ cmd: ["haproxy", "-db", "-f", cfg], output: { file: log } });
  onCleanup(() => killProcess(proc));
  await waitFor(
    `haproxy (pid ${proc.pid}) to listen on 127.0.0.1:${port}`,
    async () => ({ exited: proc.exitCode, open: await portOpen(port) }),
    (s) => s.open || s.exited !== null,
    10_000,
    50,
  );
  if (proc.exitCode !== null) throw new Error(`haproxy exited with ${proc.exitCode}:\n${readFileSync(log, "utf8")}`);
  return `http://127.0.0.1:${port}`;
}

/**
 * POSTs one scan to `url` from the local address `from` (node:http binds it; Bun's fetch cannot);
 * the status. `key` goes in Authorization: Bearer, none when null.
 */
function post(url: string, from: string, key: string | null, headers: Record<string, string> = {}): Promise<number> {
  const body = JSON.stringify([scan()]);
  const target = new URL(`${url}/v1/scans`);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: target.hostname,
        port: Number(target.port),
        path: target.pathname,
        method: "POST",
        localAddress: from,
        headers: {
          "content-type": "application/json",
          "content-length": String(Buffer.byteLength(body)),
          ...(key === null ? {} : { authorization: `Bearer ${key}` }),
          ...headers,
        },
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`POST ${url} from ${from}: no answer in 10 s`)));
    req.on("error", reject);
    req.end(body);
  });
}

async function ipLimited(metricsUrl: string): Promise<number> {
  const s = (await scrape(metricsUrl)).find((x) => x.name === "rate_limited_total" && x.labels.scope === "ip");
  if (!s) throw new Error(`${metricsUrl}: no rate_limited_total{scope="ip"}`);
  return s.value;
}

/** The edge with static keys only, one failed authentication per minute after a burst of 3. */
async function limitedServer(env: Record<string, string>) {
  return spawnServer({
    AUTH_DISABLED: "false",
    API_KEYS_DB: "false",
    API_KEY_SHA256: digest(STATIC_KEY),
    AUTH_FAILURES_PER_MINUTE: "1",
    AUTH_FAILURE_BURST: "3",
    SCANS_TOPIC: await createTopic(1),
    ...env,
  });
}

/** Three wrong keys from `from` through `url`: 401 each; the fourth attempt is a 429. */
async function exhaust(url: string, from: string, headers: Record<string, string> = {}) {
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push(await post(url, from, `wrong-${i}`, headers));
  expect({ from, statuses }).toEqual({ from, statuses: [401, 401, 401, 429] });
}

describe("through haproxy: one client cannot lock out the others", () => {
  test("the attacker behind the proxy gets 429; its neighbours, and its own valid managed key and JWT, get 202; an untrusted peer's X-Forwarded-For is ignored", async () => {
    // A managed key in the api_keys table, and a JWT signing key whose public half the edge trusts.
    const db = await createDatabase();
    const io: KeysIo = { out: () => {}, audit: createLogger("keys", "silent"), operator: "test" };
    const out: string[] = [];
    expect(await keys(["create", "--name", "proxy-test"], db.sql, { ...io, out: (l) => out.push(l) })).toBe(0);
    const managedKey = out.at(-1) as string;
    expect(managedKey).toStartWith("qrs_");
    const dir = mkdtempSync(join(tmpdir(), "proxy-jwt-"));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    writeFileSync(join(dir, "idp.pem"), publicKey.export({ type: "spki", format: "pem" }).toString());
    const now = Math.floor(Date.now() / 1000);
    const jwt = await new SignJWT({ scope: "scans:write" })
      .setProtectedHeader({ alg: "ES256", kid: "idp" })
      .setIssuer("https://issuer.test")
      .setAudience("qrscan-edge")
      .setSubject("scanner-7")
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(await importPKCS8(privateKey.export({ type: "pkcs8", format: "pem" }).toString(), "ES256"));

    const server = await limitedServer({
      API_KEYS_DB: "true",
      DATABASE_URL: db.url,
      JWT_KEY_FILES: join(dir, "idp.pem"),
      JWT_ISSUER: "https://issuer.test",
      JWT_AUDIENCE: "qrscan-edge",
      // A token without a tenant (the test's events are of no tenant): allowed explicitly.
      JWT_ALLOW_GLOBAL_TOKENS: "true",
      TRUSTED_PROXIES: PROXY,
    });
    const proxy = await spawnHaproxy(Number(new URL(server.url).port), PROXY);

    // (a) The attacker, behind the proxy, exhausts its failed-authentication budget.
    await exhaust(proxy, ATTACKER);
    // Guessable credentials stay refused from its address, whatever they are: no answer tells a
    // right static key from a wrong one, and a forged X-Forwarded-For does not move it elsewhere
    // (haproxy appends the address it saw; the rightmost untrusted hop is the client).
    expect(await post(proxy, ATTACKER, STATIC_KEY)).toBe(429);
    expect(await post(proxy, ATTACKER, null)).toBe(429);
    expect(await post(proxy, ATTACKER, "wrong-again")).toBe(429);
    expect(await post(proxy, ATTACKER, "qrs_notAKeyAtAllButShapedLikeOne0000000000000000")).toBe(429);
    expect(await post(proxy, ATTACKER, STATIC_KEY, { "x-forwarded-for": NEIGHBOUR })).toBe(429);
    // Unguessable credentials, once proven, go through from the same address.
    expect(await post(proxy, ATTACKER, managedKey)).toBe(202);
    expect(await post(proxy, ATTACKER, jwt)).toBe(202);
    // Other clients behind the same proxy have buckets of their own.
    expect(await post(proxy, NEIGHBOUR, STATIC_KEY)).toBe(202);
    expect(await post(proxy, NEIGHBOUR, managedKey)).toBe(202);
    expect(await post(proxy, NEIGHBOUR, "wrong")).toBe(401);

    // (b) A direct, untrusted peer: its X-Forwarded-For is ignored. Naming the locked-out attacker
    // does not lock it out; naming the neighbour does not spend the neighbour's budget.
    expect(await post(server.url, "127.0.0.4", STATIC_KEY, { "x-forwarded-for": ATTACKER })).toBe(202);
    await exhaust(server.url, "127.0.0.3", { "x-forwarded-for": NEIGHBOUR });
    expect(await post(server.url, "127.0.0.3", managedKey, { "x-forwarded-for": NEIGHBOUR })).toBe(202);
    expect(await post(proxy, NEIGHBOUR, STATIC_KEY)).toBe(202);
    expect(await post(proxy, NEIGHBOUR, "wrong")).toBe(401);

    // Every refusal above counted in rate_limited_total{scope="ip"}: 6 for the attacker, 1 direct.
    expect(await ipLimited(server.metricsUrl)).toBe(7);
  }, 60_000);

  for (const [what, trusted, source] of [
    ["a CIDR", "127.0.0.2/31", "127.0.0.3"],
    ["an IPv4-mapped address", `::ffff:${PROXY}`, PROXY],
  ] as const) {
    test(`TRUSTED_PROXIES as ${what} (${trusted}): the proxy at ${source} is trusted`, async () => {
      const server = await limitedServer({ TRUSTED_PROXIES: trusted });
      const proxy = await spawnHaproxy(Number(new URL(server.url).port), source);
      await exhaust(proxy, ATTACKER);
      // Not the proxy's address: the neighbour's own (a 401, not the attacker's 429).
      expect(await post(proxy, NEIGHBOUR, "wrong")).toBe(401);
      expect(await post(proxy, NEIGHBOUR, STATIC_KEY)).toBe(202);
      // Just outside the range, a peer is a client: its header is ignored.
      await exhaust(server.url, "127.0.0.4", { "x-forwarded-for": NEIGHBOUR });
      expect(await post(proxy, NEIGHBOUR, STATIC_KEY)).toBe(202);
    }, 60_000);
  }
});
