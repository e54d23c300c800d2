// docs/operations.md's configuration tables list exactly the variables each process's schema reads.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { ServerConfigSchema } from "../../server/config.ts";
import { WorkerConfigSchema } from "../../worker/config.ts";
import { configTable } from "./harness.ts";

const ops = readFileSync(new URL("../../docs/operations.md", import.meta.url), "utf8");
const sorted = (xs: Iterable<string>) => [...xs].sort();

// Read outside the schemas today (shared/logger.ts, worker/main.ts, sql/migrate.ts); issue 15 moves
// them into the schemas, and then these lists go.
const OUTSIDE_SERVER_SCHEMA = ["LOG_LEVEL"];
const OUTSIDE_WORKER_SCHEMA = ["LOG_LEVEL", "WORKER_INDEX"];

test("the server table is the server's schema", () => {
  const documented = configTable(ops, "server");
  expect(documented.length).toBe(new Set(documented).size);
  expect(sorted(documented)).toEqual(sorted([...Object.keys(ServerConfigSchema.entries), ...OUTSIDE_SERVER_SCHEMA]));
});

test("the worker table is the worker's schema", () => {
  const documented = configTable(ops, "worker");
  expect(documented.length).toBe(new Set(documented).size);
  expect(sorted(documented)).toEqual(sorted([...Object.keys(WorkerConfigSchema.entries), ...OUTSIDE_WORKER_SCHEMA]));
});

test("the migrate table names the one variable the runner reads", () => {
  expect(configTable(ops, "migrate")).toEqual(["DATABASE_DIRECT_URL"]);
});

test("configTable refuses a section without markers or with a row it cannot read", () => {
  expect(() => configTable("| a |\n|---|\n| `X` |\n", "server")).toThrow(/no <!-- config:server -->/);
  expect(() => configTable("<!-- config:s -->\n| v |\n|---|\n| HOST |\n<!-- /config:s -->", "s")).toThrow(
    /first column must be one variable in backticks/,
  );
  expect(configTable("<!-- config:s -->\n| v | d |\n|---|---|\n| `A_B` | 1 |\n<!-- /config:s -->", "s")).toEqual([
    "A_B",
  ]);
});
