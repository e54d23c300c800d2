// Writes packages/scan-client/src/wire.ts, the SDK's types of the wire, from the edge's OpenAPI
// document (server/openapi.ts), so the SDK's request and answer types come from the schemas the
// edge validates and answers with. A small JSON-Schema-to-TypeScript for the few shapes the
// document has: anything else fails the generation rather than becoming `unknown`.
//   bun tools/openapi-types.ts            writes the file
//   bun tools/openapi-types.ts --check    exit 1 if the committed file differs from a fresh one
// test/unit/openapi.test.ts runs the check.
import { readFileSync, writeFileSync } from "node:fs";
import { type OpenApiDocument, openApiDocument } from "../server/openapi.ts";
import { type CliSpec, MAIN, parseCommand, runCli } from "../shared/cli.ts";

export const WIRE_FILE = new URL("../packages/scan-client/src/wire.ts", import.meta.url).pathname;

type JsonSchema = {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  oneOf?: JsonSchema[];
  items?: JsonSchema;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  description?: string;
  format?: string;
  default?: unknown;
};

/** A schema the generator has no TypeScript for: named by where it is in the document. */
export class UnsupportedSchemaError extends Error {
  constructor(where: string, what: string) {
    super(`${where}: ${what} has no TypeScript form in tools/openapi-types.ts; extend the generator`);
    this.name = "UnsupportedSchemaError";
  }
}

// Keywords that only narrow a type TypeScript already states (checked by the edge, not the compiler).
const NARROWING = new Set([
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "minItems",
  "maxItems",
  "maxProperties",
  "pattern",
  "format",
  "propertyNames",
  "description",
  "default",
]);
const HANDLED = new Set([
  "$ref",
  "type",
  "enum",
  "const",
  "oneOf",
  "items",
  "properties",
  "required",
  "additionalProperties",
]);

const SCALAR: Record<string, string> = { string: "string", number: "number", integer: "number", boolean: "boolean" };

/** The TypeScript type of `schema` (`indent`: the depth of the lines of an inline object). */
function typeOf(schema: JsonSchema, where: string, indent: string): string {
  for (const key of Object.keys(schema)) {
    if (!NARROWING.has(key) && !HANDLED.has(key)) throw new UnsupportedSchemaError(where, `keyword "${key}"`);
  }
  if (schema.$ref) {
    const name = /^#\/components\/schemas\/(\w+)$/.exec(schema.$ref)?.[1];
    if (!name) throw new UnsupportedSchemaError(where, `$ref ${schema.$ref}`);
    return name;
  }
  if (schema.oneOf) return schema.oneOf.map((s, i) => typeOf(s, `${where}.oneOf[${i}]`, indent)).join(" | ");
  if ("const" in schema) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((x) => JSON.stringify(x)).join(" | ");
  if (Array.isArray(schema.type)) {
    return schema.type.map((t) => typeOf({ type: t }, `${where}.type`, indent)).join(" | ");
  }
  const type = schema.type;
  if (type && SCALAR[type]) return SCALAR[type] as string;
  if (type === "array") {
    if (!schema.items) throw new UnsupportedSchemaError(where, "an array without items");
    const item = typeOf(schema.items, `${where}.items`, indent);
    return /[ |]/.test(item) && !item.startsWith("{") ? `(${item})[]` : `${item}[]`;
  }
  if (type === "object") {
    if (schema.properties) return objectType(schema, where, indent);
    if (typeof schema.additionalProperties === "object") {
      return `Record<string, ${typeOf(schema.additionalProperties, `${where}.additionalProperties`, indent)}>`;
    }
  }
  throw new UnsupportedSchemaError(where, `a schema of type ${JSON.stringify(type)}`);
}

function objectType(schema: JsonSchema, where: string, indent: string): string {
  if (schema.additionalProperties !== false) {
    throw new UnsupportedSchemaError(where, "an object with both properties and other keys");
  }
  const required = new Set(schema.required ?? []);
  const inner = `${indent}  `;
  const lines = Object.entries(schema.properties ?? {}).map(([name, property]) => {
    const doc = property.description ? docComment(property.description, inner) : "";
    const optional = required.has(name) ? "" : "?";
    return `${doc}${inner}${name}${optional}: ${typeOf(property, `${where}.${name}`, inner)};`;
  });
  return `{\n${lines.join("\n")}\n${indent}}`;
}

/** A JSDoc comment of `text` at `indent`, wrapped at 100 characters (biome does not wrap comments). */
function docComment(text: string, indent: string): string {
  if (indent.length + text.length <= 100) return `${indent}/** ${text} */\n`;
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && indent.length + line.length + word.length > 100) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  return `${indent}/**\n${lines.map((l) => `${indent} * ${l}\n`).join("")}${indent} */\n`;
}

/** wire.ts's text for `doc`, formatted as biome formats it (so `biome check` leaves it as it is). */
export function wireTypes(doc: OpenApiDocument): string {
  const parts = [
    "// Generated by tools/openapi-types.ts from the edge's OpenAPI document (server/openapi.ts, served at",
    "// GET /openapi.json): the wire's types from the schemas the edge validates and answers with. Do not",
    "// edit: change the schemas and run `bun tools/openapi-types.ts` (a unit test fails while they differ).",
  ];
  for (const [name, schema] of Object.entries(doc.components.schemas) as [string, JsonSchema][]) {
    const where = `#/components/schemas/${name}`;
    parts.push("");
    if (schema.description) parts.push(docComment(schema.description, "").trimEnd());
    const type = typeOf(schema, where, "");
    parts.push(type.startsWith("{") ? `export interface ${name} ${type}` : `export type ${name} = ${type};`);
  }
  parts.push(
    "",
    "/** The contract version the edge serves (the document's info.version): what a client sends as schema_version. */",
    `export const SCHEMA_VERSION = ${Number(doc.info.version)};`,
    "",
    "/** One event as POST /v1/scans takes it (the SDK's name for the document's ScanEvent). */",
    "export type WireEvent = ScanEvent;",
    "",
    "/** The body of POST /v1/scans as JSON: one event or an array of them (NDJSON: one per line). */",
    "export type IngestBody = WireEvent | WireEvent[];",
    "",
  );
  return biomeFormat(parts.join("\n"));
}

function biomeFormat(text: string): string {
  const biome = new URL("../node_modules/.bin/biome", import.meta.url).pathname;
  const out = Bun.spawnSync([biome, "format", `--stdin-file-path=${WIRE_FILE}`], { stdin: Buffer.from(text) });
  if (out.exitCode !== 0) throw new Error(`biome format failed (${out.exitCode}): ${out.stderr.toString()}`);
  return out.stdout.toString();
}

export const OPENAPI_TYPES_CLI: CliSpec = {
  program: "bun tools/openapi-types.ts",
  description:
    "Writes packages/scan-client/src/wire.ts from the edge's OpenAPI document; --check: exit 1 if the file differs.",
  commands: {
    [MAIN]: {
      args: "",
      description: "writes (or checks) the file",
      options: {
        check: { type: "boolean", description: "only compare; exit 1 if it differs from a fresh generation" },
      },
    },
  },
};

if (import.meta.main) {
  await runCli(OPENAPI_TYPES_CLI, async (argv) => {
    const check = parseCommand(OPENAPI_TYPES_CLI, argv).values.check === true;
    const fresh = wireTypes(openApiDocument());
    if (!check) {
      writeFileSync(WIRE_FILE, fresh);
      console.log(`openapi-types: wrote ${WIRE_FILE}`);
      return 0;
    }
    const committed = readFileSync(WIRE_FILE, "utf8");
    if (committed === fresh) return 0;
    console.error(`openapi-types: ${WIRE_FILE} differs from the document's types: run bun tools/openapi-types.ts`);
    return 1;
  });
}
