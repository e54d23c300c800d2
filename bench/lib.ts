// Small helpers shared by the bench scripts: argument parsing, result files, table printing, a
// throwaway migrated database.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { localStack } from "../shared/local-stack.ts";
import { migrate } from "../sql/migrate.ts";

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

/** A migrated database of its own on the local stack: `direct` to Postgres, `pooled` through pgbouncer. */
export async function freshDatabase(tag: string) {
  const stack = localStack();
  const name = `qrscan_bench_${tag}_${Date.now().toString(36)}`;
  const admin = postgres(`postgres://postgres@127.0.0.1:${stack.pgPort}/postgres`, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name} owner ${stack.user}`);
  await admin.end();
  const direct = `postgres://${stack.user}:${stack.password}@127.0.0.1:${stack.pgPort}/${name}`;
  await migrate(direct);
  return {
    name,
    direct,
    pooled: `postgres://${stack.user}:${stack.password}@127.0.0.1:${stack.pgbouncerPort}/${name}`,
    drop: async () => {
      const a = postgres(`postgres://postgres@127.0.0.1:${stack.pgPort}/postgres`, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}
