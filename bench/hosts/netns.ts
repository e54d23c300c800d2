// Simulated hosts on one machine: one Linux network namespace per component, all plugged into a
// bridge in a private "switch" namespace, with tc netem delay between zones. Used by the multi-host
// bench (bench/e2e-hosts.ts) and its CI test (test/integration/netns-zones.test.ts), so the test
// proves the very topology the bench measures on.
//
// Two ways to make the delay, the same topology either way (DelayEngine):
// - netem: a Linux bridge; each component's veth egress carries a prio qdisc whose band 1 (same
//   zone) and band 2 (another zone) each hold a netem delay of half the round trip, chosen by u32
//   filters on the destination address; band 3 (the control namespace, anything unmatched) none.
// - tap: for kernels built without sch_netem and sch_prio (this project's CI machines' kernel):
//   a user-space learning switch (./delay-switch.c) owns one TAP device per host (its eth0) and
//   holds each frame for half the round trip of its zone pair.
// Both directions are delayed, so a round trip costs the configured RTT. The zero-delay variant
// keeps the same machinery at 0 ms. Nothing in the root namespace changes but the namespaces'
// names; never iptables. Zones are one letter.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A component's place: its namespace, address and zone (null: the control namespace, undelayed). */
export interface Host {
  name: string;
  ns: string;
  addr: string;
  zone: string | null;
}

export interface Topology {
  prefix: string;
  /** The namespace holding the bridge. */
  switchNs: string;
  hosts: Record<string, Host>;
}

export interface Delay {
  /** Round trip between two hosts of one zone, ms. */
  intraRttMs: number;
  /** Round trip between hosts of different zones, ms. */
  crossRttMs: number;
}

export const ZERO_DELAY: Delay = { intraRttMs: 0, crossRttMs: 0 };

/** Namespace names hold the prefix and the component; an interface name is at most 15 bytes. */
const NAME = /^[a-z0-9-]{1,12}$/;

/**
 * Plans a topology in 10.<a>.<b>.0/24 (`subnet`, "10.233.33"): the hosts get .10 upwards in the
 * order given. Nothing is created yet.
 */
export function planTopology(prefix: string, subnet: string, hosts: { name: string; zone: string | null }[]): Topology {
  if (!/^[a-z0-9]{1,6}-$/.test(prefix))
    throw new Error(`a namespace prefix is up to 6 letters or digits and "-", got "${prefix}"`);
  if (!/^10\.\d{1,3}\.\d{1,3}$/.test(subnet))
    throw new Error(`subnet must be like 10.233.33 (a private /24), got "${subnet}"`);
  const out: Record<string, Host> = {};
  hosts.forEach((h, i) => {
    if (!NAME.test(h.name)) throw new Error(`host name "${h.name}": lower-case letters, digits, "-", at most 12`);
    if (h.zone !== null && !/^[A-Z]$/.test(h.zone)) throw new Error(`zone "${h.zone}": one capital letter`);
    out[h.name] = { name: h.name, ns: `${prefix}${h.name}`, addr: `${subnet}.${10 + i}`, zone: h.zone };
  });
  return { prefix, switchNs: `${prefix}sw`, hosts: out };
}

/** Runs `ip`/`tc` (root needed); throws with its output when it fails. */
function sh(cmd: string, args: string[]): string {
  const res = spawnSync(cmd, args, { encoding: "utf8" });
  if (res.error) throw new Error(`${cmd} could not run: ${res.error.message} (iproute2 is in .ci/apt-packages)`);
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${res.status}): ${res.stderr.trim()}`);
  return res.stdout;
}

/** The command prefix that runs a program inside `host`'s namespace. */
export const inNs = (ns: string) => ["ip", "netns", "exec", ns];

/** Namespaces of this machine whose name starts with `prefix`. */
export function namespacesWithPrefix(prefix: string): string[] {
  return sh("ip", ["netns", "list"])
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(prefix));
}

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new Error(`${what} needs root: it creates network namespaces and tc qdiscs (run it as root, e.g. sudo)`);
  }
}

/** Where the delays are made: tc netem on each veth (the kernel's), or the user-space delay switch. */
export type DelayEngine = "netem" | "tap";

/** What createTopology built: the engine, and for the tap engine the switch's pid and control file. */
export interface Built {
  engine: DelayEngine;
  switchPid: number | null;
  controlFile: string | null;
}

/** Whether this kernel has the netem and prio qdiscs (tried on the switch namespace's lo). */
function kernelHasNetem(switchNs: string): boolean {
  const tc = (...args: string[]) => spawnSync("ip", ["netns", "exec", switchNs, "tc", ...args], { encoding: "utf8" });
  const ok =
    tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "prio").status === 0 &&
    tc("qdisc", "add", "dev", "lo", "parent", "1:1", "netem", "delay", "0ms").status === 0;
  tc("qdisc", "del", "dev", "lo", "root");
  return ok;
}

const SWITCH_SOURCE = new URL("./delay-switch.c", import.meta.url).pathname;

/** The delay switch, compiled once per source version with gcc (in .ci/apt-packages). */
function switchBinary(): string {
  const source = readFileSync(SWITCH_SOURCE);
  const bin = join(tmpdir(), `qz-delay-switch-${createHash("sha256").update(source).digest("hex").slice(0, 12)}`);
  if (!existsSync(bin)) sh("gcc", ["-O2", "-Wall", "-o", bin, SWITCH_SOURCE]);
  return bin;
}

/**
 * Creates the namespaces and one link per host into the switch namespace, addresses, and the delay
 * machinery at zero delay (setDelay changes it): with netem, a bridge, veths and the prio + netem
 * qdiscs; without (`engine` "auto" picks), the user-space delay switch's TAP devices. Fails when a
 * namespace of this prefix already exists (a run that did not clean up, or one running now).
 */
export async function createTopology(t: Topology, engine: DelayEngine | "auto" = "auto"): Promise<Built> {
  requireRoot("the simulated multi-host topology");
  const leftover = namespacesWithPrefix(t.prefix);
  if (leftover.length > 0) {
    throw new Error(
      `network namespaces ${leftover.join(", ")} exist already (another run, or one that was killed): delete them with \`ip netns del <name>\` first`,
    );
  }
  const hosts = Object.values(t.hosts);
  sh("ip", ["netns", "add", t.switchNs]);
  sh("ip", ["-n", t.switchNs, "link", "set", "lo", "up"]);
  const chosen: DelayEngine = engine === "auto" ? (kernelHasNetem(t.switchNs) ? "netem" : "tap") : engine;
  for (const h of hosts) {
    sh("ip", ["netns", "add", h.ns]);
    sh("ip", ["-n", h.ns, "link", "set", "lo", "up"]);
  }
  if (chosen === "tap") {
    const controlFile = join(tmpdir(), `${t.prefix}delay`);
    writeFileSync(controlFile, "0 0\n");
    const zones = hosts.map((h) => h.zone ?? "-");
    // Its output goes to a file: nobody has to keep reading a pipe for it to go on.
    const log = join(tmpdir(), `${t.prefix}switch.log`);
    writeFileSync(log, "");
    // Real-time priority (SCHED_FIFO): a network does not wait for a core behind the hosts' own
    // processes, so neither may the switch on a busy box. It uses a few % of one core.
    const rt = ["chrt", "--fifo", "50"];
    const proc = Bun.spawn([...inNs(t.switchNs), ...rt, switchBinary(), t.prefix, controlFile, ...zones], {
      stdout: Bun.file(log),
      stderr: Bun.file(`${log}.err`),
    });
    const deadline = Date.now() + 5_000;
    while (!readFileSync(log, "utf8").includes("ready")) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        throw new Error(
          `the delay switch did not start (exit ${proc.exitCode}): ${readFileSync(`${log}.err`, "utf8")}`,
        );
      }
      await Bun.sleep(20);
    }
    proc.unref();
    hosts.forEach((h, i) => {
      // The TAP device moves into the host's namespace; the switch keeps its file descriptor.
      sh("ip", ["-n", t.switchNs, "link", "set", `${t.prefix}tap${i}`, "netns", h.ns]);
      sh("ip", ["-n", h.ns, "link", "set", `${t.prefix}tap${i}`, "name", "eth0"]);
      sh("ip", ["-n", h.ns, "addr", "add", `${h.addr}/24`, "dev", "eth0"]);
      sh("ip", ["-n", h.ns, "link", "set", "eth0", "up"]);
    });
    return { engine: "tap", switchPid: proc.pid, controlFile };
  }
  sh("ip", ["-n", t.switchNs, "link", "add", "br0", "type", "bridge"]);
  sh("ip", ["-n", t.switchNs, "link", "set", "br0", "up"]);
  for (const h of hosts) {
    // Created inside the switch namespace, its peer moved straight into the host's: the root
    // namespace never holds the interfaces.
    sh("ip", ["-n", t.switchNs, "link", "add", `v-${h.name}`, "type", "veth", "peer", "name", "eth0", "netns", h.ns]);
    sh("ip", ["-n", t.switchNs, "link", "set", `v-${h.name}`, "master", "br0", "up"]);
    sh("ip", ["-n", h.ns, "addr", "add", `${h.addr}/24`, "dev", "eth0"]);
    sh("ip", ["-n", h.ns, "link", "set", "eth0", "up"]);
    // Bands: 1 same zone, 2 other zone, 3 (the priomap's default for every packet) no delay.
    const tc = (...args: string[]) => sh("ip", ["netns", "exec", h.ns, "tc", ...args]);
    tc("qdisc", "add", "dev", "eth0", "root", "handle", "1:", "prio", "bands", "3", "priomap", ...Array(16).fill("2"));
    tc("qdisc", "add", "dev", "eth0", "parent", "1:1", "handle", "10:", "netem", "delay", "0ms");
    tc("qdisc", "add", "dev", "eth0", "parent", "1:2", "handle", "20:", "netem", "delay", "0ms");
    tc("qdisc", "add", "dev", "eth0", "parent", "1:3", "handle", "30:", "pfifo");
    if (h.zone === null) continue;
    for (const peer of hosts) {
      if (peer === h || peer.zone === null) continue;
      const band = peer.zone === h.zone ? "1:1" : "1:2";
      const match = ["u32", "match", "ip", "dst", `${peer.addr}/32`, "flowid", band];
      tc("filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1", ...match);
    }
  }
  return { engine: "netem", switchPid: null, controlFile: null };
}

/** netem's delay argument: microseconds, so 0.25 ms stays exact. */
const netemDelay = (oneWayMs: number) => `${Math.round(oneWayMs * 1000)}us`;

/** Sets the delays: half of each round trip on each direction (netem per egress band, or the switch). */
export async function setDelay(t: Topology, built: Built, d: Delay): Promise<void> {
  if (built.engine === "tap") {
    if (!built.controlFile || !built.switchPid)
      throw new Error("the tap engine needs the switch's pid and control file");
    writeFileSync(built.controlFile, `${Math.round(d.intraRttMs * 1000)} ${Math.round(d.crossRttMs * 1000)}\n`);
    process.kill(built.switchPid, "SIGHUP");
    await Bun.sleep(50); // it re-reads the file on its next turn
    return;
  }
  for (const h of Object.values(t.hosts)) {
    for (const [handle, parent, rtt] of [
      ["10:", "1:1", d.intraRttMs],
      ["20:", "1:2", d.crossRttMs],
    ] as const) {
      const args = ["qdisc", "change", "dev", "eth0", "parent", parent, "handle", handle, "netem", "delay"];
      sh("ip", ["netns", "exec", h.ns, "tc", ...args, netemDelay(rtt / 2)]);
    }
  }
}

/**
 * The frames the delay switch lost so far (the tap engine; null with netem): to a full delay queue
 * (`dropped`), and refused by a TAP device (`writeFailed`: at start before every device is up, or a full one).
 */
export async function switchDrops(t: Topology, built: Built): Promise<{ dropped: number; writeFailed: number } | null> {
  if (built.engine !== "tap" || !built.switchPid) return null;
  const log = join(tmpdir(), `${t.prefix}switch.log`);
  const before = readFileSync(log, "utf8").length;
  process.kill(built.switchPid, "SIGHUP"); // it re-reads the control file and prints its counter
  for (let i = 0; i < 40; i++) {
    await Bun.sleep(25);
    const m = readFileSync(log, "utf8")
      .slice(before)
      .match(/dropped (\d+) write_failed (\d+)/);
    if (m) return { dropped: Number(m[1]), writeFailed: Number(m[2]) };
  }
  throw new Error(`the delay switch (pid ${built.switchPid}) did not report its drops within 1 s`);
}

/** Pids of the processes still inside a namespace (ip netns pids). */
export function pidsIn(ns: string): number[] {
  const res = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" });
  return res.status === 0
    ? res.stdout
        .split("\n")
        .map(Number)
        .filter((n) => n > 0)
    : [];
}

/**
 * Kills (SIGKILL, by pid) whatever still runs in the prefix's namespaces (processes this run
 * started there: nothing else can be inside), then deletes the namespaces; the veths and the
 * bridge go with them. Returns the namespaces deleted. Safe to call twice.
 */
export async function destroyTopology(prefix: string): Promise<string[]> {
  const names = namespacesWithPrefix(prefix);
  for (const ns of names) {
    for (const pid of pidsIn(ns)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  const deadline = Date.now() + 10_000;
  while (names.some((ns) => pidsIn(ns).length > 0) && Date.now() < deadline) await Bun.sleep(50);
  for (const ns of names) spawnSync("ip", ["netns", "del", ns]);
  for (const f of ["delay", "switch.log", "switch.log.err"]) rmSync(join(tmpdir(), `${prefix}${f}`), { force: true });
  const left = namespacesWithPrefix(prefix);
  if (left.length > 0) throw new Error(`could not delete network namespaces ${left.join(", ")}`);
  return names;
}
