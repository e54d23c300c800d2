// Every error answer of the real edge app has the one body shape {error, errors?, request_id},
// with request_id the X-Request-Id header the client was given; the ingest answers keep
// {accepted, rejected} and carry request_id too. In-process app against the real broker.
import { describe, expect, test } from "bun:test";
import { API_KEY, createTestApp } from "../helpers/fixtures.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

type Body = Record<string, unknown>;

async function shape(res: Response) {
  const body = (await res.json()) as Body;
  const id = res.headers.get("x-request-id");
  return { status: res.status, keys: Object.keys(body).sort(), idMatches: id !== null && body.request_id === id, body };
}

describe("one error body", () => {
  test("401, 404, 405, 413, 415, 400 (body and query) all answer {error, errors?, request_id}", async () => {
    const { app, post } = await createTestApp({ MAX_EVENTS_PER_REQUEST: "2" });
    const auth = { authorization: `Bearer ${API_KEY}` };
    const cases: [string, Response | Promise<Response>, number, string[]][] = [
      ["no API key", app.request("/v1/scans", { method: "POST", body: "[]" }), 401, ["error", "request_id"]],
      ["unknown path", app.request("/v2/nothing"), 404, ["error", "request_id"]],
      ["wrong method", app.request("/v1/scans", { method: "PUT" }), 405, ["error", "request_id"]],
      ["too many events", post(JSON.stringify([scan(), scan(), scan()])), 413, ["error", "request_id"]],
      ["unsupported type", post("x", { "content-type": "text/plain" }), 415, ["error", "request_id"]],
      ["malformed JSON", post("[{"), 400, ["error", "request_id"]],
      [
        "invalid stats query",
        app.request("/v1/qr/QR-1/stats?interval=week", { headers: auth }),
        400,
        ["error", "errors", "request_id"],
      ],
    ];
    for (const [what, res, status, keys] of cases) {
      const s = await shape(await res);
      expect({ what, status: s.status, keys: s.keys, idMatches: s.idMatches }).toEqual({
        what,
        status,
        keys,
        idMatches: true,
      });
      expect(typeof s.body.error === "string" && s.body.error.length > 0).toBe(true);
    }
  });

  test("the ingest answers keep {accepted, rejected} and add request_id: 202 and the all-rejected 400", async () => {
    const { post } = await createTestApp();
    const ok = await shape(await post(JSON.stringify([scan()])));
    expect({ status: ok.status, keys: ok.keys, idMatches: ok.idMatches }).toEqual({
      status: 202,
      keys: ["accepted", "rejected", "request_id"],
      idMatches: true,
    });
    const bad = await shape(await post(JSON.stringify([{ qr_id: "QR-1" }])));
    expect({ status: bad.status, keys: bad.keys, idMatches: bad.idMatches, accepted: bad.body.accepted }).toEqual({
      status: 400,
      keys: ["accepted", "rejected", "request_id"],
      idMatches: true,
      accepted: 0,
    });
  });

  test("503 + Retry-After while Kafka is unreachable, in the same shape", async () => {
    const { post } = await createTestApp({ KAFKA_BROKERS: "127.0.0.1:9" }, { waitForKafka: false });
    const res = await post(JSON.stringify([scan()]));
    expect(res.headers.get("retry-after")).toBe("2");
    const s = await shape(res);
    expect({ status: s.status, keys: s.keys, idMatches: s.idMatches }).toEqual({
      status: 503,
      keys: ["error", "request_id"],
      idMatches: true,
    });
  });
});
