// The images the project builds: the Dockerfile's targets → the image's name (tools/images.ts
// builds them; the Kubernetes manifests, test/helpers/k8s-checks.ts, may run only these), and the
// images built from a folder of their own (its Dockerfile), which each environment runs beside the
// app. CI builds and pushes all of them (.github/workflows/ci.yml). No side effects, so tests
// import it.
export const IMAGES = { server: "qrscan-server", worker: "qrscan-worker", backup: "qrscan-backup" } as const;
export type ImageTarget = keyof typeof IMAGES;

/**
 * The pgbouncer exporter: Debian's through monitoring/pgbouncer-exporter/run.py, whose metric
 * names (pgbouncer_max_wait_seconds, ...) the rules read; the public Go exporter names them
 * otherwise. compose.yaml builds the same folder under the same name.
 */
export const FOLDER_IMAGES = {
  "pgbouncer-exporter": { name: "qrscan-pgbouncer-exporter", context: "monitoring/pgbouncer-exporter" },
} as const;
