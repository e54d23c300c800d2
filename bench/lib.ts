// Small helpers shared by the bench scripts: argument parsing, result files, table printing.
// Throwaway databases, processes and scrapes: tools/harness.ts.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** `--name value` or `--name=value` from argv, else the fallback. */
export function arg(name: string, fallback: string): string {
  const argv = process.argv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === `--${name}`) return argv[i + 1] ?? fallback;
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3);
  }
  return fallback;
}

export const numArg = (name: string, fallback: number) => Number(arg(name, String(fallback)));

export const RESULTS_DIR = new URL("./results/", import.meta.url).pathname;

export function saveResults(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${name}-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

export function printTable(rows: Record<string, string | number>[]): void {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0] as object);
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i] as number)).join("  ");
  console.log(line(cols));
  for (const r of rows) console.log(line(cols.map((c) => String(r[c]))));
}

/** Random printable payload of `size` bytes (like kafka-producer-perf-test's records). */
export function randomPayload(size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = 65 + Math.floor(Math.random() * 26);
  return buf;
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)] as number) : Number.NaN;
};

/**
 * The real edge server (`server/main.ts`) on free ports, against the local stack's broker, without
 * authentication and with warnings only; resolves once it answers /ready.
 */
export async function startBenchServer(env: Record<string, string> = {}) {
  // Imported here, not at the top: the load generator imports this file, and its start-up CPU
  // (the edge's config, the harness) would be counted in its CPU per event.
  const { startEdgeServer } = await import("../tools/edge-server.ts");
  const { proc, url } = await startEdgeServer({ env, output: "ignore" });
  return { proc, url };
}
