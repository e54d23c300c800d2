// Random and malformed bodies never produce a 5xx and never crash the app.
import { expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { createTestApp } from "../helpers/fixtures.ts";
import { scan } from "../helpers/server.ts";
import { ensureStack } from "../helpers/stack.ts";

await ensureStack();

// A small deterministic PRNG so a failure can be replayed from the printed seed.
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WEIRD: unknown[] = [
  null,
  true,
  0,
  -1,
  1e308,
  "",
  "x".repeat(300),
  [],
  {},
  { lat: 1 },
  "2026-13-45T99:99:99Z",
  "🙂",
  "\u0000",
  -0.0,
  [[[[]]]],
];

function mutate(r: () => number): unknown {
  const base: Record<string, unknown> = scan();
  const keys = [
    "event_id",
    "qr_id",
    "scanned_at",
    "scanner_id",
    "location",
    "user_agent",
    "attributes",
    "__proto__",
    "constructor",
    "zzz",
  ];
  const n = Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const k = keys[Math.floor(r() * keys.length)] as string;
    if (r() < 0.3) delete base[k];
    else base[k] = WEIRD[Math.floor(r() * WEIRD.length)];
  }
  return r() < 0.1 ? WEIRD[Math.floor(r() * WEIRD.length)] : base;
}

function randomBody(r: () => number): { body: Uint8Array | string; headers: Record<string, string> } {
  const kind = Math.floor(r() * 6);
  if (kind === 0) return { body: crypto.getRandomValues(new Uint8Array(Math.floor(r() * 512))), headers: {} };
  if (kind === 1) {
    const json = JSON.stringify(Array.from({ length: 1 + Math.floor(r() * 5) }, () => mutate(r)));
    return { body: json.slice(0, Math.floor(json.length * r())), headers: {} };
  }
  if (kind === 2)
    return { body: JSON.stringify(Array.from({ length: 1 + Math.floor(r() * 5) }, () => mutate(r))), headers: {} };
  if (kind === 3) {
    const lines = Array.from({ length: 1 + Math.floor(r() * 5) }, () =>
      r() < 0.2 ? "{bad" : JSON.stringify(mutate(r)),
    );
    return { body: lines.join("\n"), headers: { "content-type": "application/x-ndjson" } };
  }
  if (kind === 4) {
    const data = gzipSync(JSON.stringify([mutate(r)]));
    return {
      body: r() < 0.5 ? data : data.subarray(0, Math.floor(data.length * r())),
      headers: { "content-encoding": "gzip" },
    };
  }
  return {
    body: JSON.stringify(mutate(r)),
    headers: {
      "content-type": ["application/json", "text/html", "", "application/x-ndjson; charset=utf-8"][
        Math.floor(r() * 4)
      ] as string,
    },
  };
}

test("500 random and malformed requests: never a 5xx", async () => {
  const { post } = await createTestApp();
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
  const r = rng(seed);
  const statuses = new Map<number, number>();
  for (let i = 0; i < 500; i++) {
    const { body, headers } = randomBody(r);
    const res = await post(body as RequestInit["body"], headers);
    await res.arrayBuffer();
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    if (res.status >= 500) throw new Error(`request ${i} (FUZZ_SEED=${seed}) got ${res.status}`);
  }
  // The generator reaches the interesting outcomes, so the test is not vacuous.
  expect(statuses.get(400)).toBeGreaterThan(0);
  expect(statuses.get(202)).toBeGreaterThan(0);
  expect([...statuses.keys()].every((s) => [202, 400, 413, 415].includes(s))).toBe(true);
});
