// The runbooks' commands name things that exist where they run (docs/runbooks/*.md): every local
// `bun run <job>` has its compose and Kubernetes forms next to it; `bun jobs/<x>.ts` exists and is
// copied into the image of the compose service or Kubernetes object that runs it (the Dockerfile's
// COPY lines per target, a target inheriting its base stage's); its arguments are accepted by the
// job's own parser (the CliSpec it exports); compose services exist in compose.yaml; kubectl objects
// in the rendered prod overlay (`kubectl kustomize`, so objects added to the base are seen);
// `bun run <script>` in package.json. `kubectl rollout` names a Deployment with pods of its own (not
// an Argo Rollout's template), `kubectl argo rollouts` a Rollout. A job that needs the workers
// stopped runs between their stop and start: in Kubernetes a pause of their KEDA ScaledObject (a
// `kubectl scale` of a Deployment KEDA scales is undone).
// Each form runs where the job's credentials are (JOB_NEEDS): the database role its URL logs in
// as, the Kafka principal (whose grants are KAFKA_ACLS, which compose's kafka-topics applies),
// the archive volume; the Kubernetes toolbox is scaled up around its use.
// Every command of every shell block runs a program that exists where it runs
// (tools/images/runbook-programs.ts reads them; test/helpers/debian-packages.ts the packages'
// files): locally a builtin, the runbook's function, bun, or a program of a package .ci/run, the
// stack or Debian's base installs; in an image a file on its PATH (its stage's packages on minbase,
// its COPY lines), never a builtin (exec runs no shell); a public image's files are unknown: fails.
// The log queries have a LogQL form whose labels promtail sets. test/docs/runbooks.test.ts runs
// the local forms against a live stack; this one needs no services.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { type CliSpec, UsageError, parseCommand, wantsHelp } from "../../shared/cli.ts";
import { DB_LOGINS, TOPICS } from "../../shared/local-stack.ts";
import {
  DEFAULT_PATH,
  type ImageSource,
  type Invocation,
  type K8sObject,
  KIND,
  type Stage,
  composeImage,
  dockerfileStages,
  invocations,
  isShell,
  k8sImage,
  k8sTarget,
  renderedProd,
  runbookFences,
  runbookImageNeeds,
  runbookInvocations,
  shellCommands,
} from "../../tools/images/runbook-programs.ts";
import { KAFKA_ACLS, KAFKA_GROUPS } from "../../tools/stack/kafka-security.ts";
import { STACK_PACKAGES } from "../../tools/stack/packages.ts";
import { dependencyClosure, minbase, packageFiles, programsOnPath } from "../helpers/debian-packages.ts";
import { type PodTemplate, podTemplateOf } from "../helpers/k8s-checks.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");

const packageScripts = (JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts;
/** `bun run <script>` scripts that run an operator job: the ones a compose or kubectl form must exist for. */
const jobScripts = new Map(
  Object.entries(packageScripts).flatMap(([name, cmd]) => {
    const m = /^bun (jobs\/[\w-]+\.ts)$/.exec(cmd);
    return m ? [[name, m[1] as string] as const] : [];
  }),
);

const stages = dockerfileStages(read("Dockerfile"));
/** Whether a Dockerfile target copies `file` from the build context (its base stages' COPY lines too). */
const inImage = (target: string, file: string) =>
  (stages.get(target)?.copies ?? []).some((c) => file === c || file.startsWith(`${c}/`));

interface ComposeService {
  image?: string;
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
  const src = composeImage(service);
  return src?.kind === "target" ? src.target : undefined;
};

/**
 * Each job's command-line table: the CliSpec its module exports (shared/cli.ts), which its
 * argument parser reads (the modules run nothing when imported: `import.meta.main`).
 */
const jobSpecs = new Map<string, CliSpec>();
for (const name of readdirSync(join(ROOT, "jobs")).filter((f) => f.endsWith(".ts"))) {
  const exported = Object.values((await import(join(ROOT, "jobs", name))) as Record<string, unknown>);
  const spec = exported.find((x): x is CliSpec => typeof x === "object" && x !== null && "commands" in x);
  if (spec) jobSpecs.set(`jobs/${name}`, spec);
}

/** The arguments a form passes to `bun <file>`, as the shell splits them. */
const jobArgv = (line: string, file: string) =>
  shellCommands(line)
    .commands.flatMap((words) => invocations(words))
    .find((inv) => inv.program === "bun" && inv.args[0] === file)
    ?.args.slice(1) ?? [];

/** What the job's own parser says of the arguments: its command, options, values, positionals. */
function argvProblems(file: string, argv: string[]): string[] {
  const spec = jobSpecs.get(file);
  if (!spec) return [`${file} exports no command-line table (CliSpec)`];
  if (wantsHelp(argv)) return [];
  try {
    parseCommand(spec, argv);
    return [];
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    return [`${file} ${argv.join(" ")}: ${error.message}`];
  }
}

/** The ScaledObjects of the rendered overlay, by the Deployment they scale. */
const scaledObjectsOf = (objects: K8sObject[]) =>
  new Map(
    objects
      .filter((o) => o.kind === "ScaledObject")
      .map((o) => [(o.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name, o.metadata.name] as const),
  );

/**
 * What a `kubectl rollout …` or `kubectl argo rollouts …` command names wrongly: a Deployment not
 * rendered, named by a variable, or one that is an Argo Rollout's pod template (0 replicas: the
 * Rollout's own pods are not its; they are restarted and undone with the plugin), or a Rollout
 * that is not rendered.
 */
function rolloutProblems(line: string, objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const templateOf = new Map(
    objects
      .filter((o) => o.kind === "Rollout")
      .flatMap((o) => {
        const ref = (o.spec as { workloadRef?: { kind: string; name: string } }).workloadRef;
        return ref?.kind === "Deployment" ? [[ref.name, o.metadata.name] as const] : [];
      }),
  );
  for (const words of shellCommands(line).commands) {
    if (words[0] !== "kubectl") continue;
    const operands = words
      .slice(1)
      .filter((w, i, all) => !w.startsWith("-") && !/^-n$|^--namespace$/.test(all[i - 1] ?? ""));
    if (operands[0] === "rollout") {
      const ref = operands[2] ?? "";
      const m = /^(?:deploy|deployment|deployments)\/(.+)$/.exec(ref);
      if (!m) continue;
      const name = m[1] as string;
      if (name.includes("$")) problems.push(`names its Deployment by a variable (${ref}): name the workload`);
      else if (!objects.some((o) => o.kind === "Deployment" && o.metadata.name === name))
        problems.push(`the prod overlay renders no ${ref}`);
      else if (templateOf.has(name))
        problems.push(
          `${ref} is the pod template of the Rollout ${templateOf.get(name)} (0 replicas): kubectl argo rollouts ${operands[1]} ${templateOf.get(name)}`,
        );
    } else if (operands[0] === "argo" && operands[1] === "rollouts") {
      // `get rollout NAME`, or `<command> NAME`.
      const name = operands[2] === "get" ? operands[4] : operands[3];
      if (!name || !objects.some((o) => o.kind === "Rollout" && o.metadata.name === name))
        problems.push(`the prod overlay renders no Rollout ${name ?? "(none named)"}`);
    }
  }
  return problems;
}

/** The problems of one command of a compose/kubectl form: what it names that does not exist there. */
function formProblems(line: string, objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const scaled = scaledObjectsOf(objects);
  // Stopping and starting compose services around a job: the services must exist.
  const lifecycle = /^docker-compose (?:stop|start) ([\w -]+)$/.exec(line);
  if (lifecycle) {
    for (const service of (lifecycle[1] as string).trim().split(/\s+/))
      if (!compose.services[service]) problems.push(`compose has no service "${service}"`);
    return problems;
  }
  // Pausing KEDA: the ScaledObject must be rendered.
  const pause =
    /^kubectl -n \S+ annotate scaledobject ([\w-]+) autoscaling\.keda\.sh\/paused-replicas(?:=\d+ --overwrite|-)$/.exec(
      line,
    );
  if (pause) {
    if (![...scaled.values()].includes(pause[1] as string))
      problems.push(`the prod overlay renders no ScaledObject ${pause[1]}`);
    return problems;
  }
  // Waiting for a workload's pods to be gone: the selector must be a rendered Deployment's.
  const pods = /^while kubectl -n \S+ get pods -l ([\w./-]+)=([\w-]+) -o name \| grep -q \.; do sleep \d+; done$/.exec(
    line,
  );
  if (pods) {
    const selects = objects.some(
      (o) =>
        o.kind === "Deployment" &&
        (o.spec as { selector?: { matchLabels?: Record<string, string> } }).selector?.matchLabels?.[
          pods[1] as string
        ] === pods[2],
    );
    if (!selects) problems.push(`no rendered Deployment selects its pods by ${pods[1]}=${pods[2]}`);
    return problems;
  }
  // Scaling the toolbox up or down around a job: every object it names must be a rendered Deployment,
  // and not one KEDA scales (its ScaledObject would scale it back: pause that instead).
  if (/^kubectl -n \S+ (?:scale|rollout status) /.test(line)) {
    for (const m of line.matchAll(/\b(scale|rollout status) (deploy\/[\w-]+)/g)) {
      const name = (m[2] as string).slice("deploy/".length);
      if (!objects.some((o) => o.kind === "Deployment" && o.metadata.name === name))
        problems.push(`the prod overlay renders no deploy/${name}`);
      if (m[1] === "scale" && scaled.has(name))
        problems.push(
          `KEDA scales deploy/${name} (ScaledObject ${scaled.get(name)}): pause it with the autoscaling.keda.sh/paused-replicas annotation`,
        );
    }
    return problems;
  }
  const job = /\bbun (jobs\/[\w/-]+\.ts)/.exec(line);
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
    problems.push(...argvProblems(file, jobArgv(line, file)));
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
  /**
   * The workloads that must be stopped while it runs (the Deployment and the compose service),
   * unless it runs with `unless` (its option that changes nothing).
   */
  stopped?: { deployment: string; composeService: string; unless: string };
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
    stopped: { deployment: "qrscan-worker", composeService: "worker", unless: "--dry-run" },
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

/**
 * What a shell block lacks around a job that needs workloads stopped (JOB_NEEDS' `stopped`): in
 * compose a stop before it and a start after; in Kubernetes, where KEDA owns the Deployment's
 * replicas (a `kubectl scale` is undone at its next poll), its ScaledObject paused at 0 replicas,
 * a wait until no pod of the Deployment is left, and the pause removed after the job.
 */
function stopProblems(code: string, objects: K8sObject[]): { checked: number; problems: string[] } {
  const scaled = scaledObjectsOf(objects);
  const lines = code.split("\n").filter((l) => l.trim() && !l.startsWith("#"));
  const problems: string[] = [];
  let checked = 0;
  lines.forEach((line, i) => {
    const file = /\bbun (jobs\/[\w-]+\.ts)/.exec(line)?.[1];
    const stop = file ? JOB_NEEDS[file]?.stopped : undefined;
    if (!file || !stop || jobArgv(line, file).includes(stop.unless)) return;
    checked++;
    const before = lines.slice(0, i);
    const after = lines.slice(i + 1);
    if (line.startsWith("docker-compose")) {
      if (!before.includes(`docker-compose stop ${stop.composeService}`))
        problems.push(`no \`docker-compose stop ${stop.composeService}\` before: ${line}`);
      if (!after.includes(`docker-compose start ${stop.composeService}`))
        problems.push(`no \`docker-compose start ${stop.composeService}\` after: ${line}`);
      return;
    }
    const ns = /^kubectl -n (\S+)/.exec(line)?.[1];
    const so = scaled.get(stop.deployment);
    const deployment = objects.find((o) => o.kind === "Deployment" && o.metadata.name === stop.deployment);
    const [label, value] = Object.entries(
      (deployment?.spec as { selector?: { matchLabels?: Record<string, string> } } | undefined)?.selector
        ?.matchLabels ?? {},
    )[0] ?? ["", ""];
    if (!ns || !so || !label) {
      problems.push(`no namespace, ScaledObject of deploy/${stop.deployment} or pod selector for: ${line}`);
      return;
    }
    const pause = `kubectl -n ${ns} annotate scaledobject ${so} autoscaling.keda.sh/paused-replicas=0 --overwrite`;
    const wait = `while kubectl -n ${ns} get pods -l ${label}=${value} -o name | grep -q .; do sleep `;
    const resume = `kubectl -n ${ns} annotate scaledobject ${so} autoscaling.keda.sh/paused-replicas-`;
    const paused = before.indexOf(pause);
    if (paused < 0) problems.push(`no \`${pause}\` before: ${line}`);
    if (!before.slice(paused + 1).some((l) => l.startsWith(wait)))
      problems.push(`no wait for the pods of deploy/${stop.deployment} to be gone after the pause, before: ${line}`);
    if (!after.includes(resume)) problems.push(`no \`${resume}\` after: ${line}`);
  });
  return { checked, problems };
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

  test("every `kubectl rollout` names a rendered Deployment with pods of its own, every `kubectl argo rollouts` a Rollout", () => {
    const problems: string[] = [];
    let commands = 0;
    for (const f of fences.filter(isShell)) {
      for (const line of f.code.split("\n")) {
        if (!/\bkubectl\b.*\b(?:rollout|argo rollouts) /.test(line) || line.startsWith("#")) continue;
        commands++;
        for (const p of rolloutProblems(line, objects)) problems.push(`${f.file}:${f.line}: ${p}: ${line}`);
      }
    }
    expect(commands).toBeGreaterThan(10);
    expect(problems).toEqual([]);
  });

  test("the rollout check fails on the server's template Deployment, a variable, an unknown Rollout", () => {
    expect(rolloutProblems('kubectl -n "$NAMESPACE" rollout restart deployment/qrscan-server', objects)).toEqual([
      "deployment/qrscan-server is the pod template of the Rollout qrscan-server (0 replicas): kubectl argo rollouts restart qrscan-server",
    ]);
    expect(rolloutProblems('kubectl -n "$NAMESPACE" rollout restart deployment/"$DEPLOYMENT"', objects)).toEqual([
      "names its Deployment by a variable (deployment/$DEPLOYMENT): name the workload",
    ]);
    expect(rolloutProblems("kubectl -n qrscan-prod rollout restart deploy/qrscan-workers", objects)).toEqual([
      "the prod overlay renders no deploy/qrscan-workers",
    ]);
    expect(rolloutProblems("kubectl argo rollouts -n qrscan-prod restart qrscan-worker", objects)).toEqual([
      "the prod overlay renders no Rollout qrscan-worker",
    ]);
    expect(rolloutProblems("kubectl argo rollouts -n qrscan-prod get rollout qrscan-server --watch", objects)).toEqual(
      [],
    );
    expect(rolloutProblems("kubectl -n qrscan-prod rollout restart deployment/qrscan-worker", objects)).toEqual([]);
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
    ).toEqual(["jobs/dlq.ts list --limitt 3: unknown argument(s): --limitt"]);
    // Flags the job's source names (in comments, or as another command's option) that its parser
    // does not take for this command.
    expect(formProblems("docker-compose run --rm -T ops bun jobs/dlq.ts list --force", objects)).toEqual([
      "jobs/dlq.ts list --force: unknown argument(s): --force",
    ]);
    expect(formProblems("docker-compose run --rm -T ops bun jobs/keys.ts revoke 3 --all", objects)).toEqual([
      "jobs/keys.ts revoke 3 --all: unknown argument(s): --all",
    ]);
    expect(formProblems("docker-compose run --rm -T ops bun jobs/dlq.ts list --limit", objects)).toEqual([
      "jobs/dlq.ts list --limit: --limit needs a value",
    ]);
    expect(formProblems("docker-compose run --rm -T ops bun jobs/offsets.ts", objects)).toEqual([
      "jobs/offsets.ts exports no command-line table (CliSpec)",
    ]);
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
    const toolboxFences = fences.filter((x) => x.lang === "shell" && /exec deploy\/qrscan-ops/.test(x.code));
    // Every job's kubectl form runs in the toolbox: a rename or another fence language must not
    // leave this check with nothing to read.
    expect(toolboxFences.length).toBeGreaterThan(5);
    for (const f of toolboxFences) {
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

  test("a job that needs the workers stopped runs between their stop and start (Kubernetes: KEDA paused, pods gone)", () => {
    let checked = 0;
    const problems: string[] = [];
    for (const f of fences.filter((x) => x.lang === "shell")) {
      const r = stopProblems(f.code, objects);
      checked += r.checked;
      problems.push(...r.problems.map((p) => `${f.file}:${f.line}: ${p}`));
    }
    // restore.md's compose and kubectl forms of `restore-offsets` (its --dry-run ones need no stop).
    expect(checked).toBeGreaterThanOrEqual(2);
    expect(problems).toEqual([]);
  });

  test("the stop check fails on a `kubectl scale` of the workers, a missing wait or resume, a compose form without stop", () => {
    const job = "kubectl -n qrscan-prod exec deploy/qrscan-ops -- bun jobs/restore-offsets.ts";
    const pause =
      "kubectl -n qrscan-prod annotate scaledobject qrscan-worker autoscaling.keda.sh/paused-replicas=0 --overwrite";
    const wait =
      "while kubectl -n qrscan-prod get pods -l app.kubernetes.io/name=qrscan-worker -o name | grep -q .; do sleep 5; done";
    const resume = "kubectl -n qrscan-prod annotate scaledobject qrscan-worker autoscaling.keda.sh/paused-replicas-";
    expect(stopProblems([pause, wait, job, resume].join("\n"), objects)).toEqual({ checked: 1, problems: [] });
    const scale = "kubectl -n qrscan-prod scale deploy/qrscan-worker --replicas=0";
    expect(stopProblems([scale, job, resume].join("\n"), objects).problems).toEqual([
      expect.stringContaining(`no \`${pause}\` before`),
      expect.stringContaining("no wait for the pods of deploy/qrscan-worker"),
    ]);
    expect(formProblems(scale, objects)).toEqual([
      expect.stringContaining("KEDA scales deploy/qrscan-worker (ScaledObject qrscan-worker)"),
    ]);
    expect(stopProblems([pause, job, resume].join("\n"), objects).problems).toEqual([
      expect.stringContaining("no wait for the pods"),
    ]);
    expect(stopProblems([wait, pause, job, resume].join("\n"), objects).problems).toEqual([
      expect.stringContaining("no wait for the pods"),
    ]);
    expect(stopProblems([pause, wait, job].join("\n"), objects).problems).toEqual([
      expect.stringContaining(`no \`${resume}\` after`),
    ]);
    expect(stopProblems(`${job} --dry-run`, objects)).toEqual({ checked: 0, problems: [] });
    expect(stopProblems("docker-compose run --rm -T ops bun jobs/restore-offsets.ts", objects).problems).toEqual([
      "no `docker-compose stop worker` before: docker-compose run --rm -T ops bun jobs/restore-offsets.ts",
      "no `docker-compose start worker` after: docker-compose run --rm -T ops bun jobs/restore-offsets.ts",
    ]);
    expect(
      formProblems(
        "kubectl -n qrscan-prod annotate scaledobject qrscan-workers autoscaling.keda.sh/paused-replicas=0 --overwrite",
        objects,
      ),
    ).toEqual(["the prod overlay renders no ScaledObject qrscan-workers"]);
    expect(formProblems(wait.replace("=qrscan-worker", "=qrscan-wrker"), objects)).toEqual([
      "no rendered Deployment selects its pods by app.kubernetes.io/name=qrscan-wrker",
    ]);
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

// ---------------------------------------------------------------------------------------------
// Every program of every command exists where it runs

/**
 * bash's builtins. Only the local forms run in the operator's shell: a compose or kubectl form
 * execs its program in the container, with no shell, so a builtin there must be a file too.
 */
const BUILTINS = new Set(
  ". : [ alias bg break builtin cd command continue declare echo eval exec exit export false fg getopts hash jobs kill let local printf pwd read readonly return set shift source test times trap true type ulimit umask unalias unset wait".split(
    " ",
  ),
);
/** The Kubernetes forms' client: the operator's, pointed at the cluster (no package of the local stack). */
const CLIENTS = new Set(["kubectl"]);
/** docker-compose subcommands whose operands are services (and the options among them that take a value). */
const COMPOSE_SERVICE_COMMANDS = new Set([
  "ps",
  "logs",
  "restart",
  "up",
  "stop",
  "start",
  "kill",
  "top",
  "rm",
  "pause",
]);
const COMPOSE_VALUE_OPTIONS = new Set(["--since", "--until", "--tail", "-n", "-t", "--timeout", "--scale", "--index"]);

/**
 * The programs of the operator's machine: Debian's base, what .ci/run installs (.ci/apt-packages;
 * bun with npm) and what the local stack installs (tools/stack/packages.ts), with their dependencies.
 */
function localMachine() {
  const ci = read(".ci/run");
  if (!ci.includes("$(grep -v '^#' .ci/apt-packages)")) throw new Error(".ci/run no longer installs .ci/apt-packages");
  const listed = read(".ci/apt-packages")
    .split("\n")
    .filter((l) => l.trim() && !l.startsWith("#"));
  const { packages, missing } = dependencyClosure([...new Set([...minbase(), ...listed, ...STACK_PACKAGES])]);
  const files = packageFiles(packages);
  const programs = programsOnPath(files, DEFAULT_PATH);
  if (/npm install -g bun\b/.test(ci)) programs.add("bun");
  return { packages, missing, files, programs };
}

interface ImageContents {
  stage: Stage;
  files: Set<string>;
  programs: Set<string>;
  /** Packages it installs that are not installed here: their files cannot be known. */
  missing: string[];
}

/**
 * What an image built here holds, statically: its Dockerfile stage's apt-get packages and their
 * dependencies on Debian's minbase (the base of every Dockerfile here), the files its COPY lines
 * write, its PATH. A string: why it cannot be known (a public image, or another base).
 */
function imageContents(src: ImageSource): ImageContents | string {
  if (src.kind === "public") return `the public image ${src.image || "(none)"}, whose files this test cannot know`;
  const dockerfile = src.kind === "target" ? "Dockerfile" : src.path;
  const all = dockerfileStages(read(dockerfile));
  const stage = all.get(src.kind === "target" ? src.target : src.stage) ?? [...all.values()].at(-1);
  if (!stage) return `${dockerfile} has no stage ${src.kind === "target" ? src.target : src.stage}`;
  if (!/^(\$\{BASE_IMAGE\}|debian:bookworm)/.test(stage.base))
    return `${dockerfile} builds FROM ${stage.base}, not Debian's base: its files cannot be known`;
  const { packages, missing } = dependencyClosure([...new Set([...minbase(), ...stage.packages])]);
  const files = packageFiles(packages);
  for (const f of stage.copiedTo) files.add(f);
  return { stage, files, missing, programs: programsOnPath(files, [...stage.pathDirs, ...DEFAULT_PATH]) };
}

const local = localMachine();
const prod = renderedProd();
const imageCache = new Map<string, ImageContents | string>();
const contentsOf = (src: ImageSource) => {
  const key = JSON.stringify(src);
  if (!imageCache.has(key)) imageCache.set(key, imageContents(src));
  return imageCache.get(key) as ImageContents | string;
};

/** `bun`'s script or file: a package.json script (`bun run x`) or a file that exists (in the image: that its target copies). */
function bunProblems(args: string[], exists: (file: string) => boolean): string[] {
  const operands = args.filter((a) => !a.startsWith("-"));
  if (args.includes("-e") || args.includes("--eval")) return [];
  if (operands[0] === "run") {
    const script = operands[1];
    return script && (script in packageScripts || exists(script)) ? [] : [`package.json has no script ${script}`];
  }
  const file = operands[0];
  return file && !exists(file) ? [`bun runs ${file}, which is not there`] : [];
}

/** What one program of a runbook command lacks where it runs. */
function programProblems(inv: Invocation, functions: Set<string>, objects: K8sObject[] = prod): string[] {
  const { program, args, place } = inv;
  if (program.includes("$")) return [`runs a program named by a variable or a substitution (${program})`];
  if (place.kind === "local") {
    const problems: string[] = [];
    if (program === "bun") problems.push(...bunProblems(args, (f) => existsSync(join(ROOT, f))));
    else if (program.includes("/")) {
      if (!(program.startsWith("/") ? local.files.has(program) : existsSync(join(ROOT, program))))
        problems.push(`${program} is neither a file of the checkout nor of an installed package`);
    } else if (
      !BUILTINS.has(program) &&
      !functions.has(program) &&
      !CLIENTS.has(program) &&
      !local.programs.has(program)
    )
      problems.push(
        `no package the project installs provides ${program} (.ci/run, tools/stack/packages.ts, Debian's base)`,
      );
    const composeArgs =
      program === "docker-compose" ? args : program === "docker" && args[0] === "compose" ? args.slice(1) : undefined;
    if (
      program === "docker" &&
      args[0] === "compose" &&
      ![...local.files].some((f) => f.endsWith("/cli-plugins/docker-compose"))
    )
      problems.push(
        "`docker compose` needs Docker's compose plugin, which no package the project installs provides: docker-compose",
      );
    const sub = composeArgs?.findIndex((a) => !a.startsWith("-")) ?? -1;
    if (composeArgs && COMPOSE_SERVICE_COMMANDS.has(composeArgs[sub] as string)) {
      composeArgs.slice(sub + 1).forEach((a, i, rest) => {
        if (a.startsWith("-") || COMPOSE_VALUE_OPTIONS.has(rest[i - 1] as string)) return;
        if (!composeImage(a)) problems.push(`compose has no service "${a}"`);
      });
    }
    return problems;
  }
  let src: ImageSource | undefined;
  let where: string;
  if (place.kind === "compose") {
    src = composeImage(place.service);
    where = `compose service ${place.service}`;
    if (!src) return [`compose has no service "${place.service}"`];
  } else {
    const image = k8sImage(objects, place.ref);
    where = `${place.ref} (${image})`;
    if (!image) return [`the prod overlay renders no ${place.ref}`];
    const target = k8sTarget(objects, place.ref);
    src = target ? { kind: "target", target } : { kind: "public", image };
  }
  const image = contentsOf(src);
  if (typeof image === "string") return [`${program} runs in ${where}: ${image}`];
  if (image.missing.length)
    return [`${where} installs ${image.missing.join(", ")}, not installed here: its files are unknown`];
  if (program === "bun")
    return [
      ...(image.programs.has("bun") ? [] : [`bun is not in the image of ${where}`]),
      ...bunProblems(
        args,
        (f) => existsSync(join(ROOT, f)) && image.stage.copies.some((c) => f === c || f.startsWith(`${c}/`)),
      ).map((p) => `${p} (in ${where})`),
    ];
  if (program.startsWith("/")) return image.files.has(program) ? [] : [`${program} is not in the image of ${where}`];
  return image.programs.has(program) ? [] : [`${program} is not in the image of ${where}`];
}

/** The problems of every program of a shell text (the mutation tests below). */
const problemsOf = (code: string, functions = new Set<string>()) =>
  shellCommands(code).commands.flatMap((words) => invocations(words).flatMap((inv) => programProblems(inv, functions)));

describe("runbooks: every program exists where it runs", () => {
  test("the machine's and the images' package lists are known", () => {
    // Every package the project installs is installed here (CI: .ci/run did): its files are read.
    expect(local.missing).toEqual([]);
    expect(local.programs.size).toBeGreaterThan(500);
    for (const p of [
      "psql",
      "kcat",
      "jq",
      "curl",
      "awk",
      "java",
      "ss",
      "ps",
      "timeout",
      "runuser",
      "pgbackrest",
      "amtool",
      "docker-compose",
    ])
      expect(local.programs).toContain(p);
    const worker = contentsOf({ kind: "target", target: "worker" }) as ImageContents;
    expect(worker.missing).toEqual([]);
    // The worker image: bun (COPY --from=bun), Debian's base (sh, env, cat), librdkafka (no program); no psql.
    for (const p of ["bun", "sh", "env", "cat", "awk"]) expect(worker.programs).toContain(p);
    for (const p of ["psql", "kcat", "curl", "jq", "pgbackrest"]) expect(worker.programs).not.toContain(p);
    const backup = contentsOf({ kind: "target", target: "backup" }) as ImageContents;
    expect(backup.programs).toContain("pgbackrest");
    expect(backup.programs).not.toContain("bun");
    // compose's Postgres: its PATH has the server's directory, psql from the client package.
    const postgres = contentsOf(composeImage("postgres") as ImageSource) as ImageContents;
    for (const p of ["psql", "pg_ctl", "pgbackrest", "restore-drill"]) expect(postgres.programs).toContain(p);
  });

  test("every command of every runbook block names a program that exists where it runs", () => {
    const invs = runbookInvocations();
    const places = new Set(invs.map((i) => i.place.kind));
    expect([...places].sort()).toEqual(["compose", "kubectl", "local"]);
    expect(invs.length).toBeGreaterThan(400);
    const problems = invs.flatMap((inv) =>
      programProblems(inv, inv.functions).map((p) => `${inv.fence.file}:${inv.fence.line}: ${p}: ${inv.command}`),
    );
    expect(problems).toEqual([]);
  });

  test("tools/images.ts looks for what the forms run in the images they run in: the jobs in the worker image", () => {
    const needs = runbookImageNeeds(prod);
    // Only the product images (the Dockerfile's targets) are built there.
    for (const target of needs.keys()) expect(["server", "worker", "backup"]).toContain(target);
    const worker = needs.get("worker");
    expect(worker?.programs).toContain("bun");
    expect(worker?.files).toEqual([...new Set(jobScripts.values())].sort());
  });

  test("the check fails on an unknown program, one not in the image it runs in, a public image, compose's plugin form", () => {
    expect(problemsOf("pg_dumpall2 -l | grep x")).toEqual([
      expect.stringContaining("no package the project installs provides pg_dumpall2"),
    ]);
    expect(problemsOf('x=$(kcatx -L -b "$KAFKA_BROKERS")')).toEqual([expect.stringContaining("provides kcatx")]);
    expect(problemsOf("promql 'up'")).toEqual([expect.stringContaining("provides promql")]);
    expect(problemsOf("promql 'up'", new Set(["promql"]))).toEqual([]);
    expect(problemsOf("docker-compose exec worker psql -c 'select 1'")).toEqual([
      "psql is not in the image of compose service worker",
    ]);
    expect(problemsOf("docker-compose exec -T postgres psql -U postgres qrscan -c 'select 1'")).toEqual([]);
    expect(problemsOf("kubectl -n qrscan-prod exec deploy/qrscan-ops -- psql -c 1")).toEqual([
      "psql is not in the image of deploy/qrscan-ops (qrscan-worker:0.1.0)",
    ]);
    // No shell in an exec: a builtin is not a program there.
    expect(problemsOf("kubectl -n qrscan-prod exec deploy/qrscan-ops -- cd /")).toEqual([
      "cd is not in the image of deploy/qrscan-ops (qrscan-worker:0.1.0)",
    ]);
    expect(problemsOf("kubectl -n qrscan-prod exec deploy/qrscan-ops -- env A=1 bun jobs/nope.ts")).toEqual([
      "bun runs jobs/nope.ts, which is not there (in deploy/qrscan-ops (qrscan-worker:0.1.0))",
    ]);
    expect(problemsOf("docker-compose exec kafka-1 kafka-topics.sh --list")).toEqual([
      expect.stringContaining("kafka-topics.sh runs in compose service kafka-1: the public image apache/kafka"),
    ]);
    expect(problemsOf("docker compose ps pgbouncer")).toEqual([expect.stringContaining("compose plugin")]);
    expect(problemsOf("docker-compose logs --since 10m pgbouncer postgress")).toEqual([
      'compose has no service "postgress"',
    ]);
    expect(problemsOf("timeout 5 psqll -c 1 >/dev/null 2>&1 && echo ok")).toEqual([
      expect.stringContaining("provides psqll"),
    ]);
    expect(problemsOf("bun run nope")).toEqual(["package.json has no script nope"]);
  });
});
