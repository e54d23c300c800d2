// The scheduled jobs' Kubernetes manifests outside the kustomize base (deploy/retention,
// deploy/backup) run as locked down as the product's pods: non-root, the runtime's seccomp
// profile, no privilege escalation, no capabilities; the maintain job (the product's image) also
// on a read-only root with a memory-backed /tmp.
//
// Mutations checked (each alone): the maintain CronJob's securityContext removed (as it was);
// allowPrivilegeEscalation true in a backup CronJob; /tmp's volume dropped.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = new URL("../..", import.meta.url).pathname;

interface Container {
  name: string;
  image?: string;
  command?: string[];
  securityContext?: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[] };
  };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface CronJob {
  kind: string;
  metadata: { name: string };
  spec: {
    jobTemplate: {
      spec: {
        template: {
          spec: {
            securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
            containers: Container[];
            volumes?: { name: string; emptyDir?: object }[];
          };
        };
      };
    };
  };
}

/** The CronJobs of a file (one document or several). */
const all = (file: string) => [Bun.YAML.parse(readFileSync(join(ROOT, file), "utf8"))].flat() as CronJob[];
const FILES = ["deploy/retention/maintain-cronjob.yaml", "deploy/backup/cronjob.yaml"];

describe("scheduled jobs", () => {
  for (const file of FILES) {
    for (const job of all(file)) {
      test(`${file} ${job.metadata.name}: non-root, RuntimeDefault seccomp, no escalation, no capabilities`, () => {
        expect(job.kind).toBe("CronJob");
        const pod = job.spec.jobTemplate.spec.template.spec;
        expect(pod.securityContext?.runAsNonRoot).toBe(true);
        expect(pod.securityContext?.runAsUser).toBeGreaterThan(0);
        expect(pod.securityContext?.seccompProfile?.type).toBe("RuntimeDefault");
        for (const c of pod.containers) {
          expect({ container: c.name, escalation: c.securityContext?.allowPrivilegeEscalation }).toEqual({
            container: c.name,
            escalation: false,
          });
          expect(c.securityContext?.capabilities?.drop).toEqual(["ALL"]);
        }
      });
    }
  }

  test("the maintain job runs the product's image user on a read-only root, /tmp in memory", () => {
    const [job] = all("deploy/retention/maintain-cronjob.yaml");
    const pod = (job as CronJob).spec.jobTemplate.spec.template.spec;
    expect(pod.securityContext?.runAsUser).toBe(10001);
    const [c] = pod.containers;
    // The worker image carries jobs/ (Dockerfile); `bun run` would need package.json's dev scripts.
    expect({ image: c?.image, command: c?.command }).toEqual({
      image: "qrscan-worker",
      command: ["bun", "jobs/maintain.ts"],
    });
    expect(c?.securityContext?.readOnlyRootFilesystem).toBe(true);
    const tmp = c?.volumeMounts?.find((m) => m.mountPath === "/tmp");
    expect(tmp).toBeDefined();
    expect(pod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir).toBeDefined();
  });
});
