// `bun tools/images.ts`'s configuration (docs/development.md, "images configuration").
import { join } from "node:path";
import * as v from "valibot";
import { str } from "../../shared/config.ts";
import { localStack } from "../../shared/local-stack.ts";

export const ImagesConfigSchema = v.object({
  /** A base image already in the storage (e.g. debian:bookworm-slim); empty: bootstrap Debian here. */
  IMAGES_BASE: str(""),
  /** The containers storage (graph root) the images are built into and run from. */
  IMAGES_STORAGE: str(join(localStack().dir, "containers")),
  /** The images' tag; default the commit's short sha. */
  IMAGES_TAG: str(""),
  /**
   * A CA bundle the build's npm and `bun install` must trust (a TLS-inspecting proxy, as on the
   * project's machines): mounted into the build's RUN steps only, never into an image.
   */
  NODE_EXTRA_CA_CERTS: str(""),
});

/** buildah's options for the images' own storage (IMAGES_STORAGE), never the machine's. */
export const buildahStorageArgs = (storage: string): string[] => [
  "--root",
  join(storage, "storage"),
  "--runroot",
  join(storage, "run"),
  "--storage-driver",
  "overlay",
];
