// The command line the generators of checked-in files share (tools/k8s-rules.ts, k8s-promtail.ts,
// k8s-alertmanager.ts): write each file, or with --check exit 1 naming each file that differs from
// what its source gives (the tests call the renderers themselves; this is for the shell).
import { readFileSync, writeFileSync } from "node:fs";

export interface Generated {
  /** The checked-in file. */
  path: string;
  /** What it must hold. */
  text: string;
  /** Where it comes from, for the message. */
  source: string;
}

export function writeOrCheck(files: Generated[], regenerate: string, argv = process.argv): never {
  let stale = 0;
  for (const { path, text, source } of files) {
    if (!argv.includes("--check")) {
      writeFileSync(path, text);
      console.log(`wrote ${path}`);
    } else if (readFileSync(path, "utf8") !== text) {
      console.error(`${path} is out of date with ${source}: run \`${regenerate}\``);
      stale++;
    }
  }
  process.exit(stale ? 1 : 0);
}
