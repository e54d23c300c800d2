// Hand-made mutations: see tools/mutations/types.ts.
import type { Mutation } from "../types.ts";

export const mutations: Mutation[] = [
  {
    id: "producer-idempotence-off",
    promise: "The edge answers 202 only after Kafka acknowledged every accepted event (acks=all, idempotent producer)",
    file: "packages/bun-rdkafka/src/producer.ts",
    find: "      { ...DEFAULTS, ...options.config },",
    replace: '      { ...DEFAULTS, ...options.config, "enable.idempotence": false },',
    killers: ["test/integration/server-ingest.test.ts"],
    testNamePattern: "202 only after Kafka has the events",
    observed:
      'expect(received).toEqual(expected): idemp_state expected "Assigned", received undefined; partition 1 (hw 2) producers expected [{lastSequence: 1, …}], received [] (the broker holds no producer state for the events)',
  },
  {
    id: "rate-limit-no-division",
    promise:
      "The limits hold at any replica count: each of N live edge replicas enforces 1/N of a key's rate and burst (docs/security.md, Rate limits)",
    file: "server/rate-limit.ts",
    find: "  return { rate: limit.rate / replicas, burst: Math.max(1, Math.floor(limit.burst / replicas)) };",
    replace: "  return { rate: limit.rate, burst: limit.burst };",
    killers: ["test/integration/rate-limit-replicas.test.ts"],
    testNamePattern: "real edge processes",
    observed:
      'expect(received).toEqual(expected): per replica batch 202 instead of 429, maxBatchEvents null instead of "10", every single event 202 instead of ten 202s then two 429s',
  },
  {
    id: "jwt-accepts-hs256",
    promise:
      "A JWT signed with an algorithm outside JWT_ALGORITHMS (never none or HS*) is refused (docs/api.md, Authentication)",
    file: "server/auth.ts",
    find: "        algorithms: j.algorithms,",
    replace: '        algorithms: [...j.algorithms, "HS256"],',
    killers: ["test/integration/server-jwt.test.ts"],
    testNamePattern: "matrix|PEM public key",
    observed:
      'matrix: each "HS256 signed with the server\'s RSA public key (…)" case [401, "jwt_malformed"] instead of [401, "jwt_algorithm"]; key files: jwt_algorithm failures expected 6, received 0. (Still 401: jose selects no HMAC key from RSA keys.)',
  },
  {
    id: "key-refresh-5s",
    promise:
      "A revoked key is refused by every server from its next refresh, within API_KEYS_REFRESH_SECONDS (docs/api.md; docs/security.md: within the 1 s interval)",
    file: "server/keys.ts",
    find: "    this.#periodic = new Periodic(() => this.#refresh(), o.refreshSeconds * 1000);",
    replace: "    this.#periodic = new Periodic(() => this.#refresh(), 5 * 1000);",
    killers: ["test/integration/key-revocation.test.ts"],
    observed:
      "both tests: expect(received).toEqual(expected) over [] expected, received every latency above the 1,300 ms bound (SELECT-only role 2,850-4,849 ms; stats saturated 2,386-4,387 ms)",
  },
  {
    id: "log-authorization-base64",
    promise: "No secret in any log line (docs/security.md, Secrets): an API key sent in a failed request is not logged",
    file: "server/auth.ts",
    find: '          audit(c, error.reason, error.hint, "authentication failed; answered 401");',
    replace:
      '          audit(c, error.reason, { ...error.hint, authorization: btoa(c.req.header("authorization") ?? "") }, "authentication failed; answered 401");',
    killers: ["test/integration/secrets-and-personal-data.test.ts"],
    observed:
      'expect(received).toEqual(expected): [] expected, received ["wrongKey (base64 at offset 1): {…"reason":"unknown_key",…"authorization":"QmVhcmVyIHFyc1…"…}"]',
  },
  {
    id: "log-basic-credential",
    promise:
      "No secret in any log line (docs/security.md, Secrets): the metrics listeners' Basic credentials are not logged",
    file: "shared/metrics.ts",
    find: '        if (authorized && !authorized(req.headers.get("authorization"))) {',
    replace:
      '        if (req.headers.get("authorization")?.startsWith("Basic ")) console.log(JSON.stringify({ msg: "metrics scrape", authorization: req.headers.get("authorization") }));\n        if (authorized && !authorized(req.headers.get("authorization"))) {',
    killers: ["test/integration/secrets-and-personal-data.test.ts"],
    observed:
      'expect(received).toEqual(expected): [] expected, received ["metricsPassword (base64 at offset 2): {"msg":"metrics scrape","authorization":"Basic cHJvbWV0aGV1czpt…"}"] (the only hit: a verbatim search passes)',
  },
  {
    id: "log-database-url",
    promise: "No secret in any log line (docs/security.md, Secrets): database passwords are not logged",
    file: "server/main.ts",
    find: "      topic: config.SCANS_TOPIC,",
    replace: "      topic: config.SCANS_TOPIC, database: config.DATABASE_URL,",
    killers: ["test/integration/secrets-and-personal-data.test.ts"],
    observed:
      'expect(received).toEqual(expected): [] expected, received ["wrongDbPassword (URL-encoded): {…"msg":"edge server listening",…"database":"postgres://qrscan:dbpw%2F…"}"]',
  },
  {
    id: "event-offset-2359",
    promise:
      "The edge accepts only what Postgres stores faithfully: offsets within ±15:59 (docs/api.md, Accepted values)",
    file: "shared/event.ts",
    find: '    if (oh > 15 || om > 59) return { error: "has a UTC offset out of range (at most ±15:59)" };',
    replace: '    if (oh > 23 || om > 59) return { error: "has a UTC offset out of range (at most ±15:59)" };',
    killers: ["test/integration/event-roundtrip.test.ts"],
    testNamePattern: "adversarial",
    observed:
      "answers: count 72 instead of 0 (requests where the edge accepted events the model refuses: got accepted 2, want 1, …); 1,439 rows stored for 1,331 the model accepts",
  },
  {
    id: "event-no-surrogate-check",
    promise:
      "The edge accepts only what Postgres stores faithfully: no lone surrogate in any string; an event answered 202 is never dead-lettered",
    file: "shared/event.ts",
    find: '  if (!s.isWellFormed()) return "must be valid Unicode (it contains a lone surrogate)";',
    replace: "",
    killers: ["test/integration/event-roundtrip.test.ts"],
    testNamePattern: "adversarial",
    observed:
      "answers: count 105 instead of 0 (e.g. event 24 refused by the model for scanner_id, accepted by the edge); 191 dead-lettered",
  },
  {
    id: "event-round-micros",
    promise:
      "scanned_at is normalised to UTC with microseconds, further digits truncated (docs/api.md, Accepted values)",
    file: "shared/event.ts",
    find: '  const micros = Number(`${m[7] ?? ""}000000`.slice(0, 6));',
    replace: '  const micros = Math.min(999_999, Math.round(Number(`0.${m[7] ?? "0"}`) * 1e6));',
    killers: ["test/integration/event-roundtrip.test.ts"],
    testNamePattern: "adversarial",
    observed:
      'rows: differences ["…: scanned_at: stored \\"2074-04-02T00:24:00.701906Z\\", expected \\"2074-04-02T00:24:00.701905Z\\"; scanned_at: Postgres reads the client\'s text as 2074-04-02T00:24:00.701905Z", …]',
  },
  {
    id: "record-drops-scanner-id",
    promise: "Every event answered 202 lands in Postgres as sent (README)",
    file: "shared/event.ts",
    find: "    ...event,\n    derived_at: derivedAt,\n",
    replace: "    ...event,\n    scanner_id: undefined,\n    derived_at: derivedAt,\n",
    killers: ["test/integration/event-roundtrip.test.ts"],
    testNamePattern: "adversarial",
    observed: 'rows: differences ["…: scanner_id: stored null, expected \\"ref\\"", …]',
  },
  {
    id: "ingest-drops-client-ip",
    promise:
      "The server adds client_ip (from the peer, or X-Forwarded-For from a trusted proxy) to each event (docs/api.md, The event)",
    file: "server/ingest.ts",
    find: "        value: JSON.stringify(toScanRecord(event, receivedAt, clientIp, derivedAt)),",
    replace: "        value: JSON.stringify(toScanRecord(event, receivedAt, null, derivedAt)),",
    killers: ["test/integration/event-roundtrip.test.ts"],
    testNamePattern: "adversarial",
    observed:
      'rows: differences ["…: client_ip: stored null, expected \\"127.0.0.1\\"", "…: client_ip: stored null, expected \\"3.1.234.123\\"", …]',
  },
  {
    id: "cors-allows-every-origin",
    promise:
      "Browser pages can call the API only from origins the operator allowed (docs/api.md, Rate limits; docs/security.md, CORS)",
    file: "server/app.ts",
    find: '  const any = config.CORS_ORIGINS.includes("*");',
    replace: "  const any = true;",
    killers: ["test/integration/cors-browser.test.ts"],
    testNamePattern: "Chromium",
    observed:
      'expect(received).toEqual(expected): the other origin\'s load reached the server as {"202": 1, "204": 1} instead of {"405": 1} (its POST went through)',
  },
];
