// The multi-host bench's simulated hosts (bench/hosts/netns.ts), built with the bench's own code:
// three namespaces on a bridge, two in zone A and one in zone B. TCP round trips measured between
// them (bench/hosts/rtt.ts, each end in its namespace) must be near the configured ones: 0.5 ms
// within a zone and 2 ms across with the zoned delay, near zero with the zero-delay variant of the
// same qdiscs; after teardown no namespace of the prefix is left. Needs root (namespaces, tc).
//
// On a kernel without sch_netem (this machine's) the tap engine runs: bench/hosts/delay-switch.c.
// Mutations this test was checked against (each applied alone, then reverted):
//
// | mutation                                                        | failed: message                                     |
// |-----------------------------------------------------------------|-----------------------------------------------------|
// | delay-switch.c: the same-zone class swapped with the cross-zone | "in-zone round trip 2.207 ms, expected 0.45-1.5 ms" |
// | one (the delay on the wrong band)                               |                                                     |
// | netns.ts setDelay: one-way delays written where the switch      | "in-zone round trip 0.398 ms, expected 0.45-1.5 ms" |
// | takes round trips (every delay halved)                          | (across: 1.17 ms)                                   |
// | netns.ts destroyTopology: no `ip netns del`                     | "could not delete network namespaces qzt-b1, …"     |
import { afterAll, expect, test } from "bun:test";
import {
  type Topology,
  ZERO_DELAY,
  createTopology,
  destroyTopology,
  namespacesWithPrefix,
  planTopology,
  setDelay,
} from "../../bench/hosts/netns.ts";
import { measureRtt } from "../../bench/hosts/rtt.ts";
import { onCleanup } from "../helpers/cleanup.ts";

// Its own prefix and subnet: the bench's (qzm-) may run beside it.
const PREFIX = "qzt-";
const RTT = { intraRttMs: 0.5, crossRttMs: 2 };
// Port 33301 lies in this helper range; inside private namespaces it cannot collide anyway.
const PORT = 33_301;

afterAll(async () => {
  await destroyTopology(PREFIX);
});

test("zones: the configured round trips land in-zone and across, zero with the zero-delay variant, and teardown leaves nothing", async () => {
  const t: Topology = planTopology(PREFIX, "10.233.34", [
    { name: "a1", zone: "A" },
    { name: "a2", zone: "A" },
    { name: "b1", zone: "B" },
  ]);
  onCleanup(() => destroyTopology(PREFIX));
  const built = await createTopology(t);
  console.log(`delay engine: ${built.engine}`);
  expect(namespacesWithPrefix(PREFIX).sort()).toEqual(["qzt-a1", "qzt-a2", "qzt-b1", "qzt-sw"]);

  await setDelay(t, built, RTT);
  const inZone = await measureRtt(t, "a1", "a2", PORT);
  const across = await measureRtt(t, "a1", "b1", PORT);
  const backAcross = await measureRtt(t, "b1", "a2", PORT);
  await setDelay(t, built, ZERO_DELAY);
  const zeroIn = await measureRtt(t, "a1", "a2", PORT);
  const zeroAcross = await measureRtt(t, "a1", "b1", PORT);
  console.log(
    `round trips (median ms): zoned in-zone ${inZone.median_ms}, across ${across.median_ms} (back ${backAcross.median_ms}); ` +
      `zero-delay in-zone ${zeroIn.median_ms}, across ${zeroAcross.median_ms}`,
  );
  const near = (what: string, got: number, lo: number, hi: number) =>
    expect(got >= lo && got <= hi ? "ok" : `${what} round trip ${got} ms, expected ${lo}-${hi} ms`).toBe("ok");
  // netem cannot deliver early: the floor is the configured RTT (less a little rounding); the
  // ceiling leaves room for a busy 2-core box's scheduling, but not for the other zone's delay.
  near("in-zone", inZone.median_ms, 0.45, 1.5);
  near("across-zone", across.median_ms, 1.95, 3);
  near("across-zone (B to A)", backAcross.median_ms, 1.95, 3);
  near("zero-delay in-zone", zeroIn.median_ms, 0, 0.45);
  near("zero-delay across-zone", zeroAcross.median_ms, 0, 0.45);

  const deleted = await destroyTopology(PREFIX);
  expect(deleted.length).toBe(4);
  expect(namespacesWithPrefix(PREFIX)).toEqual([]);
}, 60_000);
