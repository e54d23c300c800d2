// Generates the committed Grafana dashboards: dashboards/<name>.json, one per builder below, loaded
// by Grafana's file provisioning (monitoring/grafana/provisioning/dashboards/dashboards.yaml) from
// the folder compose.yaml mounts. Run `bun run dashboards` after changing any source here;
// test/unit/dashboards.test.ts fails if a committed file differs from this output.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Dashboard } from "@grafana/grafana-foundation-sdk/dashboard";
import { edgeDashboard } from "./edge.ts";
import { brokerDashboard, databaseDashboard } from "./infrastructure.ts";
import { pipelineDashboard } from "./pipeline.ts";
import { sloDashboard } from "./slo.ts";

export const DASHBOARDS_DIR = new URL("..", import.meta.url).pathname;

const builders = {
  edge: edgeDashboard,
  pipeline: pipelineDashboard,
  slo: sloDashboard,
  database: databaseDashboard,
  broker: brokerDashboard,
};

/** The dashboards' JSON models, by name. */
export function dashboardModels(): Record<string, Dashboard> {
  return Object.fromEntries(
    Object.entries(builders).map(([name, build]) => {
      const model = build().build();
      // Unique panel ids (the builder gives every row id 0), in layout order.
      model.panels?.forEach((panel, i) => {
        panel.id = i + 1;
      });
      return [name, model];
    }),
  );
}

/** `json` as the repository's formatter (Biome, biome.json) writes it, so the committed files pass `bun run lint`. */
function biomeFormat(file: string, json: string): string {
  const biome = new URL("../../node_modules/.bin/biome", import.meta.url).pathname;
  const out = Bun.spawnSync([biome, "format", `--stdin-file-path=${file}`], { stdin: Buffer.from(json) });
  if (out.exitCode !== 0)
    throw new Error(`biome format ${file} failed (exit ${out.exitCode}): ${out.stderr.toString()}`);
  return out.stdout.toString();
}

/** File name (in dashboards/) to its JSON text, as committed. */
export function renderDashboards(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(dashboardModels()).map(([name, model]) => [
      `${name}.json`,
      biomeFormat(join(DASHBOARDS_DIR, `${name}.json`), JSON.stringify(model, null, 2)),
    ]),
  );
}

if (import.meta.main) {
  for (const [file, text] of Object.entries(renderDashboards())) {
    writeFileSync(join(DASHBOARDS_DIR, file), text);
    console.log(`dashboards: wrote ${join("dashboards", file)}`);
  }
}
