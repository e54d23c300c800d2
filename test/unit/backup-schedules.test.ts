// The backup schedules in deploy/backup/: the systemd units pass `systemd-analyze verify`, the
// Kubernetes CronJobs parse (and render with `kubectl kustomize` where kubectl is installed) with
// the fields a backup job needs, and the three schedules (timers, CronJobs, the cron line in
// docs/runbooks/restore.md) say the same thing.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = new URL("../..", import.meta.url).pathname;
const DIR = join(ROOT, "deploy/backup");
const read = (file: string) => readFileSync(join(DIR, file), "utf8");
const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;

/** Backup type → its schedule, as cron (minute hour day month weekday) and as systemd OnCalendar. */
const SCHEDULES = {
  full: { cron: "0 1 * * 0", onCalendar: "Sun *-*-* 01:00:00" },
  diff: { cron: "0 1 * * 1-6", onCalendar: "Mon..Sat *-*-* 01:00:00" },
} as const;

interface CronJob {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    schedule: string;
    concurrencyPolicy: string;
    jobTemplate: {
      spec: {
        template: {
          spec: {
            restartPolicy: string;
            securityContext: { runAsNonRoot: boolean };
            containers: { name: string; args: string[] }[];
          };
        };
      };
    };
  };
}

/**
 * Whether a tool is here. CI installs both (.ci/apt-packages, ci.yml's kubectl), so there a missing
 * one fails the test; elsewhere the other checks still run and the output says what was not.
 */
function available(tool: string, otherwise: string): boolean {
  if (has(tool)) return true;
  if (process.env.CI) throw new Error(`${tool} is not installed in CI: ${otherwise}`);
  console.warn(`${tool} not installed: ${otherwise}`);
  return false;
}

test("the systemd units pass systemd-analyze verify", () => {
  if (!available("systemd-analyze", "the unit files not verified by systemd")) return;
  const res = spawnSync(
    "systemd-analyze",
    [
      "verify",
      "./qrscan-backup@full.service",
      "./qrscan-backup@diff.service",
      "./qrscan-backup-full.timer",
      "./qrscan-backup-diff.timer",
    ],
    { cwd: DIR, encoding: "utf8", timeout: 60_000 },
  );
  expect(`${res.stdout}${res.stderr}`.trim()).toBe("");
  expect(res.status).toBe(0);
});

test("each timer starts its type's backup on the schedule, and the service runs pgbackrest as postgres", () => {
  const service = read("qrscan-backup@.service");
  expect(service).toContain("\nUser=postgres\n");
  expect(service).toContain("\nType=oneshot\n");
  expect(service).toMatch(/\nExecStart=\/usr\/bin\/pgbackrest --stanza=qrscan --type=%i .*backup\n/);
  for (const [type, s] of Object.entries(SCHEDULES)) {
    const timer = read(`qrscan-backup-${type}.timer`);
    expect(timer).toContain(`\nOnCalendar=${s.onCalendar}\n`);
    expect(timer).toContain(`\nUnit=qrscan-backup@${type}.service\n`);
    expect(timer).toContain(`(cron: ${s.cron})`);
  }
});

test("the CronJobs parse, render, and run a pgbackrest backup of their type on the same schedule", () => {
  const docs = Bun.YAML.parse(read("cronjob.yaml")) as CronJob[];
  expect(docs.map((d) => d.metadata.name).sort()).toEqual(["qrscan-backup-diff", "qrscan-backup-full"]);
  for (const job of docs) {
    const type = job.metadata.name.replace("qrscan-backup-", "") as keyof typeof SCHEDULES;
    expect([job.apiVersion, job.kind]).toEqual(["batch/v1", "CronJob"]);
    expect(job.spec.schedule).toBe(SCHEDULES[type].cron);
    expect(job.spec.concurrencyPolicy).toBe("Forbid");
    const pod = job.spec.jobTemplate.spec.template.spec;
    expect(pod.restartPolicy).toBe("Never");
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    const [container] = pod.containers;
    expect(container?.args).toEqual([
      "pgbackrest",
      "--stanza=qrscan",
      `--type=${type}`,
      "--log-level-console=info",
      "backup",
    ]);
  }
  if (available("kubectl", "the CronJobs not rendered by kustomize v5")) {
    const res = spawnSync("kubectl", ["kustomize", DIR], { encoding: "utf8", timeout: 60_000 });
    expect(res.stderr).toBe("");
    expect(res.status).toBe(0);
    expect(res.stdout.match(/^kind: CronJob$/gm)).toHaveLength(2);
  }
});

test("the runbook's cron lines are the same schedule", () => {
  const runbook = readFileSync(join(ROOT, "docs/runbooks/restore.md"), "utf8");
  for (const [type, s] of Object.entries(SCHEDULES)) {
    expect(runbook).toContain(`${s.cron} postgres pgbackrest --stanza=qrscan --type=${type} backup`);
  }
});
