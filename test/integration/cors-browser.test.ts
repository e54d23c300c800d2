// CORS in a real browser: headless Chromium loads a page from a second local origin whose script
// POSTs /v1/scans on the real server (with an API key and a JSON body, so the browser preflights).
// From the allowed origin the request goes through and the script can read the exposed RateLimit
// field; from another origin the browser blocks it, and the test shows it was CORS: the server
// answered the preflight (its own request count) and Chromium's console names the CORS policy. A
// page whose API is unreachable gets the same TypeError in its script and is not counted as a
// block. Plus the raw preflight answers, and that a preflight is counted under its route, not as
// a 404. Mutation (tools/mutations/catalog/edge.ts, cors-allows-every-origin): the other origin's
// POST answered 202 instead of blocked.
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

/** What Chromium did with a page: the text its script wrote (RESULT …) and its console lines. */
interface Load {
  result: string;
  console: string[];
}

/** Loads `url` in headless Chromium; returns the text the page wrote and what its console said. */
async function loadInChromium(url: string): Promise<Load> {
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
      // The page's console (where Chromium says why it blocked a request) on stderr.
      "--enable-logging=stderr",
      "--v=0",
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
  const consoleLines = stderr.split("\n").filter((l) => l.includes(":CONSOLE"));
  return { result, console: consoleLines };
}

/** http_requests_total of /v1/scans by status, from the server's own metrics. */
async function scansRequests(metricsUrl: string): Promise<Record<string, number>> {
  const samples = (await scrape(metricsUrl)).filter(
    (s) => s.name === "http_requests_total" && s.labels.route === "/v1/scans" && s.value > 0,
  );
  return Object.fromEntries(samples.map((s) => [s.labels.status as string, s.value]));
}

/** What a page load shows, told apart: only a CORS block has both the browser's CORS error and the server's answer. */
function verdict(load: Load, server: { preflightsAnswered: number }): string {
  if (load.result.startsWith("RESULT status=")) return "allowed";
  const corsError = load.console.some((l) => l.includes("has been blocked by CORS policy"));
  if (load.result === "RESULT blocked TypeError" && corsError && server.preflightsAnswered === 1)
    return "blocked by CORS";
  return `not shown to be CORS (script: ${load.result}; CORS error in the console: ${corsError}; preflights the server answered: ${server.preflightsAnswered})`;
}

const keyDigest = new Bun.CryptoHasher("sha256").update(API_KEY).digest("hex");

describe("CORS allowlist", () => {
  test("Chromium: the allowed origin's POST succeeds and reads RateLimit; another origin's is blocked by CORS, told apart from a server it cannot reach", async () => {
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
    // The same page against a port nothing listens on: the browser's script sees the same TypeError.
    const nowhere = `http://127.0.0.1:${freePort()}`;
    const lost = pageServer(nowhere);

    /** Loads a page; the server's /v1/scans answers (by status) during the load. */
    const load = async (url: string) => {
      const before = await scansRequests(server.metricsUrl);
      const l = await loadInChromium(url);
      const after = await scansRequests(server.metricsUrl);
      const delta = Object.fromEntries(
        Object.keys(after)
          .filter((k) => after[k] !== before[k])
          .map((k) => [k, (after[k] ?? 0) - (before[k] ?? 0)]),
      );
      return { ...l, server: delta };
    };

    const allowed = await load(`${allowedOrigin}/`);
    expect(allowed.result).toMatch(/^RESULT status=202 ratelimit="key";r=\d+;t=\d+$/);
    // The preflight (204) and the POST (202) reached the server.
    expect(allowed.server).toEqual({ "204": 1, "202": 1 });
    expect(verdict(allowed, { preflightsAnswered: allowed.server["204"] ?? 0 })).toBe("allowed");

    const blocked = await load(`http://127.0.0.1:${other.port}/`);
    // The browser sent the preflight, the server answered it (405, no CORS header), and the
    // browser then refused to send the POST, saying why: CORS, for this origin and this URL.
    expect(blocked.server).toEqual({ "405": 1 });
    expect(blocked.console.filter((l) => l.includes("CORS policy")).map((l) => /"([^"]*)"/.exec(l)?.[1])).toEqual([
      `Access to fetch at '${server.url}/v1/scans' from origin 'http://127.0.0.1:${other.port}' has been blocked by CORS policy: Response to preflight request doesn't pass access control check: No 'Access-Control-Allow-Origin' header is present on the requested resource.`,
    ]);
    expect(verdict(blocked, { preflightsAnswered: blocked.server["405"] ?? 0 })).toBe("blocked by CORS");

    // A server the page cannot reach looks the same to its script, and is not counted as a block.
    const unreachable = await loadInChromium(`http://127.0.0.1:${lost.port}/`);
    expect(unreachable.result).toBe(blocked.result);
    expect(unreachable.console.some((l) => l.includes("CORS policy"))).toBe(false);
    expect(verdict(unreachable, { preflightsAnswered: 0 })).toStartWith("not shown to be CORS");
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
