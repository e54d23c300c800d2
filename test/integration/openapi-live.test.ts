// The OpenAPI document against the real edge (in-process, the real broker): every answer the
// document promises is made to happen by a real request, and each one's status is documented, and
// its body and headers validate twice: against the valibot answer schema (server/answers.ts) and
// against the document's own JSON Schema for that answer (ajv), whose components must equal the
// valibot schemas' conversion, so the document, the code and the wire cannot drift apart.
// The document is served at GET /openapi.json without a key, and its paths are the app's routes.
import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { toJsonSchemaDefs } from "@valibot/to-json-schema";
import addFormats from "ajv-formats";
import Ajv2020 from "ajv/dist/2020.js";
import postgres from "postgres";
import * as v from "valibot";
import { AnswerHeaders } from "../../server/answers.ts";
import { COMPONENT_SCHEMAS, CONVERSION, type ComponentName, openApiDocument } from "../../server/openapi.ts";
import { API_KEY, createDatabase, createTestApp, onCleanup } from "../helpers/fixtures.ts";
import { freePort, scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

const doc = openApiDocument();
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);

type Documented = {
  headers?: Record<string, { required: boolean; schema: object }>;
  content?: { "application/json": { schema: { $ref?: string; oneOf?: { $ref?: string }[] } } };
};

/**
 * Holds one live answer to the document: its status is documented for `method path` (or, for
 * `viaDefault`, falls to the operation's `default`), each documented header is there when required
 * and valid when there, and the body validates against the document's schema and the valibot one.
 * Returns the body, and which component validated it.
 */
async function conforms(
  res: Response,
  method: string,
  path: string,
  { viaDefault = false }: { viaDefault?: boolean } = {},
): Promise<{ body: unknown; component: ComponentName }> {
  const operation = doc.paths[path]?.[method];
  if (!operation) throw new Error(`the document has no ${method.toUpperCase()} ${path}`);
  const explicit = operation.responses[String(res.status)] as Documented | undefined;
  if (viaDefault) expect(explicit).toBeUndefined();
  else if (!explicit) throw new Error(`${res.status} is not documented for ${method.toUpperCase()} ${path}`);
  const documented = (explicit ?? operation.responses.default) as Documented;

  for (const [name, h] of Object.entries(documented.headers ?? {})) {
    const value = res.headers.get(name);
    if (value === null) {
      if (h.required) throw new Error(`${res.status}: the documented header ${name} is missing`);
      continue;
    }
    expect({ header: name, valid: ajv.validate(h.schema, value), errors: ajv.errors ?? null }).toEqual({
      header: name,
      valid: true,
      errors: null,
    });
    expect(v.safeParse(AnswerHeaders[name as keyof typeof AnswerHeaders], value).success).toBe(true);
  }

  const body: unknown = await res.json();
  const schema = documented.content?.["application/json"].schema;
  if (!schema) throw new Error(`${res.status}: no JSON body documented`);
  // The document's own schema, its $refs resolved within the document.
  const validate = ajv.compile({ ...schema, components: doc.components });
  expect({ status: res.status, body, valid: validate(body), errors: validate.errors ?? null }).toMatchObject({
    valid: true,
    errors: null,
  });
  // And the valibot schema of the component it names (one of them, for a oneOf).
  const names = (schema.oneOf ?? [schema]).map((s) => s.$ref?.split("/").at(-1) as ComponentName);
  const component = names.find((n) => v.safeParse(COMPONENT_SCHEMAS[n], body).success);
  if (!component) throw new Error(`${res.status}: ${JSON.stringify(body)} matches none of ${names.join(", ")}`);
  return { body, component };
}

describe("the document", () => {
  test("is served at GET /openapi.json without a key; its paths are the app's routes; its schemas the valibot ones", async () => {
    const { app } = await createTestApp({ AUTH_FAILURES_PER_MINUTE: "0" });
    const res = await app.request("/openapi.json");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toContain("max-age");
    const served = (await res.json()) as typeof doc;
    expect(served).toEqual(JSON.parse(JSON.stringify(doc)));
    // The JSON Schema in the document is the conversion of the same valibot schemas.
    expect(served.components.schemas).toEqual(
      JSON.parse(JSON.stringify(toJsonSchemaDefs(COMPONENT_SCHEMAS, CONVERSION))),
    );

    const routed = new Set(
      app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`),
    );
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)),
    );
    expect([...documented].sort()).toEqual([...routed].sort());
  });
});

describe("every documented answer, from the real edge", () => {
  test("202 (JSON, version 2, NDJSON, gzip), 400 both shapes, 401, 413, 415, 404, 405, the probes", async () => {
    const { app, post } = await createTestApp({ AUTH_FAILURES_PER_MINUTE: "0", MAX_EVENTS_PER_REQUEST: "5" });
    const scans = "/v1/scans";

    const mixed = await conforms(await post(JSON.stringify([scan(), scan({ qr_id: "no spaces" })])), "post", scans);
    expect(mixed).toMatchObject({ component: "IngestAnswer", body: { accepted: 1, rejected: [{ index: 1 }] } });

    // Contract version 2: sent_at corrects the device's clock; one off by more than a day is refused on sent_at.
    const now = Date.now();
    const v2 = (clockOffsetMs: number) =>
      scan({
        scanned_at: new Date(now + clockOffsetMs - 1000).toISOString(),
        sent_at: new Date(now + clockOffsetMs).toISOString(),
        schema_version: 2,
      });
    const skewed = await conforms(await post(JSON.stringify([v2(2 * 3_600_000), v2(30 * 3_600_000)])), "post", scans);
    expect(skewed.body).toMatchObject({ accepted: 1, rejected: [{ index: 1, errors: [{ path: "sent_at" }] }] });

    const ndjson = `${JSON.stringify(scan())}\n${JSON.stringify(scan())}\n`;
    const gz = await post(gzipSync(ndjson), { "content-type": "application/x-ndjson", "content-encoding": "gzip" });
    expect((await conforms(gz, "post", scans)).body).toMatchObject({ accepted: 2, rejected: [] });

    const invalid = await conforms(await post(JSON.stringify({ event_id: "x" })), "post", scans);
    expect(invalid).toMatchObject({ component: "IngestAnswer", body: { accepted: 0 } });
    const malformed = await conforms(await post("[{"), "post", scans);
    expect(malformed).toMatchObject({
      component: "ErrorAnswer",
      body: { error: expect.stringContaining("malformed") },
    });

    const unauthorized = await post(JSON.stringify(scan()), { authorization: "Bearer qrs_wrong" });
    expect((await conforms(unauthorized, "post", scans)).component).toBe("ErrorAnswer");
    const tooMany = Array.from({ length: 6 }, () => JSON.stringify(scan())).join("\n");
    const tooLarge = await post(tooMany, { "content-type": "application/x-ndjson" });
    expect([tooLarge.status, (await conforms(tooLarge, "post", scans)).component]).toEqual([413, "ErrorAnswer"]);
    const unsupported = await post("QR-1", { "content-type": "text/plain" });
    expect([unsupported.status, (await conforms(unsupported, "post", scans)).component]).toEqual([415, "ErrorAnswer"]);

    const wrongMethod = await app.request(scans);
    expect([wrongMethod.status, wrongMethod.headers.get("allow")]).toEqual([405, "POST"]);
    await conforms(wrongMethod, "post", scans, { viaDefault: true });
    const unknown = await app.request("/v1/scan", { method: "POST", headers: { authorization: `Bearer ${API_KEY}` } });
    expect(unknown.status).toBe(404);
    await conforms(unknown, "post", scans, { viaDefault: true });

    const health = await app.request("/health");
    expect([health.status, (await conforms(health, "get", "/health")).component]).toEqual([200, "ProbeAnswer"]);
    const ready = await app.request("/ready");
    expect([ready.status, (await conforms(ready, "get", "/ready")).component]).toEqual([200, "ProbeAnswer"]);
  });

  test("429 both kinds: over the rate (Retry-After, RateLimit) and over the burst (Max-Batch-Events), and per address", async () => {
    const { post } = await createTestApp({
      RATE_LIMIT_EVENTS_PER_SECOND: "1",
      RATE_LIMIT_BURST: "2",
      AUTH_FAILURES_PER_MINUTE: "1",
      AUTH_FAILURE_BURST: "1",
    });
    const scans = "/v1/scans";
    const batch = (n: number) => JSON.stringify(Array.from({ length: n }, () => scan()));

    // More than the burst: never accepted, so no Retry-After, the largest batch named instead.
    const overBurst = await post(batch(3));
    expect(overBurst.status).toBe(429);
    expect([overBurst.headers.get("max-batch-events"), overBurst.headers.get("retry-after")]).toEqual(["2", null]);
    await conforms(overBurst, "post", scans);

    // The burst, accepted with the limit's fields, then a request the emptied bucket cannot pay.
    const accepted = await post(batch(2));
    expect(accepted.status).toBe(202);
    expect(accepted.headers.get("ratelimit")).toMatch(/^"key";r=0;/);
    await conforms(accepted, "post", scans);
    const overRate = await post(batch(2));
    expect(overRate.status).toBe(429);
    expect(overRate.headers.get("retry-after")).toMatch(/^\d+$/);
    await conforms(overRate, "post", scans);

    // Failed authentications from one address: the first is a 401, the next one the "ip" 429.
    const wrong = { authorization: "Bearer qrs_wrong" };
    expect((await post(batch(1), wrong)).status).toBe(401);
    const locked = await post(batch(1), wrong);
    expect([locked.status, locked.headers.get("ratelimit-policy")]).toEqual([429, '"ip";q=1;w=60']);
    await conforms(locked, "post", scans);
  });

  test("the stats route's 200, 400 and 503, and the 503s of an edge without Kafka", async () => {
    const db = await createDatabase();
    await db.sql`insert into scan_counts (qr_id, bucket, count) values ('gate-7', '2026-11-25T10:00:00Z', 3)`;
    const { app } = await createTestApp({ AUTH_FAILURES_PER_MINUTE: "0" }, { sql: db.sql });
    const get = (path: string) => app.request(path, { headers: { authorization: `Bearer ${API_KEY}` } });
    const stats = "/v1/qr/{qr_id}/stats";
    const counted = await get("/v1/qr/gate-7/stats?from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z&interval=day");
    expect(await conforms(counted, "get", stats)).toMatchObject({ component: "StatsAnswer", body: { total: 3 } });
    const invalid = await get("/v1/qr/gate-7/stats?interval=week");
    expect(await conforms(invalid, "get", stats)).toMatchObject({
      component: "ErrorAnswer",
      body: { errors: [{ path: "interval" }] },
    });

    // No database and no broker behind the edge: the route's 503 + Retry-After, and ingest's.
    const nowhere = postgres(`postgres://qrscan:qrscan@127.0.0.1:${freePort()}/qrscan`, { max: 1, prepare: false });
    onCleanup(() => nowhere.end({ timeout: 1 }));
    const down = await createTestApp(
      { AUTH_FAILURES_PER_MINUTE: "0", KAFKA_BROKERS: `127.0.0.1:${freePort()}` },
      { sql: nowhere, waitForKafka: false },
    );
    const noDb = await down.app.request("/v1/qr/gate-7/stats", { headers: { authorization: `Bearer ${API_KEY}` } });
    expect([noDb.status, (await conforms(noDb, "get", stats)).component]).toEqual([503, "ErrorAnswer"]);
    const noKafka = await down.post(JSON.stringify(scan()));
    expect([noKafka.status, (await conforms(noKafka, "post", "/v1/scans")).component]).toEqual([503, "ErrorAnswer"]);
    const notReady = await down.app.request("/ready");
    expect([notReady.status, (await conforms(notReady, "get", "/ready")).body]).toEqual([
      503,
      { status: "waiting for Kafka" },
    ]);
  });
});
