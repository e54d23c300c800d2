// A Docker engine of the project's own, for compose's CI stage (tools/compose-images.ts) and anything
// else that needs one: Debian's dockerd, started as root with its state under ENGINE_DIR and its
// runtime files under /tmp, stopped by its pid. It never touches the host's iptables (no NAT, no
// default bridge): containers talk over compose's user-defined networks and publish on loopback
// through docker-proxy. No registry is reachable here, so every image it runs is built locally.
//   bun tools/engine.ts up        starts it (or finds it running); prints DOCKER_HOST=...
//   bun tools/engine.ts down      stops it and everything it runs
//   bun tools/engine.ts status    running or not, and its DOCKER_HOST
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { type CliSpec, MAIN, parseCommand, runCli } from "../shared/cli.ts";
import { loadConfig, str } from "../shared/config.ts";
import { localStack } from "../shared/local-stack.ts";
import { commandExists, isRoot, readPid, startDetached, stopPid, writePid } from "./stack/processes.ts";
import { waitFor } from "./wait.ts";

export const EngineConfigSchema = v.object({
  /** The engine's images, containers and volumes (kept between runs: builds reuse their layers). */
  ENGINE_DIR: str(join(localStack().dir, "engine")),
  /**
   * Where compose's networks get their subnets: one range per engine, so that two engines on one
   * machine (two checkouts) never route the same subnet.
   */
  ENGINE_ADDRESS_POOL: str("10.213.0.0/16"),
});

export interface Engine {
  /** For DOCKER_HOST (docker, docker-compose, buildah push docker-daemon:). */
  host: string;
  dir: string;
  pidFile: string;
  log: string;
}

class EngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EngineError";
  }
}

export function engine(config = loadConfig(EngineConfigSchema)): Engine {
  // Unix socket paths are limited to 107 bytes, and containerd nests its own below the exec root:
  // a short directory under /tmp, one per ENGINE_DIR.
  const run = `/tmp/qrscan-engine-${createHash("sha256").update(config.ENGINE_DIR).digest("hex").slice(0, 10)}`;
  return {
    host: `unix://${run}/docker.sock`,
    dir: config.ENGINE_DIR,
    pidFile: join(config.ENGINE_DIR, "dockerd.pid"),
    log: join(config.ENGINE_DIR, "dockerd.log"),
  };
}

const runDir = (e: Engine) => e.host.replace(/^unix:\/\//, "").replace(/\/docker\.sock$/, "");

/**
 * Removes the runtime directory, after unmounting what dockerd left mounted there: it keeps its
 * network namespace bound at exec/netns/default after it exits, and the directory cannot go while
 * that is mounted (a second `up` failed with EBUSY).
 */
function releaseRunDir(e: Engine): void {
  const dir = runDir(e);
  const mounted = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[1] ?? "")
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mounted) {
    const r = spawnSync("umount", ["--lazy", point], { encoding: "utf8" });
    if (r.status !== 0) throw new EngineError(`could not unmount ${point} (left by dockerd): ${r.stderr.trim()}`);
  }
  rmSync(dir, { recursive: true, force: true });
}

/** The engine answers its API (`docker version` through its socket). */
export async function engineAnswers(e: Engine): Promise<boolean> {
  const proc = Bun.spawn(["docker", "version", "--format", "{{.Server.Version}}"], {
    env: { ...process.env, DOCKER_HOST: e.host },
    stdout: "pipe",
    stderr: "pipe",
  });
  return (await proc.exited) === 0;
}

export async function engineUp(config = loadConfig(EngineConfigSchema)): Promise<Engine> {
  const e = engine(config);
  if (readPid(e.pidFile) && (await engineAnswers(e))) return e;
  if (!isRoot()) throw new EngineError("the engine runs dockerd, which needs root");
  for (const cmd of ["dockerd", "docker", "docker-compose"])
    if (!commandExists(cmd)) throw new EngineError(`${cmd} is not installed: apt-get install docker.io docker-compose`);
  mkdirSync(join(e.dir, "data"), { recursive: true });
  releaseRunDir(e);
  mkdirSync(runDir(e), { recursive: true });
  const pid = startDetached(
    "dockerd",
    [
      "--iptables=false",
      "--ip-masq=false",
      "--bridge=none",
      `--default-address-pool=base=${config.ENGINE_ADDRESS_POOL},size=24`,
      `--data-root=${join(e.dir, "data")}`,
      `--exec-root=${join(runDir(e), "exec")}`,
      `--pidfile=${join(runDir(e), "dockerd.pid")}`,
      `--host=${e.host}`,
      // Its own containerd (not the host's), below the exec root.
      "--containerd-namespace=qrscan",
      "--containerd-plugins-namespace=qrscan-plugins",
      "--log-level=warn",
    ],
    e.log,
  );
  writePid(e.pidFile, pid);
  await waitFor(
    `the engine (dockerd, pid ${pid}) to answer on ${e.host} (its log: ${e.log})`,
    async () => (readPid(e.pidFile) ? engineAnswers(e) : Promise.reject(new Error("dockerd exited"))),
    (ok) => ok,
    30_000,
    250,
  );
  return e;
}

/** Stops every container it runs, then the engine, by its pid. */
export async function engineDown(config = loadConfig(EngineConfigSchema)): Promise<boolean> {
  const e = engine(config);
  const pid = readPid(e.pidFile);
  if (!pid) return false;
  // dockerd stops its containers on SIGTERM (each with its stop timeout); then its containerd.
  await stopPid(pid, "SIGTERM", 60_000);
  rmSync(e.pidFile, { force: true });
  releaseRunDir(e);
  return true;
}

export const ENGINE_CLI: CliSpec = {
  program: "bun tools/engine.ts",
  description: "A Docker engine of the project's own (dockerd as root, no iptables), for compose.",
  commands: {
    [MAIN]: { args: "", description: "same as status", options: {} },
    up: { args: "", description: "start it (or find it running); prints DOCKER_HOST=…", options: {} },
    down: { args: "", description: "stop it and every container it runs", options: {} },
    status: { args: "", description: "running or not, and its DOCKER_HOST", options: {} },
  },
};

async function main(argv: string[]): Promise<number> {
  const { command } = parseCommand(ENGINE_CLI, argv);
  if (command === "up") {
    const e = await engineUp();
    console.log(`DOCKER_HOST=${e.host}`);
    return 0;
  }
  if (command === "down") {
    console.log((await engineDown()) ? "engine: stopped" : "engine: was not running");
    return 0;
  }
  const e = engine();
  const up = readPid(e.pidFile) !== null && existsSync(runDir(e)) && (await engineAnswers(e));
  console.log(up ? `engine: running, DOCKER_HOST=${e.host}` : "engine: not running");
  return up ? 0 : 1;
}

if (import.meta.main) await runCli(ENGINE_CLI, main);
