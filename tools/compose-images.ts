// Every image compose runs, built on this machine and handed to the project's engine
// (tools/engine.ts), for compose.yaml + compose.local-images.yaml where no registry is reachable:
//  1. the engine, started if it is not running;
//  2. the base: tools/images.ts's debootstrapped Debian (bootstrapped if missing), imported as
//     debian-base:bookworm;
//  3. the product's server and worker images: the ones tools/images.ts built with buildah for this
//     revision, loaded as qrscan-server:local and qrscan-worker:local (built by compose otherwise);
//  4. the Kafka stand-in's build context: the local stack's Kafka jars and JMX javaagent (the same
//     POMs), copied into compose/local-images/kafka/{libs,jmx} (not committed);
//  5. `docker-compose build` of the rest (Postgres, pgbouncer, the exporters, Kafka, Prometheus,
//     Alertmanager);
//  6. compose.ha.yaml's images (Patroni with etcd, HAProxy), on the same base, then the images' sizes.
//   bun tools/compose-images.ts
// Then: export DOCKER_HOST=<printed> COMPOSE_FILE=compose.yaml:compose.local-images.yaml, and the
// README's "Run it with compose" commands (with :compose.ha.yaml, docs/deployment.md's HA section).
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type CliSpec, MAIN, parseCommand, runCli } from "../shared/cli.ts";
import { loadConfig } from "../shared/config.ts";
import { localStack } from "../shared/local-stack.ts";
import { engineUp } from "./engine.ts";
import { ROOT } from "./harness.ts";
import { ImagesConfigSchema, buildahStorageArgs } from "./images/config.ts";
import { ensureKafkaJars, kafkaPaths } from "./stack/kafka.ts";
import { ensureJmxExporterJar } from "./stack/monitoring.ts";

/** compose.yaml's files for a machine without a registry (COMPOSE_FILE's form). */
export const LOCAL_COMPOSE_FILE = "compose.yaml:compose.local-images.yaml";
/** The same with Postgres highly available (compose.ha.yaml, docs/deployment.md). */
export const LOCAL_HA_COMPOSE_FILE = `${LOCAL_COMPOSE_FILE}:compose.ha.yaml`;
export const LOCAL_BASE_IN_ENGINE = "debian-base:bookworm";
/** The services compose builds here (kafka-1 builds the image kafka-2, -3 and kafka-topics share). */
const BUILT_BY_COMPOSE = [
  "postgres",
  "pgbouncer",
  "pgbouncer-exporter",
  "postgres-exporter",
  "kafka-1",
  "prometheus",
  "alertmanager",
];
/**
 * compose.ha.yaml's services that build (pg-1 builds the image pg-2 and etcd-1..3 share; `postgres`
 * is HAProxy there). compose.local-images.yaml knows no pg-1, so compose would build it on the
 * public base: the HA file's own build settings are used here with the local base instead.
 */
export const BUILT_FOR_HA = ["pg-1", "postgres"];

class ComposeImagesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ComposeImagesError";
  }
}

function sh(cmd: string[], env: Record<string, string>, what: string): string {
  const r = spawnSync(cmd[0] as string, cmd.slice(1), {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    stdio: ["ignore", "pipe", "inherit"],
  });
  if (r.status !== 0)
    throw new ComposeImagesError(
      `${what}: \`${cmd.join(" ")}\` exited with ${r.status ?? r.signal} (its stderr is above)`,
    );
  return r.stdout;
}

const present = (env: Record<string, string>, ref: string) =>
  spawnSync("docker", ["image", "inspect", ref], { env: { ...process.env, ...env }, stdio: "ignore" }).status === 0;

function timed<T>(name: string, body: () => T): T {
  const started = performance.now();
  console.log(`== compose images: ${name}`);
  try {
    return body();
  } finally {
    console.log(`   (${name}: ${((performance.now() - started) / 1000).toFixed(1)} s)`);
  }
}

export const COMPOSE_IMAGES_CLI: CliSpec = {
  program: "bun tools/compose-images.ts",
  description: "Builds every image compose runs, here, into the project's engine (tools/engine.ts).",
  commands: { [MAIN]: { args: "", description: "build them all; prints DOCKER_HOST and COMPOSE_FILE", options: {} } },
};

async function main(argv: string[]): Promise<number> {
  parseCommand(COMPOSE_IMAGES_CLI, argv);
  const stack = localStack();
  const e = await engineUp();
  const env = { DOCKER_HOST: e.host, COMPOSE_FILE: LOCAL_COMPOSE_FILE };
  // compose refuses to read its file without POSTGRES_PASSWORD; no build uses it.
  const buildEnv = { ...env, POSTGRES_PASSWORD: "unused-by-a-build" };
  const images = loadConfig(ImagesConfigSchema);
  const storage = buildahStorageArgs(images.IMAGES_STORAGE);
  const revision = sh(["git", "rev-parse", "HEAD"], {}, "the revision").trim();
  const tag = images.IMAGES_TAG || revision.slice(0, 12);
  const inBuildah = (ref: string) =>
    spawnSync("buildah", [...storage, "inspect", "--type", "image", ref], { stdio: "ignore" }).status === 0;

  timed(`base (${LOCAL_BASE_IN_ENGINE})`, () => {
    if (present(env, LOCAL_BASE_IN_ENGINE)) return;
    const rootfs = join(stack.dir, "images", "rootfs");
    if (!existsSync(join(rootfs, ".bootstrapped")))
      sh(["bun", "tools/images.ts", "build"], {}, "the debootstrapped base");
    sh(
      [
        "sh",
        "-c",
        `tar -C '${rootfs}' --exclude=./.bootstrapped -c . | docker import --change 'CMD ["/bin/bash"]' - ${LOCAL_BASE_IN_ENGINE}`,
      ],
      env,
      "importing the base",
    );
  });

  timed("the product's images (tools/images.ts's, this revision)", () => {
    for (const name of ["qrscan-server", "qrscan-worker"]) {
      const built = `localhost/${name}:${tag}`;
      if (!inBuildah(built)) {
        console.log(`   ${built} is not built: compose builds ${name}:local from the Dockerfile`);
        sh(["docker-compose", "build", name === "qrscan-server" ? "server" : "worker"], buildEnv, `building ${name}`);
        continue;
      }
      sh(
        [
          "sh",
          "-c",
          `buildah ${storage.join(" ")} push -q ${built} docker-archive:/dev/stdout:${name}:local | docker load -q`,
        ],
        env,
        `loading ${built}`,
      );
    }
  });

  timed("the Kafka stand-in's jars (the local stack's)", () => {
    ensureKafkaJars(stack);
    const context = join(ROOT, "compose/local-images/kafka");
    const libs = join(context, "libs");
    rmSync(libs, { recursive: true, force: true });
    mkdirSync(libs, { recursive: true });
    for (const jar of readdirSync(kafkaPaths(stack).libs))
      copyFileSync(join(kafkaPaths(stack).libs, jar), join(libs, jar));
    mkdirSync(join(context, "jmx"), { recursive: true });
    copyFileSync(ensureJmxExporterJar(stack), join(context, "jmx", "jmx_prometheus_javaagent.jar"));
  });

  timed(`docker-compose build ${BUILT_BY_COMPOSE.join(" ")}`, () =>
    sh(["docker-compose", "build", "-q", ...BUILT_BY_COMPOSE], buildEnv, "the build"),
  );

  timed(`compose.ha.yaml's images (${BUILT_FOR_HA.join(" ")})`, () => {
    const haEnv = { ...buildEnv, COMPOSE_FILE: LOCAL_HA_COMPOSE_FILE };
    const resolved = Bun.YAML.parse(sh(["docker-compose", "config"], haEnv, "compose.ha.yaml's configuration")) as {
      services: Record<string, { image: string; build: { context: string; dockerfile?: string } }>;
    };
    for (const name of BUILT_FOR_HA) {
      const s = resolved.services[name];
      if (!s?.build) throw new ComposeImagesError(`compose.ha.yaml's ${name} has no build section`);
      sh(
        [
          "docker",
          "build",
          "-q",
          "--network",
          "host",
          "--build-arg",
          `BASE_IMAGE=${LOCAL_BASE_IN_ENGINE}`,
          "-t",
          s.image,
          "-f",
          join(s.build.context, s.build.dockerfile ?? "Dockerfile"),
          s.build.context,
        ],
        env,
        `building ${s.image}`,
      );
    }
  });

  const sizes = sh(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}\t{{.Size}}"], env, "listing the images");
  console.log(`images in the engine:\n  ${sizes.trim().split("\n").sort().join("\n  ")}`);
  console.log(`export DOCKER_HOST=${e.host} COMPOSE_FILE=${LOCAL_COMPOSE_FILE}`);
  return 0;
}

if (import.meta.main) await runCli(COMPOSE_IMAGES_CLI, main);
