// Builds the production images (Dockerfile, targets server, worker and backup) with buildah and runs them
// against the local stack, as .ci/run does. No Docker engine or registry is needed:
//  1. base: `debootstrap --variant=minbase bookworm` (cached in $STACK_DIR/images/) committed as
//     localhost/debian-base:bookworm, unless IMAGES_BASE names a base image to use instead;
//  2. build: both targets, `--format docker` (keeps HEALTHCHECK), from that base;
//  3. inspect: a numeric non-root USER, HEALTHCHECK, STOPSIGNAL SIGTERM, the OCI labels; the
//     backup image's `pgbackrest version` runs as its USER and is the local stack's pgBackRest;
//     what the runbooks' compose and kubectl forms run in an image is on its PATH (and the files
//     bun runs), as its USER;
//  4. run, each image's own command as its own USER (from `buildah inspect`), host network, on its
//     root filesystem mounted read-only with a tmpfs /tmp (as compose's read_only and Kubernetes'
//     readOnlyRootFilesystem; `buildah run` cannot, so: unshare + chroot): the migrate step (the
//     worker image, `bun sql/migrate.ts`) on a throwaway database, the worker's CMD, the server's
//     CMD; a scan POSTed to the server answers 202 and the worker stores its row; each image's
//     HEALTHCHECK command passes inside its container; SIGTERM drains both (exit 0); each operator
//     job (jobs/) runs from the worker image against the same database and topic (--help of each,
//     keys create then list, maintain, dlq list, restore-offsets --dry-run, archive-restore of a
//     day not archived), exit codes and output checked; and on a
//     writable root (`buildah run`) the user can write nowhere but /tmp (and the empty /archive,
//     the archive volume's mount point), and nothing changed;
//  5. containers removed, stage times and image sizes printed.
// Images live in a containers storage of their own ($STACK_DIR/containers unless IMAGES_STORAGE).
//   bun tools/images.ts            (build + smoke; needs root, buildah, debootstrap)
//   bun tools/images.ts build      (only the base and the build, with the inspect checks)
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  rmdirSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { KafkaAdmin } from "bun-rdkafka";
import postgres from "postgres";
import { newSecret } from "../shared/api-keys.ts";
import { type CliSpec, MAIN, parseCommand, runCli } from "../shared/cli.ts";
import { loadConfig } from "../shared/config.ts";
import { localStack } from "../shared/local-stack.ts";
import { ROOT, createThrowawayDatabase, killProcess, spawnProcess } from "./harness.ts";
import { ImagesConfigSchema, buildahStorageArgs } from "./images/config.ts";
import { type ImageConfig, imageProblems } from "./images/inspect.ts";
import { IMAGES } from "./images/names.ts";
import { runbookImageNeeds } from "./images/runbook-programs.ts";
import { up } from "./stack.ts";
import { commandExists, freePort, isRoot } from "./stack/processes.ts";
import { waitFor } from "./wait.ts";

export { IMAGES };
export const LOCAL_BASE = "localhost/debian-base:bookworm";

const stack = localStack();
const config = loadConfig(ImagesConfigSchema);
const CACHE = join(stack.dir, "images");

class ImageCheckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageCheckError";
  }
}

// ---------------------------------------------------------------------------------------------
// Commands and stage times

function sh(cmd: string, args: string[], { input, quiet = false }: { input?: string; quiet?: boolean } = {}): string {
  const r = spawnSync(cmd, args, {
    cwd: ROOT,
    encoding: "utf8",
    input,
    maxBuffer: 64 * 1024 * 1024,
    stdio: [input === undefined ? "ignore" : "pipe", "pipe", quiet ? "pipe" : "inherit"],
  });
  if (r.status !== 0) {
    const err = quiet ? `: ${String(r.stderr).trim().slice(-2000)}` : " (its stderr is above)";
    throw new ImageCheckError(`${cmd} ${args.join(" ")} exited with ${r.status ?? r.signal}${err}`);
  }
  return r.stdout;
}

const storageArgs = buildahStorageArgs(config.IMAGES_STORAGE);
const buildah = (args: string[], options?: { input?: string; quiet?: boolean }) =>
  sh("buildah", [...storageArgs, ...args], options);

const times: [string, number][] = [];
async function stage<T>(name: string, body: () => Promise<T> | T): Promise<T> {
  console.log(`== images: ${name}`);
  const started = performance.now();
  try {
    return await body();
  } finally {
    const seconds = (performance.now() - started) / 1000;
    times.push([name, seconds]);
    console.log(`   (${name}: ${seconds.toFixed(1)} s)`);
  }
}

// ---------------------------------------------------------------------------------------------
// 1. The base image

/** A minimal Debian bookworm, bootstrapped once into the cache and committed as LOCAL_BASE. */
function localBase(): string {
  const present = spawnSync("buildah", [...storageArgs, "inspect", "--type", "image", LOCAL_BASE], { stdio: "ignore" });
  if (present.status === 0) return LOCAL_BASE;
  const rootfs = join(CACHE, "rootfs");
  if (!existsSync(join(rootfs, ".bootstrapped"))) {
    const partial = `${rootfs}.partial`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(CACHE, { recursive: true });
    sh("debootstrap", ["--variant=minbase", "bookworm", partial], { quiet: true });
    // As the slim image: no package caches, lists, docs or locales.
    for (const dir of [
      "var/cache/apt/archives",
      "var/lib/apt/lists",
      "usr/share/doc",
      "usr/share/man",
      "usr/share/locale",
    ])
      sh("find", [join(partial, dir), "-mindepth", "1", "-delete"]);
    writeFileSync(join(partial, ".bootstrapped"), new Date().toISOString());
    rmSync(rootfs, { recursive: true, force: true });
    renameSync(partial, rootfs);
  }
  // buildah alone: an empty container, the tree unpacked into it (ownership and modes kept), committed.
  const ctr = buildah(["from", "scratch"], { quiet: true }).trim();
  try {
    const mnt = buildah(["mount", ctr], { quiet: true }).trim();
    sh("sh", ["-c", `tar -C '${rootfs}' --exclude=./.bootstrapped -c . | tar -C '${mnt}' -x --numeric-owner -p`]);
    buildah(["config", "--cmd", "/bin/bash", ctr], { quiet: true });
    buildah(["commit", "--quiet", "--format", "docker", ctr, LOCAL_BASE], { quiet: true });
  } finally {
    buildah(["rm", ctr], { quiet: true });
  }
  return LOCAL_BASE;
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. Build and inspect

const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const revision = sh("git", ["rev-parse", "HEAD"], { quiet: true }).trim();
const tag = config.IMAGES_TAG || revision.slice(0, 12);
const imageRef = (target: keyof typeof IMAGES) => `localhost/${IMAGES[target]}:${tag}`;

function build(target: keyof typeof IMAGES, base: string): void {
  buildah([
    "bud",
    "--isolation",
    "chroot",
    "--format",
    "docker",
    "--layers",
    // A failed step leaves no working container (nor its mount) behind.
    "--force-rm",
    "--quiet",
    "--target",
    target,
    "--build-arg",
    `BASE_IMAGE=${base}`,
    "--build-arg",
    `VERSION=${version}`,
    "--build-arg",
    `REVISION=${revision}`,
    "--build-arg",
    "SOURCE=file://qrscan-ingest",
    ...(config.NODE_EXTRA_CA_CERTS
      ? [
          "--volume",
          `${config.NODE_EXTRA_CA_CERTS}:/run/build-ca/ca.crt:ro`,
          "--build-arg",
          "NODE_EXTRA_CA_CERTS=/run/build-ca/ca.crt",
        ]
      : []),
    "--tag",
    imageRef(target),
    "--file",
    "Dockerfile",
    ".",
  ]);
}

/**
 * compose.yaml's pgbouncer image (compose/pgbouncer), from the same base; its pgbouncer must be the
 * version the local stack runs (Debian's package on both).
 */
async function buildComposePgbouncer(base: string): Promise<void> {
  const ref = `localhost/qrscan-pgbouncer:${tag}`;
  buildah(
    ["bud", "--isolation", "chroot", "--format", "docker", "--layers", "--force-rm", "--quiet"].concat([
      "--build-arg",
      `BASE_IMAGE=${base}`,
      "--tag",
      ref,
      "compose/pgbouncer",
    ]),
  );
  const problems = imageProblems(inspect(ref), null);
  if (problems.length) throw new ImageCheckError(`${ref}:\n  ${problems.join("\n  ")}`);
  const ctr = buildah(["from", "--pull-never", ref], { quiet: true }).trim();
  try {
    const user = inspect(ref).User;
    const versionLine = (out: string) => out.split("\n").find((l) => l.startsWith("PgBouncer ")) ?? out.trim();
    const inImage = versionLine(
      buildah(["run", "--isolation", "chroot", "--user", user, ctr, "--", "pgbouncer", "--version"], { quiet: true }),
    );
    const local = versionLine(sh("pgbouncer", ["--version"], { quiet: true }));
    if (inImage !== local)
      throw new ImageCheckError(
        `${ref} runs ${JSON.stringify(inImage)}; the local stack runs ${JSON.stringify(local)}`,
      );
    console.log(`   ${ref}: USER ${user}, ${inImage} (the local stack's)`);
  } finally {
    buildah(["rm", ctr], { quiet: true });
  }
}

/**
 * The backup image (target backup): pgBackRest runs as the image's USER, and it is the version the
 * local stack's and compose's Postgres archive with (Debian's package on all three).
 */
function checkBackupImage(): void {
  const ref = imageRef("backup");
  const c = inspect(ref);
  const problems = imageProblems(c, null);
  if (problems.length) throw new ImageCheckError(`${ref}:\n  ${problems.join("\n  ")}`);
  const ctr = buildah(["from", "--pull-never", ref], { quiet: true }).trim();
  try {
    const inImage = buildah(["run", "--isolation", "chroot", "--user", c.User, ctr, "--", "pgbackrest", "version"], {
      quiet: true,
    }).trim();
    if (!/^pgBackRest \d+\.\d+/.test(inImage))
      throw new ImageCheckError(`${ref}: pgbackrest version printed ${JSON.stringify(inImage)}`);
    const local = commandExists("pgbackrest") ? sh("pgbackrest", ["version"], { quiet: true }).trim() : null;
    if (local && local !== inImage)
      throw new ImageCheckError(
        `${ref} runs ${JSON.stringify(inImage)}; the local stack runs ${JSON.stringify(local)}`,
      );
    console.log(`   ${ref}: USER ${c.User}, ${inImage}${local ? " (the local stack's)" : ""}`);
  } finally {
    buildah(["rm", ctr], { quiet: true });
  }
}

function inspect(ref: string): ImageConfig {
  const doc = JSON.parse(buildah(["inspect", "--type", "image", ref], { quiet: true })) as {
    Docker: { config: ImageConfig };
  };
  return doc.Docker.config;
}

function checkImage(target: keyof typeof IMAGES): ImageConfig {
  const c = inspect(imageRef(target));
  const problems = imageProblems(c, { revision, version });
  if (problems.length) throw new ImageCheckError(`${imageRef(target)}:\n  ${problems.join("\n  ")}`);
  console.log(
    `   ${imageRef(target)}: USER ${c.User}, CMD ${c.Cmd.join(" ")}, HEALTHCHECK ${c.Healthcheck?.Test.slice(1).join(" ")}, STOPSIGNAL ${c.StopSignal}`,
  );
  return c;
}

/**
 * What the runbooks' compose and kubectl forms run in each image (tools/images/runbook-programs.ts,
 * the parser test/unit/runbooks.test.ts checks them statically with) is there: one `sh -c` per
 * image, as its USER in its WORKDIR, finds each program on the PATH as a file (`command -v` prints
 * a path; a builtin's bare name is not enough, for kubectl exec and compose exec run no shell) and
 * each file `bun` runs.
 */
function checkRunbookPrograms(): void {
  const script = [
    "missing=; files=",
    'for a; do if [ "$a" = -- ]; then files=1',
    'elif [ -z "$files" ]; then case $(command -v "$a") in /*) ;; *) missing="$missing $a" ;; esac',
    'else [ -f "$a" ] || missing="$missing $a"; fi; done',
    'if [ -n "$missing" ]; then echo "missing:$missing"; exit 1; fi',
    "echo ok",
  ].join("\n");
  const needs = runbookImageNeeds();
  const none = Object.keys(IMAGES).filter((t) => !needs.has(t as keyof typeof IMAGES));
  if (none.length) console.log(`   ${none.join(", ")}: the runbooks run nothing in them`);
  for (const [target, { programs, files }] of needs) {
    const ref = imageRef(target);
    const user = inspect(ref).User;
    const ctr = buildah(["from", "--pull-never", ref], { quiet: true }).trim();
    try {
      const args = ["run", "--isolation", "chroot", "--user", user, ctr, "--", "sh", "-c", script, "sh"];
      const r = spawnSync("buildah", [...storageArgs, ...args, ...programs, "--", ...files], { encoding: "utf8" });
      if (r.status !== 0)
        throw new ImageCheckError(
          `${ref}: the runbooks run what the image lacks (${r.stdout.trim() || `exit ${r.status}`}): ${r.stderr.trim().slice(-500)}`,
        );
      console.log(`   ${ref}: as ${user}, the runbooks' ${programs.join(", ")} and ${files.join(", ")} are there`);
    } finally {
      buildah(["rm", ctr], { quiet: true });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 4. Run the images

interface Container {
  name: string;
  id: string;
  image: ImageConfig;
  /** Where the read-only view of its root filesystem is mounted (an empty folder of the host's). */
  readOnlyRoot?: string;
}

const containers: Container[] = [];
const running: Subprocess[] = [];

function createContainer(target: keyof typeof IMAGES, role: string): Container {
  const name = `qrscan-smoke-${role}-${Date.now().toString(36)}`;
  const id = buildah(["from", "--pull-never", "--name", name, imageRef(target)], { quiet: true }).trim();
  const c = { name, id, image: inspect(imageRef(target)) };
  containers.push(c);
  return c;
}

/** `buildah run` of `cmd` in `c` as the image's USER, host network, tmpfs /tmp, with `env` added. */
function runArgs(c: Container, cmd: string[], env: Record<string, string>): string[] {
  return [
    "buildah",
    ...storageArgs,
    "run",
    "--isolation",
    "chroot",
    "--user",
    c.image.User,
    "--mount",
    "type=tmpfs,destination=/tmp",
    ...Object.entries(env).flatMap(([k, value]) => ["--env", `${k}=${value}`]),
    c.name,
    "--",
    ...cmd,
  ];
}

/**
 * `cmd` in `c` as under compose's `read_only: true` with a tmpfs /tmp (Kubernetes'
 * readOnlyRootFilesystem with an emptyDir): the root filesystem buildah mounts for the container,
 * bound read-only in a mount namespace of its own with a tmpfs on /tmp, /proc and /dev; chrooted
 * there as the image's USER, with the image's Env and WorkingDir plus `env`, host network. Every
 * step execs the next, so the process spawned is the image's process itself.
 */
function readOnlyArgs(c: Container, cmd: string[], env: Record<string, string>): string[] {
  if (!c.readOnlyRoot) c.readOnlyRoot = mkdtempSync(join(tmpdir(), "qrscan-ro-root-"));
  const mnt = buildah(["mount", c.id], { quiet: true }).trim();
  const setup = [
    'mount --bind "$1" "$2"',
    'mount -o remount,bind,ro "$2"',
    'mount -t tmpfs -o mode=1777,size=64m tmpfs "$2/tmp"',
    'mount -t proc proc "$2/proc"',
    'mount --rbind /dev "$2/dev"',
    "shift 2",
    'exec "$@"',
  ].join(" && ");
  const vars = [...c.image.Env, ...Object.entries(env).map(([k, value]) => `${k}=${value}`)];
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    setup,
    "sh",
    mnt,
    c.readOnlyRoot,
    ...["chroot", `--userspec=${c.image.User}`, c.readOnlyRoot],
    ...["/usr/bin/env", "-i", "-C", c.image.WorkingDir || "/", ...vars],
    ...cmd,
  ];
}

type RunMode = "read-only" | "buildah run";

function runIn(
  c: Container,
  cmd: string[],
  env: Record<string, string>,
  log: string,
  mode: RunMode = "read-only",
): Subprocess {
  const args = mode === "read-only" ? readOnlyArgs(c, cmd, env) : runArgs(c, cmd, env);
  const proc = spawnProcess({ cmd: args, output: { file: log } });
  running.push(proc);
  return proc;
}

async function runToEnd(
  c: Container,
  cmd: string[],
  env: Record<string, string>,
  log: string,
  timeoutMs: number,
  mode: RunMode = "read-only",
) {
  const proc = runIn(c, cmd, env, log, mode);
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const code = await proc.exited;
  clearTimeout(timer);
  return code;
}

const tail = (file: string) =>
  existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").slice(-15).join("\n") : "";

async function answers(url: string): Promise<number> {
  return (await fetch(url, { signal: AbortSignal.timeout(2_000) })).status;
}

/** Waits for `url` to answer 200 while `proc` runs; the error shows the container's log. */
async function waitReady(what: string, proc: Subprocess, url: string, log: string): Promise<void> {
  try {
    await waitFor(
      `${what} to answer ${url} with 200`,
      async () => (proc.exitCode !== null ? `exited with ${proc.exitCode}` : await answers(url)),
      (s) => s === 200 || typeof s === "string",
      90_000,
      250,
    ).then((s) => {
      if (s !== 200) throw new ImageCheckError(`${what} ${s}`);
    });
  } catch (error) {
    throw new ImageCheckError(`${(error as Error).message}\n--- ${log}:\n${tail(log)}`);
  }
}

/** Writable paths for the image's user outside /tmp (and the kernel's /proc, /sys, /dev). */
async function writablePaths(c: Container, logDir: string): Promise<string[]> {
  const log = join(logDir, `${c.name}-writable.log`);
  const cmd = [
    "find",
    "/",
    "(",
    "-path",
    "/proc",
    "-o",
    "-path",
    "/sys",
    "-o",
    "-path",
    "/dev",
    "-o",
    "-path",
    "/tmp",
    // The archive volume's mount point (ARCHIVE_DIR in compose's ops service): the user owns it so
    // an empty named volume mounted there is writable; pruned only while empty, so a file the
    // image put there is still found.
    "-o",
    "(",
    "-path",
    "/archive",
    "-empty",
    ")",
    ")",
    "-prune",
    "-o",
    "-writable",
    "-print",
  ];
  // On a writable root (buildah run): what the user could write if the root were not read-only.
  const code = await runToEnd(c, cmd, {}, log, 60_000, "buildah run");
  const out = readFileSync(log, "utf8").trim();
  if (code !== 0 && code !== 1) throw new ImageCheckError(`find in ${c.name} exited with ${code}: ${out.slice(-500)}`);
  // The log also has find's "Permission denied" lines and buildah's exit status: only paths count.
  return out.split("\n").filter((l) => l.startsWith("/") && !/^\S*find: /.test(l));
}

/** Files of the container's root filesystem changed after `since`, outside /tmp and the run's mount points. */
function changedSince(c: Container, since: string): string[] {
  const mnt = buildah(["mount", c.id], { quiet: true }).trim();
  try {
    const out = sh(
      "find",
      [
        mnt,
        "-xdev",
        "(",
        "-path",
        `${mnt}/tmp`,
        "-o",
        "-path",
        `${mnt}/proc`,
        "-o",
        "-path",
        `${mnt}/sys`,
        "-o",
        "-path",
        `${mnt}/dev`,
        ")",
        "-prune",
        "-o",
        "-newer",
        since,
        "-print",
      ],
      { quiet: true },
    );
    // `buildah run` mounts its own files (.containerenv, secrets) under /run, which changes the
    // folder's mtime, not a file of the image.
    const mountPoints = new Set(["", "/run"]);
    return out
      .split("\n")
      .filter(Boolean)
      .map((p) => p.slice(mnt.length))
      .filter((p) => !mountPoints.has(p));
  } finally {
    buildah(["umount", c.id], { quiet: true });
  }
}

async function smoke(): Promise<void> {
  await stage("local stack", () => up());
  const logDir = join(CACHE, "logs");
  rmSync(logDir, { recursive: true, force: true });
  mkdirSync(logDir, { recursive: true });
  const db = await createThrowawayDatabase("images_smoke", { migrated: false });
  const admin = new KafkaAdmin({ config: { "bootstrap.servers": stack.brokers } });
  const topic = `images-smoke-${Date.now().toString(36)}`;
  const marker = join(logDir, "started");
  try {
    await admin.createTopics([{ name: topic, partitions: 3 }], { ignoreExisting: false });
    writeFileSync(marker, "");
    await Bun.sleep(1_100); // mtimes have 1 s granularity on some filesystems: changes come after it

    const migrateCtr = createContainer("worker", "migrate");
    const workerCtr = createContainer("worker", "worker");
    const serverCtr = createContainer("server", "server");

    await stage("run: migrate step (worker image, bun sql/migrate.ts)", async () => {
      const log = join(logDir, "migrate.log");
      const code = await runToEnd(
        migrateCtr,
        ["bun", "sql/migrate.ts"],
        { DATABASE_DIRECT_URL: db.directUrl },
        log,
        120_000,
      );
      if (code !== 0) throw new ImageCheckError(`the migrate step exited with ${code}:\n${tail(log)}`);
      const sql = postgres(db.directUrl, { max: 1, onnotice: () => {} });
      try {
        const [row] = await sql<{ n: number }[]>`select count(*)::int as n from schema_migrations`;
        const files = spawnSync("ls", [join(ROOT, "sql/migrations")], { encoding: "utf8" })
          .stdout.split("\n")
          .filter((f) => f.endsWith(".sql"));
        if (row?.n !== files.length)
          throw new ImageCheckError(`the migrate step applied ${row?.n} of ${files.length} migrations`);
        console.log(`   applied ${row.n} migrations: ${tail(log).split("\n").pop()}`);
      } finally {
        await sql.end();
      }
    });

    const workerPort = freePort();
    const workerEnv = {
      KAFKA_BROKERS: stack.brokers,
      SCANS_TOPIC: topic,
      CONSUMER_GROUP: `${topic}-sink`,
      DEAD_LETTER_GROUP: `${topic}-dlq`,
      DATABASE_URL: db.url,
      METRICS_HOST: "127.0.0.1",
      METRICS_PORT: String(workerPort),
      SUPERVISOR_METRICS_PORT: String(freePort()),
    };
    const workerLog = join(logDir, "worker.log");
    const worker = await stage("run: worker image (its CMD)", async () => {
      const proc = runIn(workerCtr, workerCtr.image.Cmd, workerEnv, workerLog);
      await waitReady("the worker image", proc, `http://127.0.0.1:${workerPort}/ready`, workerLog);
      return proc;
    });

    const key = newSecret();
    const keyHash = new Bun.CryptoHasher("sha256").update(key).digest("hex");
    const serverPort = freePort();
    const serverEnv = {
      HOST: "127.0.0.1",
      PORT: String(serverPort),
      METRICS_HOST: "127.0.0.1",
      METRICS_PORT: String(freePort()),
      KAFKA_BROKERS: stack.brokers,
      SCANS_TOPIC: topic,
      DATABASE_URL: db.url,
      API_KEY_SHA256: keyHash,
    };
    const serverLog = join(logDir, "server.log");
    const server = await stage("run: server image (its CMD)", async () => {
      const proc = runIn(serverCtr, serverCtr.image.Cmd, serverEnv, serverLog);
      await waitReady("the server image", proc, `http://127.0.0.1:${serverPort}/ready`, serverLog);
      return proc;
    });

    await stage("a scan through the server image, stored by the worker image", async () => {
      const eventId = crypto.randomUUID();
      const res = await fetch(`http://127.0.0.1:${serverPort}/v1/scans`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": key },
        body: JSON.stringify({
          event_id: eventId,
          qr_id: "images-smoke:ticket-1",
          scanned_at: new Date().toISOString(),
        }),
        signal: AbortSignal.timeout(15_000),
      });
      const body = await res.text();
      if (res.status !== 202)
        throw new ImageCheckError(`POST /v1/scans answered ${res.status}: ${body}\n${tail(serverLog)}`);
      console.log(`   POST /v1/scans: ${res.status} ${body}`);
      const sql = postgres(db.directUrl, { max: 1, onnotice: () => {} });
      try {
        const rows = await waitFor(
          `the worker image to store event ${eventId}`,
          () => sql<{ qr_id: string }[]>`select qr_id from scan_events where event_id = ${eventId}`,
          (r) => r.length === 1,
          60_000,
          250,
        ).catch((error) => {
          throw new ImageCheckError(`${(error as Error).message}\n--- ${workerLog}:\n${tail(workerLog)}`);
        });
        console.log(`   stored: event ${eventId}, qr_id ${rows[0]?.qr_id}`);
      } finally {
        await sql.end();
      }
    });

    await stage("HEALTHCHECK commands inside the running containers", async () => {
      for (const [c, env] of [
        [serverCtr, serverEnv],
        [workerCtr, workerEnv],
      ] as const) {
        const test = c.image.Healthcheck?.Test.slice(1) ?? [];
        const log = join(logDir, `${c.name}-healthcheck.log`);
        const code = await runToEnd(c, test, env, log, 30_000);
        if (code !== 0)
          throw new ImageCheckError(`${c.name}: HEALTHCHECK ${test.join(" ")} exited with ${code}: ${tail(log)}`);
        console.log(`   ${c.name}: ${test.join(" ")} → exit 0`);
      }
    });

    await stage("SIGTERM: both drain and exit 0", async () => {
      for (const [what, proc, log, said] of [
        ["server", server, serverLog, '"msg":"stopped"'],
        ["worker", worker, workerLog, '"msg":"stopped"'],
      ] as const) {
        // As a container engine does: SIGTERM to the image's process itself (the pid spawned:
        // every step before it exec'd it).
        const comm = readFileSync(`/proc/${proc.pid}/comm`, "utf8").trim();
        if (comm !== "bun") throw new ImageCheckError(`pid ${proc.pid} is ${comm}, not the image's bun`);
        process.kill(proc.pid, "SIGTERM");
        const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
        const code = await proc.exited;
        clearTimeout(timer);
        const text = readFileSync(log, "utf8");
        if (code !== 0 || !text.includes(said))
          throw new ImageCheckError(
            `the ${what} image exited with ${code} after SIGTERM (log: ${said} ${text.includes(said) ? "seen" : "not seen"}):\n${tail(log)}`,
          );
        console.log(`   ${what}: exit 0, drained`);
      }
    });

    // The operator jobs (jobs/) ship in the worker image: each runs from it, as its USER on the
    // read-only root, and does real work against this stack's throwaway database and topic.
    const jobsCtr = createContainer("worker", "jobs");
    await stage("run: the five jobs (worker image)", async () => {
      const jobsEnv = {
        ...workerEnv,
        DATABASE_URL: db.url,
        DATABASE_DIRECT_URL: db.directUrl,
        ARCHIVE_DIR: "/tmp/archive",
      };
      const job = async (name: string, args: string[], expect: { code: number; output: RegExp }) => {
        const log = join(logDir, `job-${name}-${args[0] ?? "run"}.log`.replaceAll("/", "_"));
        const code = await runToEnd(jobsCtr, ["bun", `jobs/${name}.ts`, ...args], jobsEnv, log, 120_000);
        const output = existsSync(log) ? readFileSync(log, "utf8") : "";
        if (code !== expect.code || !expect.output.test(output))
          throw new ImageCheckError(
            `bun jobs/${name}.ts ${args.join(" ")}: exit ${code} (expected ${expect.code}), output ${expect.output.test(output) ? "as expected" : `not matching ${expect.output}`}:\n${tail(log)}`,
          );
        console.log(`   bun jobs/${name}.ts ${args.join(" ")} → exit ${code}`);
        return output;
      };
      for (const name of ["maintain", "archive-restore", "keys", "dlq", "restore-offsets"])
        await job(name, ["--help"], { code: 0, output: /usage: bun run / });
      const created = await job("keys", ["create", "--name", "images-smoke"], { code: 0, output: /qrs_/ });
      const id = /\b(key_[0-9a-f]{12})\b/.exec(created)?.[1];
      if (!id) throw new ImageCheckError(`keys create printed no key id:\n${created}`);
      await job("keys", ["list"], { code: 0, output: new RegExp(`${id}\timages-smoke\t`) });
      await job("keys", ["frobnicate"], { code: 2, output: /unknown command/ });
      await job("maintain", [], { code: 0, output: /maintain: / });
      await job("dlq", ["list"], { code: 0, output: /0 pending dead letter\(s\)/ });
      await job("restore-offsets", ["--dry-run"], { code: 0, output: /dry run: no offsets changed/ });
      await job("archive-restore", ["2000-01-01"], { code: 1, output: /is not archived/ });
    });

    await stage("read-only root filesystem", async () => {
      for (const c of [serverCtr, workerCtr, migrateCtr, jobsCtr]) {
        const writable = await writablePaths(c, logDir);
        if (writable.length)
          throw new ImageCheckError(`${c.name}: user ${c.image.User} can write ${writable.slice(0, 20).join(", ")}`);
        const changed = changedSince(c, marker);
        if (changed.length)
          throw new ImageCheckError(`${c.name} wrote outside /tmp: ${changed.slice(0, 20).join(", ")}`);
      }
      console.log("   as their USER, nothing is writable but /tmp, and no file outside /tmp changed");
    });
  } finally {
    for (const proc of running) await killProcess(proc);
    for (const c of containers) {
      spawnSync("buildah", [...storageArgs, "rm", c.name], { stdio: "ignore" });
      // An empty folder on the host (the mounts on it lived in the run's own mount namespace).
      if (c.readOnlyRoot) rmdirSync(c.readOnlyRoot);
    }
    await admin
      .deleteTopics([topic])
      .catch((error) => console.error(`images: topic ${topic} not deleted: ${error.message}`));
    admin.close();
    await db.drop();
  }
}

// ---------------------------------------------------------------------------------------------

export const IMAGES_CLI: CliSpec = {
  program: "bun tools/images.ts",
  description:
    "Builds the production images with buildah and smoke-tests them on a read-only root against the local stack.",
  commands: {
    [MAIN]: { args: "", description: "build, inspect and smoke (as .ci/run)", options: {} },
    all: { args: "", description: "the same", options: {} },
    build: { args: "", description: "only the base and the build, with the inspect checks", options: {} },
  },
};

async function main(argv: string[]): Promise<number> {
  const mode = parseCommand(IMAGES_CLI, argv).command || "all";
  const missing = ["buildah", ...(config.IMAGES_BASE ? [] : ["debootstrap"])].filter((c) => !commandExists(c));
  if (missing.length) throw new ImageCheckError(`needs ${missing.join(" and ")}: apt-get install ${missing.join(" ")}`);
  if (!isRoot())
    throw new ImageCheckError("needs root (debootstrap, and buildah's chroot isolation as the images' user)");
  const base = await stage("base image", () => config.IMAGES_BASE || localBase());
  await stage(`build ${IMAGES.server} (target server, from ${base})`, () => build("server", base));
  await stage(`build ${IMAGES.worker} (target worker, from ${base})`, () => build("worker", base));
  // Shares only the base with the others: one apt-get layer, cached across revisions.
  await stage(`build ${IMAGES.backup} (target backup, from ${base})`, () => build("backup", base));
  await stage("build compose's pgbouncer (compose/pgbouncer)", () => buildComposePgbouncer(base));
  await stage("inspect: non-root USER, HEALTHCHECK, STOPSIGNAL, labels", () => {
    checkImage("server");
    checkImage("worker");
    checkBackupImage();
  });
  await stage("the runbooks' programs in the images (command -v as USER)", () => checkRunbookPrograms());
  if (mode === "all") await smoke();
  // Earlier revisions' tags of these images go (their shared layers stay, as the build cache).
  const names = [...Object.values(IMAGES), "qrscan-pgbouncer"].map((n) => `localhost/${n}:`);
  const stale = buildah(["images", "--format", "{{.Name}}:{{.Tag}}"], { quiet: true })
    .split("\n")
    .filter((ref) => names.some((n) => ref.startsWith(n)) && !ref.endsWith(`:${tag}`));
  if (stale.length) buildah(["rmi", ...stale], { quiet: true });
  const sizes = buildah(["images", "--format", "{{.Name}}:{{.Tag}} {{.Size}}"], { quiet: true })
    .split("\n")
    .filter((l) => l.includes(tag) || l.includes("debian-base"));
  console.log(`images:\n  ${sizes.join("\n  ")}`);
  console.log(`stage times: ${times.map(([n, s]) => `${n.split(" (")[0]} ${s.toFixed(1)} s`).join("; ")}`);
  return 0;
}

if (import.meta.main) await runCli(IMAGES_CLI, main);
