// Two headers whose meaning a client or a cache must not be able to bend (in-process app, real
// broker): with CORS_ORIGINS set, every answer of the CORS routes says `Vary: Origin` (an answer
// without CORS headers must not be served from a cache to an allowed origin, nor the reverse); and
// X-Request-Id is always the server's own id, in the header, the bodies and the audit lines, with
// the client's value beside it in the logs as client_request_id, bounded and sanitized.
//
// Mutations, each caught (2026-12-06): corsAllowlist returning next() untouched for no or an
// unlisted Origin (before this change); `varyOrigin` only when not "*"; hono's requestId() back
// (the client's id becomes request_id); client_request_id unsanitized or uncut.
import { describe, expect, test } from "bun:test";
import { createLogger } from "../../shared/logger.ts";
import { API_KEY, createTestApp } from "../helpers/fixtures.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

const ALLOWED = "https://app.example";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe("Vary: Origin", () => {
  test("CORS_ORIGINS set: every answer varies by Origin, with no Origin, an unlisted one or the allowed one", async () => {
    const { app } = await createTestApp({ CORS_ORIGINS: ALLOWED });
    const send = (origin: string | null, init: { method?: string; key?: string | null } = {}) =>
      app.request("/v1/scans", {
        method: init.method ?? "POST",
        body: init.method === "OPTIONS" ? undefined : JSON.stringify([scan()]),
        headers: {
          "content-type": "application/json",
          ...(init.key === null ? {} : { authorization: `Bearer ${init.key ?? API_KEY}` }),
          ...(origin ? { origin } : {}),
        },
      });
    const cases = [
      ["no Origin, 202", await send(null)],
      ["no Origin, 401", await send(null, { key: null })],
      ["unlisted Origin, 202", await send("https://evil.example")],
      ["unlisted Origin, preflight (405)", await send("https://evil.example", { method: "OPTIONS", key: null })],
      ["allowed Origin, 202", await send(ALLOWED)],
      ["allowed Origin, 401", await send(ALLOWED, { key: "wrong" })],
    ] as const;
    expect(
      cases.map(([what, r]) => ({
        what,
        vary: r.headers.get("vary"),
        allowOrigin: r.headers.get("access-control-allow-origin"),
      })),
    ).toEqual([
      { what: "no Origin, 202", vary: "Origin", allowOrigin: null },
      { what: "no Origin, 401", vary: "Origin", allowOrigin: null },
      { what: "unlisted Origin, 202", vary: "Origin", allowOrigin: null },
      { what: "unlisted Origin, preflight (405)", vary: "Origin", allowOrigin: null },
      { what: "allowed Origin, 202", vary: "Origin", allowOrigin: ALLOWED },
      { what: "allowed Origin, 401", vary: "Origin", allowOrigin: ALLOWED },
    ]);
    // The stats route too (refused before the database: an invalid query).
    const stats = await app.request("/v1/qr/QR-1/stats?from=not-a-time", {
      headers: { authorization: `Bearer ${API_KEY}` },
    });
    expect([stats.status, stats.headers.get("vary")]).toEqual([400, "Origin"]);
  });

  test("CORS_ORIGINS=*: the answer without Origin has no Access-Control-Allow-Origin, so it varies too", async () => {
    const { post } = await createTestApp({ CORS_ORIGINS: "*" });
    const without = await post(JSON.stringify([scan()]));
    const withOrigin = await post(JSON.stringify([scan()]), { origin: ALLOWED });
    expect([without.headers.get("access-control-allow-origin"), without.headers.get("vary")]).toEqual([null, "Origin"]);
    expect([withOrigin.headers.get("access-control-allow-origin"), withOrigin.headers.get("vary")]).toEqual([
      "*",
      "Origin",
    ]);
  });

  test("no CORS_ORIGINS: nothing varies, no Vary", async () => {
    const { post } = await createTestApp();
    expect((await post(JSON.stringify([scan()]), { origin: ALLOWED })).headers.get("vary")).toBeNull();
  });
});

describe("X-Request-Id", () => {
  test("the server's own id, in the header, the body and the audit line; the client's is logged apart, cut and sanitized", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger("server-test", "info", { write: (l: string) => void lines.push(JSON.parse(l)) });
    const { post } = await createTestApp({}, { logger });
    const theirs = `someone-else's id <script>${"x".repeat(300)}`;

    const refused = await post(JSON.stringify([scan()]), { authorization: "Bearer wrong", "x-request-id": theirs });
    expect(refused.status).toBe(401);
    const id = refused.headers.get("x-request-id") as string;
    expect(id).toMatch(UUID);
    expect(((await refused.json()) as { request_id: string }).request_id).toBe(id);
    const audit = lines.find((l) => l.msg === "authentication failed; answered 401");
    expect(audit?.request_id).toBe(id);
    expect(audit?.client_request_id).toBe(`someone-else_s_id__script_${"x".repeat(128 - 26)}`);
    expect(String(audit?.client_request_id).length).toBe(128);

    // A plausible id (another request's, say) is not taken either.
    const accepted = await post(JSON.stringify([scan()]), { "x-request-id": id });
    expect(accepted.status).toBe(202);
    const second = accepted.headers.get("x-request-id") as string;
    expect(second).toMatch(UUID);
    expect(second).not.toBe(id);
    expect(((await accepted.json()) as { request_id: string }).request_id).toBe(second);

    // Without one, the log line has no client_request_id at all (another reason: the audit line
    // is throttled per reason).
    const bare = await post(JSON.stringify([scan()]), { authorization: "" });
    const missing = lines.find((l) => l.msg === "authentication failed; answered 401" && l.reason === "missing");
    expect(missing?.request_id).toBe(bare.headers.get("x-request-id") as string);
    expect(missing).not.toHaveProperty("client_request_id");
  });
});
