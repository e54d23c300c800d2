// Alertmanager's files for the cluster (deploy/k8s/monitoring/alertmanager/): the routing of
// monitoring/alertmanager/alertmanager.yml and the start.sh that fills its receivers' URLs from
// secret files, copied unchanged (kustomize reads a configMapGenerator's files only from inside
// its folder). monitoring/alertmanager/ stays their one source; test/unit/k8s-manifests.test.ts
// fails when a copy differs.
//   bun tools/k8s-alertmanager.ts           (write them)
//   bun tools/k8s-alertmanager.ts --check   (exit 1 when a copy differs from its source)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { writeOrCheck } from "./generated.ts";

const ROOT = new URL("..", import.meta.url).pathname;
export const REGENERATE = "bun tools/k8s-alertmanager.ts";
/** Each source (monitoring/alertmanager/) → its copy beside the manifests. */
export const COPIES = ["alertmanager.yml", "start.sh"].map((file) => ({
  file,
  source: join(ROOT, "monitoring/alertmanager", file),
  copy: join(ROOT, "deploy/k8s/monitoring/alertmanager", file),
}));

if (import.meta.main)
  writeOrCheck(
    COPIES.map(({ source, copy }) => ({ path: copy, text: readFileSync(source, "utf8"), source })),
    REGENERATE,
  );
