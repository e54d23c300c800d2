// CORS in a real browser: headless Chromium loads a page from a second local origin whose script
// POSTs /v1/scans on the real server (with an API key and a JSON body, so the browser preflights).
// From the allowed origin the request goes through and the script can read the exposed RateLimit
// field; from another origin the browser blocks it. Plus the raw preflight answers, and that a
// preflight is counted under its route, not as a 404.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killProcess, scrape, spawnProcess } from "../../tools/harness.ts";
import { API_KEY, onCleanup, spawnServer } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

/** A page on its own origin (127.0.0.1:<port>) whose script calls `api` and writes the outcome into the DOM. */
function pageServer(api: string, port = 0) {
  const script = `
    const out = document.getElementById("out");
    fetch(${JSON.stringify(`${api}/v1/scans`)}, {
      method: "POST",
      headers: { "Authorization": "Bearer ${API_KEY}", "Content-Type": "application/json" },
      body: JSON.stringify([{ event_id: crypto.randomUUID(), qr_id: "QR-cors", scanned_at: new Date().toISOString() }]),
    }).then(
      (res) => { out.textContent = "RESULT status=" + res.status + " ratelimit=" + res.headers.get("RateLimit"); },
      (err) => { out.textContent = "RESULT blocked " + err.name; },
    );`;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch: () =>
      new Response(`<!doctype html><html><body><p id="out">pending</p><script>${script}</script></body></html>`, {
        headers: { "content-type": "text/html" },
      }),
  });
  onCleanup(() => server.stop(true));
  return server;
}

/** Loads `url` in headless Chromium and returns the text the page wrote (RESULT …). */
async function loadInChromium(url: string): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), "cors-chromium-"));
  onCleanup(() => rmSync(profile, { recursive: true, force: true }));
  const proc = spawnProcess({
    cmd: [
      "chromium",
      "--headless",
      // Chromium refuses to run as root without it.
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      `--user-data-dir=${profile}`,
      // Lets the script's fetch (and its preflight) finish before the DOM is dumped.
      "--virtual-time-budget=10000",
      "--dump-dom",
      url,
    ],
    output: "pipe",
  });
  onCleanup(() => killProcess(proc));
  const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  const [dom, stderr, code] = await Promise.all([
    new Response(proc.stdout as ReadableStream).text(),
    new Response(proc.stderr as ReadableStream).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  const result = dom.match(/RESULT [^<]*/)?.[0];
  if (code !== 0 || !result)
    throw new Error(`chromium exited ${code} without a RESULT; DOM:\n${dom}\nstderr:\n${stderr}`);
  return result;
}

const keyDigest = new Bun.CryptoHasher("sha256").update(API_KEY).digest("hex");

describe("CORS allowlist", () => {
  test("Chromium: the allowed origin's POST succeeds and reads RateLimit; another origin's is blocked", async () => {
    // The pages need the API's URL and the API needs the allowed origin: pick the page's port first.
    const allowedPort = freePort();
    const allowedOrigin = `http://127.0.0.1:${allowedPort}`;
    const server = await spawnServer({
      AUTH_DISABLED: "false",
      API_KEY_SHA256: keyDigest,
      CORS_ORIGINS: allowedOrigin,
    });
    pageServer(server.url, allowedPort);
    const other = pageServer(server.url);

    expect(await loadInChromium(`${allowedOrigin}/`)).toMatch(/^RESULT status=202 ratelimit="key";r=\d+;t=\d+$/);
    expect(await loadInChromium(`http://127.0.0.1:${other.port}/`)).toBe("RESULT blocked TypeError");
  }, 180_000);

  test("preflight: 204 with the right headers for an allowed origin, no CORS header for another; no key needed; counted under its route", async () => {
    const origin = "https://scanner.example";
    const server = await spawnServer({ AUTH_DISABLED: "false", API_KEY_SHA256: keyDigest, CORS_ORIGINS: origin });
    const preflight = (from: string) =>
      fetch(`${server.url}/v1/scans`, {
        method: "OPTIONS",
        headers: {
          origin: from,
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization,content-type,traceparent",
        },
      });
    const ok = await preflight(origin);
    expect(ok.status).toBe(204);
    expect(ok.headers.get("access-control-allow-origin")).toBe(origin);
    expect(ok.headers.get("access-control-allow-methods")).toBe("GET,HEAD,POST,OPTIONS");
    expect(ok.headers.get("access-control-allow-headers")?.split(",")).toEqual([
      "Authorization",
      "X-API-Key",
      "Content-Type",
      "Content-Encoding",
      "traceparent",
    ]);
    expect(ok.headers.get("access-control-max-age")).toBe("600");
    expect(ok.headers.get("access-control-allow-credentials")).toBeNull();
    expect(ok.headers.get("vary")).toContain("Origin");

    const refused = await preflight("https://evil.example");
    expect([...refused.headers.keys()].filter((h) => h.startsWith("access-control-"))).toEqual([]);
    expect(refused.status).toBe(405);

    // An actual request from the allowed origin exposes the headers a script may read.
    const post = await fetch(`${server.url}/v1/scans`, {
      method: "POST",
      headers: { origin, authorization: "Bearer wrong", "content-type": "application/json" },
      body: "[]",
    });
    expect(post.status).toBe(401);
    expect(post.headers.get("access-control-allow-origin")).toBe(origin);
    expect(post.headers.get("access-control-expose-headers")).toBe(
      "Retry-After,RateLimit,RateLimit-Policy,Max-Batch-Events,X-Request-Id",
    );

    const requests = (await scrape(server.metricsUrl)).filter((s) => s.name === "http_requests_total");
    const count = (route: string, status: string) =>
      requests.find((s) => s.labels.route === route && s.labels.status === status)?.value;
    expect(count("/v1/scans", "204")).toBe(1);
    expect(count("unmatched", "404")).toBe(0);
  });

  test("no CORS_ORIGINS (the default): a preflight gets no CORS header", async () => {
    const server = await spawnServer({ AUTH_DISABLED: "false", API_KEY_SHA256: keyDigest });
    const res = await fetch(`${server.url}/v1/scans`, {
      method: "OPTIONS",
      headers: { origin: "https://scanner.example", "access-control-request-method": "POST" },
    });
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    expect(res.status).toBe(405);
  });
});
