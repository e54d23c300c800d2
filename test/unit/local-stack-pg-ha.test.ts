// PG_HA in shared/local-stack.ts: off unless exactly 1, the etcd and Patroni members' ports from
// their STACK_* variables, and a refusal that names the variable for anything else.
import { describe, expect, test } from "bun:test";
import { localStack } from "../../shared/local-stack.ts";
import { haproxyConfig, patroniConfig } from "../../tools/stack/patroni.ts";

describe("localStack: PG_HA", () => {
  test("off by default and with 0; on with 1", () => {
    expect(localStack({}).pgHa).toBe(false);
    expect(localStack({ PG_HA: "0" }).pgHa).toBe(false);
    expect(localStack({ PG_HA: "1" }).pgHa).toBe(true);
  });

  test("anything else is refused with the variable's name", () => {
    for (const bad of ["yes", "2", "true"]) {
      expect(() => localStack({ PG_HA: bad })).toThrow(`PG_HA must be 1 or 0, got "${bad}"`);
    }
  });

  test("three etcd members (client, peer = client + 1) and two Patroni members from the STACK_* ports", () => {
    const s = localStack({
      PG_HA: "1",
      STACK_ETCD_PORT: "24379",
      STACK_PATRONI_PG_PORT: "24442",
      STACK_PATRONI_REST_PORT: "24008",
    });
    expect(s.etcdMembers).toEqual([
      { name: "etcd1", clientPort: 24379, peerPort: 24380 },
      { name: "etcd2", clientPort: 24389, peerPort: 24390 },
      { name: "etcd3", clientPort: 24399, peerPort: 24400 },
    ]);
    expect(s.patroniMembers).toEqual([
      { name: "pg1", pgPort: 24442, restPort: 24008 },
      { name: "pg2", pgPort: 24443, restPort: 24009 },
    ]);
    expect(() => localStack({ STACK_ETCD_PORT: "65530" })).toThrow("lower its STACK_* port");
  });

  test("the defaults collide with no other default port of the stack (three Kafka nodes included)", () => {
    const s = localStack({ KAFKA_NODES: "3", PG_HA: "1" });
    const ports = [
      s.pgPort,
      s.pgbouncerPort,
      s.postgresExporterPort,
      s.pgbouncerExporterPort,
      s.prometheusPort,
      s.alertmanagerPort,
      s.alertReceiverPort,
      s.haproxyStatsPort,
      ...s.kafkaNodes.flatMap((n) => [n.port, n.controllerPort, n.jmxExporterPort]),
      ...s.etcdMembers.flatMap((m) => [m.clientPort, m.peerPort]),
      ...s.patroniMembers.flatMap((m) => [m.pgPort, m.restPort]),
    ];
    expect(new Set(ports).size).toBe(ports.length);
  });

  test("Patroni: synchronous mode, pg_rewind; HAProxy: /primary, sessions cut when a member goes down", () => {
    const s = localStack({ PG_HA: "1" });
    const cfg = patroniConfig(s, s.patroniMembers[0] as (typeof s.patroniMembers)[number]) as {
      bootstrap: { dcs: { synchronous_mode: boolean; postgresql: { use_pg_rewind: boolean } } };
    };
    expect(cfg.bootstrap.dcs.synchronous_mode).toBe(true);
    expect(cfg.bootstrap.dcs.postgresql.use_pg_rewind).toBe(true);
    const ha = haproxyConfig(s);
    expect(ha).toContain("option httpchk GET /primary");
    expect(ha).toContain("on-marked-down shutdown-sessions");
    expect(ha).toContain(`bind 127.0.0.1:${s.pgPort}`);
  });
});
