// The images the Dockerfile builds: its target → the image's name. tools/images.ts builds them;
// the Kubernetes manifests (test/helpers/k8s-checks.ts) may run only these. No side effects, so
// tests import it.
export const IMAGES = { server: "qrscan-server", worker: "qrscan-worker", backup: "qrscan-backup" } as const;
export type ImageTarget = keyof typeof IMAGES;
