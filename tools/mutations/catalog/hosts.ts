// Hand-made mutations of past one box: edge replicas behind a balancer, Postgres high availability,
// the simulated hosts' zone delays. See tools/mutations/types.ts.
import type { Mutation } from "../types.ts";

export const mutations: Mutation[] = [
  {
    id: "drain-no-delay",
    promise:
      "A replica stopped with SIGTERM behind a balancer drains with no error any client sees: /ready answers 503 while it keeps serving for DRAIN_DELAY_MS (deploy/haproxy/README.md)",
    file: "server/main.ts",
    find: "    if (delayMs > 0) await Bun.sleep(delayMs);",
    replace: "",
    killers: ["test/integration/edge-replicas.test.ts"],
    testNamePattern: "SIGTERM of one replica",
    observed:
      "HAProxy's redispatches for the stopped replica (wredis) 9 to 14 instead of 0: requests met its closed listener",
  },
  {
    id: "edge-lb-checks-health",
    promise:
      "The balancer takes a draining replica out of rotation by its /ready (deploy/haproxy/edge.cfg), before it stops accepting",
    file: "deploy/haproxy/edge.cfg",
    find: "  option httpchk GET /ready",
    replace: "  option httpchk GET /health",
    killers: ["test/integration/edge-replicas.test.ts"],
    testNamePattern: "SIGTERM of one replica",
    observed: "HAProxy's redispatches for the stopped replica 15 instead of 0 (/health stays 200 while it drains)",
  },
  {
    id: "edge-lb-no-retry",
    promise:
      "A replica killed under load costs clients no error the balancer can absorb: a request that never reached it, or got no answer, is retried on another (deploy/haproxy/edge.cfg)",
    file: "deploy/haproxy/edge.cfg",
    find: "  retry-on conn-failure empty-response\n  option redispatch 1\n",
    replace: "",
    killers: ["test/integration/edge-replicas.test.ts"],
    testNamePattern: "kill -9 of one replica",
    observed:
      "no redispatch by HAProxy; the load generator got 503s and the scanner SDK a server_error 503; 202s again only 3.28 s after the kill",
  },
  {
    id: "pg-ha-commit-local",
    promise:
      "A row the worker committed survives the loss of the Postgres leader: every commit waits for the synchronous standby (docs/deployment.md, Postgres with high availability)",
    file: "tools/stack/patroni.ts",
    find: 'synchronous_commit: "on",',
    replace: 'synchronous_commit: "local",',
    killers: ["test/integration/pg-ha-failover.test.ts"],
    observed: 'storedOnce: "150 of 880 acknowledged events are not stored (lost)"',
  },
  {
    id: "pg-ha-routes-to-any",
    promise: "pgbouncer follows the Postgres leader: HAProxy sends connections only to the member answering /primary",
    file: "tools/stack/patroni.ts",
    find: 'export async function startHaproxy(stack: LocalStack, check = "/primary"): Promise<void> {',
    replace: 'export async function startHaproxy(stack: LocalStack, check = "/health"): Promise<void> {',
    killers: ["test/integration/pg-ha-failover.test.ts"],
    observed:
      'the cluster\'s start: "cannot execute CREATE ROLE in a read-only transaction" (connections reached the replica)',
  },
  {
    id: "pg-switchover-unpaused",
    promise:
      "A planned Postgres switchover (bun run pg-switchover) makes clients wait instead of failing: pgbouncer holds new transactions while the leader moves",
    file: "tools/pg-switchover.ts",
    find: '    pause: values["no-pause"] !== true,',
    replace: "    pause: false,",
    killers: ["test/integration/pg-ha-switchover.test.ts"],
    observed: "stats GETs not 200: 79 × 503 during the switchover that was meant to be paused",
  },
  {
    id: "zones-delay-swapped",
    promise:
      "The multi-host bench's zones are a given round trip apart: 0.5 ms within a zone, 2 ms across (bench/e2e-hosts.ts)",
    file: "bench/hosts/netns.ts",
    find: "`${Math.round(d.intraRttMs * 1000)} ${Math.round(d.crossRttMs * 1000)}\\n`",
    replace: "`${Math.round(d.crossRttMs * 1000)} ${Math.round(d.intraRttMs * 1000)}\\n`",
    killers: ["test/integration/netns-zones.test.ts"],
    observed: "in-zone round trip 2.207 ms, expected 0.45-1.5 ms",
  },
];
