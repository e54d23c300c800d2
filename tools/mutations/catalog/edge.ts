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
      'expect(received).toEqual(expected): per replica batch 202 instead of 429, maxBatchEvents null instead of "10", singles "202 × 12" instead of "202 × 10,429,429"',
  },
];
