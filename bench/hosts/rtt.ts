// TCP round trips between two simulated hosts (bench/hosts/netns.ts): an echo server in one
// namespace, a client in another sending one byte at a time over one connection and timing each
// echo. It shows that the zones' netem delays landed: the bench prints the matrix beside its
// figures, the CI test asserts it is near the configured round trips.
//   bun bench/hosts/rtt.ts serve <addr> <port>        (prints "ready" once listening)
//   bun bench/hosts/rtt.ts ping <addr> <port> <count> (prints {"median_ms":…,"min_ms":…,"p95_ms":…})
import { createConnection, createServer } from "node:net";
import { type Topology, inNs } from "./netns.ts";

export interface RttResult {
  median_ms: number;
  min_ms: number;
  p95_ms: number;
  samples: number;
}

function serve(addr: string, port: number) {
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    socket.on("data", (d) => socket.write(d));
    socket.on("error", () => {});
  });
  server.listen(port, addr, () => console.log("ready"));
}

async function ping(addr: string, port: number, count: number): Promise<RttResult> {
  const socket = createConnection({ host: addr, port });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  const times: number[] = [];
  const one = Buffer.from("x");
  // A few warm-up round trips (ARP, the first segments' slow paths) are not counted.
  for (let i = 0; i < count + 5; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      socket.once("data", () => resolve());
      socket.write(one);
    });
    if (i >= 5) times.push(performance.now() - t0);
  }
  socket.destroy();
  times.sort((a, b) => a - b);
  const at = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))] as number;
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { median_ms: r(at(0.5)), min_ms: r(times[0] as number), p95_ms: r(at(0.95)), samples: times.length };
}

const SELF = new URL(import.meta.url).pathname;

/**
 * Round trips from host `from` to host `to` (each in its namespace): starts an echo server in
 * `to`'s namespace on `port`, runs `count` pings from `from`'s, stops the server by pid.
 */
export async function measureRtt(t: Topology, from: string, to: string, port: number, count = 50): Promise<RttResult> {
  const a = t.hosts[from];
  const b = t.hosts[to];
  if (!a || !b) throw new Error(`no host "${a ? to : from}" in the topology`);
  const server = Bun.spawn([...inNs(b.ns), "bun", SELF, "serve", b.addr, String(port)], {
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    const reader = server.stdout.getReader();
    const first = await Promise.race([reader.read(), Bun.sleep(10_000).then(() => null)]);
    reader.releaseLock();
    if (!first || first.done || !new TextDecoder().decode(first.value).includes("ready")) {
      throw new Error(
        `the echo server in ${b.ns} did not print "ready" within 10 s: ${await new Response(server.stderr).text()}`,
      );
    }
    const client = Bun.spawn([...inNs(a.ns), "bun", SELF, "ping", b.addr, String(port), String(count)], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([
      new Response(client.stdout).text(),
      new Response(client.stderr).text(),
      client.exited,
    ]);
    if (code !== 0) throw new Error(`ping ${from} -> ${to} failed (${code}): ${err.trim()}`);
    return JSON.parse(out) as RttResult;
  } finally {
    server.kill("SIGKILL");
    await server.exited;
  }
}

if (import.meta.main) {
  const [mode, addr = "", port = "0", count = "50"] = process.argv.slice(2);
  if (mode === "serve") serve(addr, Number(port));
  else if (mode === "ping") console.log(JSON.stringify(await ping(addr, Number(port), Number(count))));
  else {
    console.error("usage: bun bench/hosts/rtt.ts serve <addr> <port> | ping <addr> <port> <count>");
    process.exit(2);
  }
}
