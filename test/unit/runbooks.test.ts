// The runbooks' commands name things that exist where they run (docs/runbooks/*.md): every local
// `bun run <job>` has its compose and Kubernetes forms next to it; `bun jobs/<x>.ts` exists and is
// copied into the image of the compose service or Kubernetes object that runs it (the Dockerfile's
// COPY lines per target, a target inheriting its base stage's); its flags appear in the job's
// source; compose services exist in compose.yaml; kubectl objects in the rendered prod overlay
// (`kubectl kustomize`, so objects added to the base are seen); `bun run <script>` in package.json.
// Each form runs where the job's credentials are (JOB_NEEDS): the database role its URL logs in
// as, the Kafka principal (whose grants are KAFKA_ACLS, which compose's kafka-topics applies),
// the archive volume; the Kubernetes toolbox is scaled up around its use.
// The log queries have a LogQL form whose labels promtail sets. test/docs/runbooks.test.ts runs
// the local forms against a live stack; this one needs no services.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { DB_LOGINS, TOPICS } from "../../shared/local-stack.ts";
import { KAFKA_ACLS, KAFKA_GROUPS } from "../../tools/stack/kafka-security.ts";
import { type PodTemplate, podTemplateOf } from "../helpers/k8s-checks.ts";

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
  environment?: Record<string, string>;
  secrets?: string[];
  volumes?: string[];
}
const compose = Bun.YAML.parse(read("compose.yaml")) as {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
};
/** The Dockerfile target a compose service's image comes from. */
const composeTarget = (service: string) => {
  const s = compose.services[service];
  return s?.build?.target ?? /^qrscan-(\w+):/.exec(s?.image ?? "")?.[1];
};

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec?: { template?: { spec?: { containers?: { image: string }[] } }; jobTemplate?: unknown };
  data?: Record<string, string>;
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
  // Scaling the toolbox up or down around a job: every object it names must be a rendered Deployment.
  if (/^kubectl -n \S+ (?:scale|rollout status) /.test(line)) {
    for (const m of line.matchAll(/\b(?:scale|rollout status) (deploy\/[\w-]+)/g)) {
      const name = (m[1] as string).slice("deploy/".length);
      if (!objects.some((o) => o.kind === "Deployment" && o.metadata.name === name))
        problems.push(`the prod overlay renders no deploy/${name}`);
    }
    return problems;
  }
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

type Role = "owner" | keyof typeof DB_LOGINS;
interface KafkaNeed {
  operation: "Read" | "Write";
  topics: string[];
  groups: string[];
}
interface JobNeeds {
  /** The variable the job reads its database URL from, and the roles whose rights suffice. */
  db: { variable: "DATABASE_URL" | "DATABASE_DIRECT_URL"; roles: Role[] };
  /** What the job asks of Kafka (Read and Write imply Describe, as Kafka's ACLs do). */
  kafka?: KafkaNeed;
  /** Writes or reads ARCHIVE_DIR: it must be persistent storage, not the container's /tmp. */
  archive?: boolean;
  /** Must not run inside a workload the runbook has the operator stop first. */
  notIn?: string;
  why: string;
}
/**
 * Per job, what it needs where it runs (read from jobs/*.ts and docs/security.md's table of roles).
 * Not derived from the forms: the forms are checked against it.
 */
const JOB_NEEDS: Record<string, JobNeeds> = {
  "jobs/dlq.ts": {
    db: { variable: "DATABASE_URL", roles: ["owner"] },
    kafka: { operation: "Write", topics: [TOPICS.scans.name], groups: [] },
    why: "reads dead letters' payloads and sets replayed_at (qrscan_worker may only insert them); replay produces to scans",
  },
  "jobs/keys.ts": {
    db: { variable: "DATABASE_URL", roles: ["owner"] },
    why: "writes api_keys (qrscan_edge may only set last_used_at, qrscan_worker nothing)",
  },
  "jobs/maintain.ts": {
    db: { variable: "DATABASE_DIRECT_URL", roles: ["owner"] },
    archive: true,
    why: "creates and drops partitions, rolls counts up, prunes dead letters (DDL: the owner only); writes the archives",
  },
  "jobs/archive-restore.ts": {
    db: { variable: "DATABASE_DIRECT_URL", roles: ["owner"] },
    archive: true,
    why: "re-creates a day's partition and deletes from archived_days; reads the archives",
  },
  "jobs/restore-offsets.ts": {
    // Its query reads scan_events and dead_letters' three source columns, which the worker's
    // role may too; its Kafka needs are the worker's reads as well.
    db: { variable: "DATABASE_URL", roles: ["owner", "worker"] },
    kafka: {
      operation: "Read",
      topics: [TOPICS.scans.name, TOPICS.deadLetters.name],
      groups: [KAFKA_GROUPS.sink, KAFKA_GROUPS.deadLetters],
    },
    notIn: "Deployment/qrscan-worker",
    why: "commits both groups' offsets, which Kafka refuses while a worker is a member: the workers are stopped first",
  },
};

/** Whether `principal` may do what `need` asks, by KAFKA_ACLS (the grants compose and the stack apply). */
const kafkaAllows = (principal: string | undefined, need: KafkaNeed) =>
  need.topics.every((t) =>
    KAFKA_ACLS.some((a) => a.principal === principal && a.operation === need.operation && a.topics.includes(t)),
  ) && need.groups.every((g) => KAFKA_ACLS.some((a) => a.principal === principal && a.groups.includes(g)));

/** Where one job form runs: its environment, Kafka principal, database roles and archive storage. */
interface RunsAs {
  where: string;
  env: Record<string, string>;
  /** The principal both the username and the password file are of (undefined if they disagree). */
  principal?: string;
  /** The database role a URL variable logs in as. */
  roleOf: (variable: string) => Role | undefined;
  /** Whether ARCHIVE_DIR is on persistent storage (a named volume or a PersistentVolumeClaim). */
  archivePersistent: boolean;
}

const LOGIN_ROLES: Record<string, Role> = {
  qrscan: "owner",
  ...Object.fromEntries(Object.entries(DB_LOGINS).map(([role, l]) => [l.user, role as Role])),
};
/** `-e K=V` (compose) or `env K=V … bun` (kubectl): what a form sets on top of the container's env. */
const lineEnv = (line: string) =>
  Object.fromEntries(
    [...line.matchAll(/(?:-e |\benv (?:[A-Z_]+=\S+ )*)([A-Z_]+)=(\S+)/g)].map((m) => [m[1] as string, m[2] as string]),
  );

function composeRunsAs(service: string, line: string): RunsAs | undefined {
  const s = compose.services[service];
  if (!s) return undefined;
  const env = { ...(s.environment ?? {}), ...lineEnv(line) };
  const user = env.KAFKA_SASL_USERNAME;
  const secret = /^\/run\/secrets\/(kafka_(\w+)_password)$/.exec(env.KAFKA_SASL_PASSWORD_FILE ?? "");
  const fileOk = secret && secret[2] === user && (s.secrets ?? []).includes(secret[1] as string);
  const archive = env.ARCHIVE_DIR;
  return {
    where: `compose service ${service}`,
    env,
    principal: fileOk ? user : undefined,
    roleOf: (v) => LOGIN_ROLES[/^postgres(?:ql)?:\/\/([^:@/]+)[:@]/.exec(env[v] ?? "")?.[1] ?? ""],
    archivePersistent:
      !!archive &&
      (s.volumes ?? []).some((m) => {
        const [source, target] = m.split(":");
        return target === archive && !!source && source in (compose.volumes ?? {});
      }),
  };
}

function k8sRunsAs(objects: K8sObject[], ref: string, line: string): RunsAs | undefined {
  const [kind, name] = ref.split("/") as [string, string];
  const o = objects.find((x) => x.kind === KIND[kind.toLowerCase()] && x.metadata.name === name);
  const pod = o && (podTemplateOf(o as Parameters<typeof podTemplateOf>[0]) as PodTemplate | undefined);
  const c = pod?.spec.containers[0];
  if (!pod || !c) return undefined;
  const env: Record<string, string> = {};
  for (const src of c.envFrom ?? []) {
    const cm = objects.find((x) => x.kind === "ConfigMap" && x.metadata.name === src.configMapRef?.name);
    Object.assign(env, cm?.data ?? {});
  }
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    env[e.name] = e.value ?? (ref ? `secret:${ref.name}/${ref.key}` : "");
  }
  Object.assign(env, lineEnv(line));
  const volumes = (pod.spec.volumes ?? []) as {
    name: string;
    secret?: { secretName: string };
    persistentVolumeClaim?: { claimName: string };
  }[];
  const volumeAt = (path: string | undefined) => {
    const mount = (c.volumeMounts ?? []).find((m) => path === m.mountPath || path?.startsWith(`${m.mountPath}/`));
    return volumes.find((v) => v.name === mount?.name);
  };
  const user = env.KAFKA_SASL_USERNAME;
  const passwordSecret = volumeAt(env.KAFKA_SASL_PASSWORD_FILE)?.secret?.secretName;
  return {
    where: `${o.kind}/${name}`,
    env,
    principal: passwordSecret === `qrscan-kafka-${user}` ? user : undefined,
    roleOf: (v) => /^secret:qrscan-database-(\w+)\//.exec(env[v] ?? "")?.[1] as Role | undefined,
    archivePersistent: !!volumeAt(env.ARCHIVE_DIR)?.persistentVolumeClaim,
  };
}

/** What a job form lacks where it runs: the database role, Kafka grants and storage the job needs. */
function credentialProblems(line: string, objects: K8sObject[]): string[] {
  const file = /\bbun (jobs\/[\w/-]+\.ts)/.exec(line)?.[1];
  const needs = file ? JOB_NEEDS[file] : undefined;
  if (!file || !needs) return [`no JOB_NEEDS entry for ${file ?? "a form that runs no job"}`];
  const dc = /docker-compose (?:exec|run)\b(?:\s+(?:--rm|-T|-e \S+))*\s+([\w-]+)/.exec(line);
  const kc = /kubectl\b.*?\bexec\s+((?:deploy|deployment)\/[\w-]+)/.exec(line);
  const at = dc ? composeRunsAs(dc[1] as string, line) : kc ? k8sRunsAs(objects, kc[1] as string, line) : undefined;
  if (!at) return ["runs in nothing that exists"];
  const problems: string[] = [];
  const role = at.roleOf(needs.db.variable);
  if (!role || !needs.db.roles.includes(role))
    problems.push(
      `${file} needs ${needs.db.variable} as ${needs.db.roles.join(" or ")}; ${at.where} has ${role ?? "none"} (${needs.why})`,
    );
  if (needs.kafka && !kafkaAllows(at.principal, needs.kafka))
    problems.push(
      `${file} needs Kafka ${needs.kafka.operation} on ${[...needs.kafka.topics, ...needs.kafka.groups].join(", ")}; ${at.where}'s principal ${at.principal ?? "(none, or its password file is another's)"} may not`,
    );
  if (needs.archive && !at.archivePersistent)
    problems.push(`${file} needs ARCHIVE_DIR on a volume or claim; ${at.where} has ${at.env.ARCHIVE_DIR ?? "none"}`);
  if (needs.notIn && at.where === needs.notIn) problems.push(`${file} cannot run in ${at.where} (${needs.why})`);
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
    expect(formProblems("kubectl -n qrscan-prod scale deploy/qrscan-opz --replicas=1", objects)).toEqual([
      "the prod overlay renders no deploy/qrscan-opz",
    ]);
  });
});

describe("runbooks: each job form runs with the job's credentials", () => {
  const fences = runbookFences();
  const objects = renderedProd();
  const jobLines = () =>
    fences
      .filter((x) => x.lang === "shell")
      .flatMap((f) =>
        f.code
          .split("\n")
          .filter((l) => !l.startsWith("#") && /\bbun jobs\//.test(l))
          .map((line) => ({ at: `${f.file}:${f.line}`, line })),
      );

  test("every job has its needs stated", () => {
    expect(Object.keys(JOB_NEEDS).sort()).toEqual([...new Set(jobScripts.values())].sort());
  });

  test("every compose and kubectl form runs where its job's database role, Kafka grants and archive storage are", () => {
    const lines = jobLines();
    expect(lines.length).toBeGreaterThan(20);
    const problems = lines.flatMap(({ at, line }) =>
      credentialProblems(line, objects).map((p) => `${at}: ${p}: ${line}`),
    );
    expect(problems).toEqual([]);
  });

  test("a kubectl form scales the toolbox up before its exec and back to 0 after", () => {
    const problems: string[] = [];
    for (const f of fences.filter((x) => x.lang === "shell" && /exec deploy\/qrscan-ops/.test(x.code))) {
      const lines = f.code.split("\n").filter((l) => !l.startsWith("#"));
      const ns = (l: string) => /kubectl -n (\S+)/.exec(l)?.[1];
      const execs = lines.flatMap((l, i) => (/exec deploy\/qrscan-ops/.test(l) ? [i] : []));
      const up = lines.findIndex((l) =>
        /scale deploy\/qrscan-ops --replicas=1\b.*rollout status deploy\/qrscan-ops/.test(l),
      );
      const down = lines.findLastIndex((l) => /scale deploy\/qrscan-ops --replicas=0\b/.test(l));
      const first = execs[0] as number;
      const last = execs.at(-1) as number;
      if (up < 0 || up > first)
        problems.push(`${f.file}:${f.line}: no scale to 1 (and rollout status) before the exec`);
      if (down < last) problems.push(`${f.file}:${f.line}: no scale to 0 after the last exec`);
      const namespaces = new Set([up, down, ...execs].filter((i) => i >= 0).map((i) => ns(lines[i] as string)));
      if (namespaces.size !== 1) problems.push(`${f.file}:${f.line}: namespaces differ: ${[...namespaces]}`);
    }
    expect(problems).toEqual([]);
  });

  test("the checks fail on a job run as the worker: its principal, role, archive or stopped pods", () => {
    const owner = "-e DATABASE_URL=postgres://qrscan:x@pgbouncer:16432/qrscan";
    expect(credentialProblems("docker-compose run --rm -T worker bun jobs/dlq.ts replay --all", objects)).toEqual([
      expect.stringContaining("jobs/dlq.ts needs DATABASE_URL as owner; compose service worker has worker"),
      expect.stringContaining(
        "jobs/dlq.ts needs Kafka Write on scans; compose service worker's principal worker may not",
      ),
    ]);
    // The owner's URL passed in fixes the database side, not Kafka's.
    expect(credentialProblems(`docker-compose run --rm -T ${owner} worker bun jobs/dlq.ts list`, objects)).toEqual([
      expect.stringContaining("principal worker may not"),
    ]);
    expect(credentialProblems(`docker-compose run --rm -T ${owner} worker bun jobs/keys.ts list`, objects)).toEqual([]);
    expect(credentialProblems("docker-compose run --rm -T worker bun jobs/maintain.ts", objects)).toEqual([
      expect.stringContaining("needs DATABASE_DIRECT_URL as owner; compose service worker has none"),
      expect.stringContaining("needs ARCHIVE_DIR on a volume or claim; compose service worker has none"),
    ]);
    expect(
      credentialProblems("kubectl -n qrscan-prod exec deploy/qrscan-worker -- bun jobs/dlq.ts replay 42", objects),
    ).toEqual([
      expect.stringContaining("Deployment/qrscan-worker has worker"),
      expect.stringContaining("Deployment/qrscan-worker's principal worker may not"),
    ]);
    expect(
      credentialProblems("kubectl -n qrscan-prod exec deploy/qrscan-worker -- bun jobs/restore-offsets.ts", objects),
    ).toEqual([expect.stringContaining("cannot run in Deployment/qrscan-worker")]);
    expect(
      credentialProblems("kubectl -n qrscan-prod exec deploy/qrscan-server -- bun jobs/keys.ts list", objects),
    ).toEqual([expect.stringContaining("Deployment/qrscan-server has edge")]);
    // The toolbox and the ops service carry all of it.
    for (const job of Object.keys(JOB_NEEDS)) {
      expect(credentialProblems(`docker-compose run --rm -T ops bun ${job}`, objects)).toEqual([]);
      expect(credentialProblems(`kubectl -n qrscan-prod exec deploy/qrscan-ops -- bun ${job}`, objects)).toEqual([]);
    }
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
