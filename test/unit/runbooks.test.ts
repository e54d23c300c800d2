// The runbooks' commands name things that exist where they run (docs/runbooks/*.md): every local
// `bun run <job>` has its compose and Kubernetes forms next to it; `bun jobs/<x>.ts` exists and is
// copied into the image of the compose service or Kubernetes object that runs it (the Dockerfile's
// COPY lines per target, a target inheriting its base stage's); its flags appear in the job's
// source; compose services exist in compose.yaml; kubectl objects in the rendered prod overlay
// (`kubectl kustomize`, so objects added to the base are seen); `bun run <script>` in package.json.
// The log queries have a LogQL form whose labels promtail sets. test/docs/runbooks.test.ts runs
// the local forms against a live stack; this one needs no services.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const ROOT = new URL("../..", import.meta.url).pathname;
const DIR = "docs/runbooks";
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");

interface Fence {
  file: string;
  line: number;
  lang: string;
  code: string;
}

/** The fenced blocks of a markdown text, in order. */
function fencesOf(markdown: string, file: string): Fence[] {
  const out: Fence[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^\s*```(\w*)\s*$/.exec(lines[i] as string);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i] as string); i++) body.push(lines[i] as string);
    out.push({ file, line: start + 1, lang: (open[1] as string).toLowerCase(), code: body.join("\n") });
  }
  return out;
}

const runbookFences = () =>
  readdirSync(join(ROOT, DIR))
    .filter((f) => f.endsWith(".md"))
    .sort()
    .flatMap((f) => fencesOf(read(`${DIR}/${f}`), `${DIR}/${f}`));

const packageScripts = (JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts;
/** `bun run <script>` scripts that run an operator job: the ones a compose or kubectl form must exist for. */
const jobScripts = new Map(
  Object.entries(packageScripts).flatMap(([name, cmd]) => {
    const m = /^bun (jobs\/[\w-]+\.ts)$/.exec(cmd);
    return m ? [[name, m[1] as string] as const] : [];
  }),
);

/** Per Dockerfile target, the paths its COPY lines bring from the build context (its base stage's too). */
function dockerfileCopies(dockerfile: string): Map<string, string[]> {
  const stages = new Map<string, { base: string; copies: string[] }>();
  let current: { base: string; copies: string[] } | undefined;
  for (const raw of dockerfile.split("\n")) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(raw);
    if (from) {
      current = { base: from[1] as string, copies: [] };
      if (from[2]) stages.set(from[2], current);
      continue;
    }
    const copy = /^COPY\s+(?!--from)(.+)$/i.exec(raw);
    if (copy && current) {
      const parts = (copy[1] as string).trim().split(/\s+/);
      current.copies.push(...parts.slice(0, -1).map((p) => p.replace(/\/$/, "")));
    }
  }
  const resolve = (name: string, seen = new Set<string>()): string[] => {
    const s = stages.get(name);
    if (!s || seen.has(name)) return [];
    seen.add(name);
    return [...s.copies, ...resolve(s.base, seen)];
  };
  return new Map([...stages.keys()].map((name) => [name, resolve(name)]));
}

const copies = dockerfileCopies(read("Dockerfile"));
const inImage = (target: string, file: string) =>
  (copies.get(target) ?? []).some((c) => file === c || file.startsWith(`${c}/`));

interface ComposeService {
  image?: string;
  build?: { target?: string };
}
const compose = Bun.YAML.parse(read("compose.yaml")) as { services: Record<string, ComposeService> };
/** The Dockerfile target a compose service's image comes from. */
const composeTarget = (service: string) => {
  const s = compose.services[service];
  return s?.build?.target ?? /^qrscan-(\w+):/.exec(s?.image ?? "")?.[1];
};

interface K8sObject {
  kind: string;
  metadata: { name: string };
  spec?: { template?: { spec?: { containers?: { image: string }[] } }; jobTemplate?: unknown };
}
/** The rendered prod overlay: the objects an operator's kubectl names. */
function renderedProd(): K8sObject[] {
  const out = Bun.spawnSync(["kubectl", "kustomize", join(ROOT, "deploy/k8s/overlays/prod")]);
  if (out.exitCode !== 0) throw new Error(`kubectl kustomize failed: ${out.stderr.toString()}`);
  return out.stdout
    .toString()
    .split(/^---$/m)
    .map((doc) => Bun.YAML.parse(doc) as K8sObject)
    .filter(Boolean);
}
const KIND: Record<string, string> = { deploy: "Deployment", deployment: "Deployment", cronjob: "CronJob", job: "Job" };
/** The Dockerfile target of a Kubernetes workload's first container (images are named qrscan-<target>). */
function k8sTarget(objects: K8sObject[], ref: string): string | undefined {
  const [kind, name] = ref.split("/") as [string, string];
  const o = objects.find((x) => x.kind === KIND[kind.toLowerCase()] && x.metadata.name === name);
  const spec = o?.spec as
    | {
        template?: { spec?: { containers?: { image: string }[] } };
        jobTemplate?: { spec: { template: { spec: { containers: { image: string }[] } } } };
      }
    | undefined;
  const image =
    spec?.template?.spec?.containers?.[0]?.image ?? spec?.jobTemplate?.spec.template.spec.containers[0]?.image;
  return image ? /^qrscan-(\w+)[:@]/.exec(image)?.[1] : undefined;
}

/** The problems of one command of a compose/kubectl form: what it names that does not exist there. */
function formProblems(line: string, objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const job = /\bbun (jobs\/[\w/-]+\.ts)((?:\s+[^|)#]*)?)/.exec(line);
  let target: string | undefined;
  const dc = /docker-compose (?:exec|run)\b(?:\s+(?:--rm|-T|-e \S+))*\s+([\w-]+)/.exec(line);
  const kc = /kubectl\b.*?\b(?:exec|create job [\w-]+ --from=)\s*((?:deploy|deployment|cronjob|job)\/[\w-]+)/.exec(
    line,
  );
  if (dc) {
    const service = dc[1] as string;
    if (!compose.services[service]) problems.push(`compose has no service "${service}"`);
    target = composeTarget(service);
  } else if (kc) {
    const ref = kc[1] as string;
    target = k8sTarget(objects, ref);
    if (!target) problems.push(`the prod overlay renders no ${ref} with a qrscan image`);
  } else problems.push("neither a docker-compose nor a kubectl command");
  if (!job) return [...problems, "runs no bun jobs/<job>.ts"];
  const file = job[1] as string;
  if (!existsSync(join(ROOT, file))) problems.push(`${file} does not exist`);
  else {
    if (target && !inImage(target, file)) problems.push(`the ${target} image does not contain ${file}`);
    const source = read(file);
    for (const flag of (job[2] ?? "").match(/--[\w-]+/g) ?? []) {
      if (!source.includes(flag)) problems.push(`${file} knows no ${flag}`);
    }
  }
  return problems;
}

/** The label names promtail gives log streams (relabelled targets, pipeline labels, static labels). */
function promtailLabels(): Set<string> {
  const text = read("monitoring/promtail/config.yaml");
  const labels = new Set<string>();
  for (const m of text.matchAll(/target_label:\s*(\w+)/g)) labels.add(m[1] as string);
  for (const m of text.matchAll(/- labels:\n((?:\s+\w+:.*\n)+)/g)) {
    for (const l of (m[1] as string).matchAll(/^\s+(\w+):/gm)) labels.add(l[1] as string);
  }
  for (const m of text.matchAll(/^\s+labels:\n((?:\s+\w+:.*\n)+)/gm)) {
    for (const l of (m[1] as string).matchAll(/^\s+(\w+):/gm)) if (!l[1]?.startsWith("__")) labels.add(l[1] as string);
  }
  return labels;
}

describe("runbooks: compose and Kubernetes forms", () => {
  const fences = runbookFences();
  const objects = renderedProd();

  test("the Dockerfile parse sees what the worker and server targets copy", () => {
    expect(inImage("worker", "jobs/dlq.ts")).toBe(true);
    expect(inImage("worker", "worker/main.ts")).toBe(true);
    expect(inImage("server", "server/main.ts")).toBe(true);
    expect(inImage("server", "jobs/dlq.ts")).toBe(false);
    expect(inImage("server", "shared/config.ts")).toBe(true);
  });

  test("every local `bun run <job>` is followed by a compose and a kubectl form of the same job", () => {
    const missing: string[] = [];
    let checked = 0;
    fences.forEach((f, i) => {
      if (f.lang !== "sh" && f.lang !== "bash") return;
      const jobs = [...f.code.matchAll(/\bbun run (?:--silent )?([\w-]+)/g)]
        .map((m) => m[1] as string)
        .filter((s) => jobScripts.has(s));
      if (jobs.length === 0) return;
      checked++;
      // The form follows the command, after its output block if it shows one.
      const next = fences.slice(i + 1, i + 3).find((n) => n.lang === "shell");
      const at = `${f.file}:${f.line}`;
      if (!next) return missing.push(`${at}: no shell block with the compose and kubectl forms`);
      const composePart = next.code.split(/^# kubernetes/m)[0] ?? "";
      const k8sPart = next.code.split(/^# kubernetes/m)[1] ?? "";
      for (const job of jobs) {
        const file = jobScripts.get(job) as string;
        if (!composePart.includes(`bun ${file}`) || !/docker-compose (exec|run)/.test(composePart))
          missing.push(`${at}: no compose form of ${job}`);
        if (!k8sPart.includes(`bun ${file}`) || !/kubectl -n \S+ (exec|create job)/.test(k8sPart))
          missing.push(`${at}: no kubectl form of ${job}`);
      }
    });
    expect(checked).toBeGreaterThan(5);
    expect(missing).toEqual([]);
  });

  test("every compose and kubectl command names a service, object, image file and flags that exist", () => {
    const problems: string[] = [];
    let commands = 0;
    for (const f of fences.filter((x) => x.lang === "shell")) {
      for (const line of f.code.split("\n")) {
        if (!/docker-compose|kubectl/.test(line) || line.startsWith("#")) continue;
        commands++;
        for (const p of formProblems(line, objects)) problems.push(`${f.file}:${f.line}: ${p}: ${line}`);
      }
    }
    expect(commands).toBeGreaterThan(10);
    expect(problems).toEqual([]);
  });

  test("every `bun run <script>` of the runbooks is a package.json script", () => {
    const unknown = fences
      .filter((f) => f.lang === "sh" || f.lang === "bash")
      .flatMap((f) =>
        // Commands, not the comments that mention one in passing.
        [...f.code.replace(/(^|\s)#.*$/gm, "").matchAll(/\bbun run (?:--silent )?([\w:-]+)/g)]
          .map((m) => m[1] as string)
          .filter((s) => !(s in packageScripts))
          .map((s) => `${f.file}:${f.line}: ${s}`),
      );
    expect(unknown).toEqual([]);
  });

  test("the checks fail on a renamed job, an unknown flag, service or object", () => {
    expect(formProblems("docker-compose run --rm -T worker bun jobs/dlqq.ts list", objects)).toEqual([
      "jobs/dlqq.ts does not exist",
    ]);
    expect(
      formProblems("kubectl -n qrscan-prod exec deploy/qrscan-worker -- bun jobs/dlq.ts list --limitt 3", objects),
    ).toEqual(["jobs/dlq.ts knows no --limitt"]);
    expect(formProblems("docker-compose run --rm -T workers bun jobs/dlq.ts list", objects)).toContain(
      'compose has no service "workers"',
    );
    expect(formProblems("kubectl -n qrscan-prod exec deploy/qrscan-server -- bun jobs/dlq.ts list", objects)).toEqual([
      "the server image does not contain jobs/dlq.ts",
    ]);
    expect(formProblems("kubectl -n qrscan-prod exec deploy/nope -- bun jobs/dlq.ts list", objects)).toEqual([
      "the prod overlay renders no deploy/nope with a qrscan image",
    ]);
  });
});

describe("runbooks: log queries in LogQL", () => {
  const fences = runbookFences();

  test("every jq/awk over the local log files is followed by a LogQL query on labels promtail sets", () => {
    const labels = promtailLabels();
    expect([...labels]).toEqual(expect.arrayContaining(["app", "level", "service"]));
    const problems: string[] = [];
    let logQueries = 0;
    fences.forEach((f, i) => {
      if ((f.lang !== "sh" && f.lang !== "bash") || !/"\$LOG_DIR["/]/.test(f.code)) return;
      logQueries++;
      const next = fences.slice(i + 1, i + 4).find((n) => n.lang === "logql");
      if (!next) return problems.push(`${f.file}:${f.line}: no logql block after the log query`);
      for (const q of next.code.split("\n").filter((l) => l.trim() && !l.startsWith("#"))) {
        const selector = /^\{([^}]*)\}/.exec(q);
        if (!selector) problems.push(`${next.file}:${next.line}: no stream selector: ${q}`);
        for (const m of (selector?.[1] ?? "").matchAll(/(\w+)\s*(?:=~|!=|!~|=)/g)) {
          if (!labels.has(m[1] as string)) problems.push(`${next.file}:${next.line}: promtail sets no label ${m[1]}`);
        }
      }
    });
    expect(logQueries).toBeGreaterThan(5);
    expect(problems).toEqual([]);
  });
});
