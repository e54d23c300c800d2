// The configuration tables of docs/operations.md (the shipped processes) and docs/development.md
// (the dev-only tools) are the schemas: each table lists exactly the variables its process's schema
// reads, and each default shown is the schema's default.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import * as v from "valibot";
import { OpsConfigSchema } from "../../jobs/config.ts";
import { KeysConfigSchema } from "../../jobs/keys.ts";
import { MaintainConfigSchema } from "../../jobs/retention/config.ts";
import { ServerConfigSchema } from "../../server/config.ts";
import { localStack } from "../../shared/local-stack.ts";
import { MigrateConfigSchema } from "../../sql/migrate.ts";
import { BackupConfigSchema } from "../../tools/backup/config.ts";
import { EngineConfigSchema } from "../../tools/engine.ts";
import { ImagesConfigSchema } from "../../tools/images/config.ts";
import { SupervisorConfigSchema, WorkerConfigSchema } from "../../worker/config.ts";
import { configRows, configTable } from "./harness.ts";

const ops = readFileSync(new URL("../../docs/operations.md", import.meta.url), "utf8");
const dev = readFileSync(new URL("../../docs/development.md", import.meta.url), "utf8");
const sorted = (xs: Iterable<string>) => [...xs].sort();

/**
 * Defaults that depend on where the table is read: the local stack's addresses (shown for its
 * default ports) and the CPU count. Their cells must say so, in these words.
 */
const DESCRIBED_DEFAULTS: Record<string, RegExp> = {
  KAFKA_BROKERS: /^local stack \(`127\.0\.0\.1:19092`\)$/,
  DATABASE_URL: /^local pgbouncer$/,
  DATABASE_DIRECT_URL: /^local Postgres \(`postgres:\/\/qrscan:qrscan@127\.0\.0\.1:15432\/qrscan`\)$/,
  WORKER_POOL_SIZE: /^CPUs$/,
  ARCHIVE_DIR: /^`\$STACK_DIR\/archive`$/,
  IMAGES_STORAGE: /^`\$STACK_DIR\/containers`$/,
  ENGINE_DIR: /^`\$STACK_DIR\/engine`$/,
};

type Schema = v.ObjectSchema<v.ObjectEntries, undefined>;
/** Each table: its name, the schema, and the doc holding it. */
const SCHEMAS: [string, Schema, string][] = [
  ["server", ServerConfigSchema as unknown as Schema, ops],
  ["worker", WorkerConfigSchema as unknown as Schema, ops],
  ["supervisor", SupervisorConfigSchema as unknown as Schema, ops],
  ["migrate", MigrateConfigSchema as unknown as Schema, ops],
  ["maintain", MaintainConfigSchema as unknown as Schema, ops],
  ["keys", KeysConfigSchema as unknown as Schema, ops],
  ["backup", BackupConfigSchema as unknown as Schema, ops],
  ["images", ImagesConfigSchema as unknown as Schema, dev],
  ["engine", EngineConfigSchema as unknown as Schema, dev],
];

for (const [name, schema, doc] of SCHEMAS) {
  test(`the ${name} table lists exactly the ${name}'s schema, each with its default`, () => {
    const rows = configRows(doc, name);
    const documented = rows.map((r) => r.variable);
    expect(documented.length).toBe(new Set(documented).size);
    expect(sorted(documented)).toEqual(sorted(Object.keys(schema.entries)));
    const wrong: string[] = [];
    for (const { variable, defaultCell } of rows) {
      const described = DESCRIBED_DEFAULTS[variable];
      if (described) {
        if (!described.test(defaultCell)) wrong.push(`${variable}: "${defaultCell}" should match ${described}`);
        continue;
      }
      const fallback = v.getDefault(schema.entries[variable] as v.GenericSchema) as string | undefined;
      const expected = fallback === undefined || fallback === "" ? "–" : `\`${fallback}\``;
      if (defaultCell !== expected) wrong.push(`${variable}: the table says ${defaultCell}, the schema ${expected}`);
    }
    expect(wrong).toEqual([]);
  });
}

test("configTable refuses a section without markers or with a row it cannot read", () => {
  expect(() => configTable("| a |\n|---|\n| `X` |\n", "server")).toThrow(/no <!-- config:server -->/);
  expect(() => configTable("<!-- config:s -->\n| v |\n|---|\n| HOST |\n<!-- /config:s -->", "s")).toThrow(
    /first column must be one variable in backticks/,
  );
  expect(configTable("<!-- config:s -->\n| v | d |\n|---|---|\n| `A_B` | 1 |\n<!-- /config:s -->", "s")).toEqual([
    "A_B",
  ]);
});

test("dlq and restore-offsets read the worker's variables (its table documents them), only DATABASE_URL defaulting to the owner", () => {
  const worker = WorkerConfigSchema.entries as Record<string, unknown>;
  const ops = Object.entries(OpsConfigSchema.entries).filter(([k]) => k !== "DATABASE_URL");
  expect(ops.filter(([k, entry]) => worker[k] !== entry).map(([k]) => k)).toEqual([]);
  expect(v.getDefault(OpsConfigSchema.entries.DATABASE_URL)).toBe(localStack().databaseUrl);
});
