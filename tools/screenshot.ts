// A PNG of the local stack's Prometheus graph page with the pipeline's main series (events
// accepted/s against rows inserted/s, committed lag per partition, scan p95 latency), taken with
// headless Chromium, to check the series by eye. An artefact, not a test: run traffic first
// (`bun run dev --demo`, with the same STACK_* and dev port variables), then
//   bun run screenshot [--range 15m] [--out-dir dir]
// It writes one PNG per graph, $STACK_DIR/screenshots/prometheus-<graph>-<time>.png (or in
// --out-dir), and prints their paths.
import { spawnSync } from "node:child_process";
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { type CliSpec, MAIN, parseCommand, runCli } from "../shared/cli.ts";
import { TOPICS, localStack } from "../shared/local-stack.ts";

export const SCREENSHOT_CLI: CliSpec = {
  program: "bun run screenshot",
  description: "PNGs of the local stack's Prometheus graphs of the pipeline's main series.",
  commands: {
    [MAIN]: {
      args: "",
      description: "one PNG per graph; prints their paths",
      options: {
        range: { type: "string", value: "15m", description: "the graphs' time range (default 15m)" },
        "out-dir": { type: "string", value: "DIR", description: "default $STACK_DIR/screenshots" },
      },
    },
  },
};

const stack = localStack();
const prometheus = `http://127.0.0.1:${stack.prometheusPort}`;

/** The graphs, as on the pipeline and edge dashboards (dashboards/src/), one PNG each. */
const graphs: Record<string, string> = {
  // Both series on one graph, told apart by a label (each sum has none).
  "accepted-vs-rows":
    'label_replace(sum(rate(scan_events_total{outcome="accepted"}[1m])), "series", "events accepted/s", "", "")' +
    ' or label_replace(sum(rate(worker_rows_inserted_total[1m])), "series", "rows inserted/s", "", "")',
  // The product's topic (tests' throwaway topics come and go on the same Prometheus).
  "committed-lag": `sum by (topic, partition) (consumer_group_lag{topic="${TOPICS.scans.name}"})`,
  "scan-p95":
    'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{route="/v1/scans"}[1m])))',
};

interface Shot {
  range: string;
  outDir: string;
  stamp: string;
}

/** One graph page, shot by headless Chromium; returns the PNG's path. */
function shoot(name: string, expr: string, { range, outDir, stamp }: Shot): string {
  const out = join(outDir, `prometheus-${name}-${stamp}.png`);
  const params = new URLSearchParams({
    "g0.expr": expr,
    "g0.tab": "0",
    "g0.stacked": "0",
    "g0.show_exemplars": "0",
    "g0.range_input": range,
  });
  const chromium = spawnSync(
    "chromium",
    [
      "--headless",
      // Chromium refuses to run as root without it.
      "--no-sandbox",
      "--disable-gpu",
      "--hide-scrollbars",
      "--window-size=1400,900",
      // Lets the page's scripts query Prometheus and draw before the shot.
      "--virtual-time-budget=15000",
      `--screenshot=${out}`,
      `${prometheus}/graph?${params}`,
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  if (chromium.error || chromium.status !== 0) {
    throw new Error(
      `chromium failed (${chromium.error?.message ?? `exit ${chromium.status}`}); is it installed (apt-get install -y chromium)?\n${chromium.stderr}`,
    );
  }
  if ((statSync(out, { throwIfNoEntry: false })?.size ?? 0) === 0) {
    throw new Error(`chromium exited 0 but wrote no ${out}:\n${chromium.stderr}`);
  }
  return out;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseCommand(SCREENSHOT_CLI, argv);
  const shot: Shot = {
    range: (values.range as string | undefined) ?? "15m",
    outDir: (values["out-dir"] as string | undefined) ?? join(stack.dir, "screenshots"),
    stamp: new Date().toISOString().replace(/[:.]/g, "-"),
  };
  const ready = await fetch(`${prometheus}/-/ready`).then(
    (r) => r.status,
    (e: Error) => e.message,
  );
  if (ready !== 200) {
    console.error(`screenshot: Prometheus at ${prometheus} is not ready (${ready}); run \`bun run stack up\` first`);
    return 1;
  }
  mkdirSync(shot.outDir, { recursive: true });
  for (const [name, expr] of Object.entries(graphs)) console.log(shoot(name, expr, shot));
  return 0;
}

if (import.meta.main) await runCli(SCREENSHOT_CLI, main);
