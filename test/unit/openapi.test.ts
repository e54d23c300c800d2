// The OpenAPI document (server/openapi.ts): redocly lint finds nothing in it (and does find a
// broken one), its schemas are the valibot schemas' conversions, a schema the conversion cannot
// read fails it instead of vanishing, and the SDK's committed wire.ts is what the document
// generates. Its live answers: test/integration/openapi-live.test.ts.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import * as v from "valibot";
import { COMPONENT_SCHEMAS, type ComponentName, jsonSchemaOf, openApiDocument } from "../../server/openapi.ts";
import { ScanEventSchema } from "../../shared/event.ts";
import { lintOpenApi } from "../../tools/openapi-lint.ts";
import { UnsupportedSchemaError, WIRE_FILE, wireTypes } from "../../tools/openapi-types.ts";

const doc = openApiDocument();

describe("redocly lint", () => {
  test("the document has no error and no warning under redocly.yaml's rules", () => {
    const result = lintOpenApi(doc);
    expect(result.problems).toEqual([]);
    expect({ errors: result.errors, warnings: result.warnings }).toEqual({ errors: 0, warnings: 0 });
  });

  test("a broken document fails it (an answer without its description, a dangling $ref)", () => {
    const broken = structuredClone(doc);
    const accepted = broken.paths["/v1/scans"]?.post?.responses["202"] as { description?: string };
    accepted.description = undefined;
    (broken.components.schemas.IngestAnswer as { properties: Record<string, unknown> }).properties.rejected = {
      $ref: "#/components/schemas/NoSuchSchema",
    };
    const result = lintOpenApi(broken);
    expect(result.errors).toBeGreaterThanOrEqual(2);
    const rules = result.problems.map((p) => p.ruleId);
    expect(rules).toContain("struct");
    expect(rules).toContain("no-unresolved-refs");
  });
});

describe("the document's schemas", () => {
  test("each component is the conversion of its valibot schema (the same source, so they cannot drift)", () => {
    for (const [name, schema] of Object.entries(COMPONENT_SCHEMAS)) {
      // References to other components are $refs in the document: compare with those inlined.
      expect(inlineRefs(doc.components.schemas[name as ComponentName])).toEqual(jsonSchemaOf(schema));
    }
  });

  test("the event's timestamps are date-time and its attributes a flat object, as the edge validates", () => {
    const event = doc.components.schemas.ScanEvent as { properties: Record<string, Record<string, unknown>> };
    expect(event.properties.scanned_at).toEqual({ type: "string", format: "date-time" });
    // Contract version 2's fields (shared/event.ts).
    expect(event.properties.sent_at).toEqual({ type: "string", format: "date-time" });
    expect(event.properties.schema_version).toEqual({ enum: [1, 2], type: "number" });
    expect(event.properties.attributes?.additionalProperties).toEqual({ type: ["string", "number", "boolean"] });
    expect((doc.components.schemas.ScanEvent as { additionalProperties: boolean }).additionalProperties).toBe(false);
    // The document's required fields are the ones the edge refuses an event without.
    const required = (doc.components.schemas.ScanEvent as { required: string[] }).required;
    const issues = v.safeParse(ScanEventSchema, {}).issues ?? [];
    const refused = issues.filter((i) => i.message === "is required").map((i) => String(i.path?.[0]?.key));
    expect(refused.sort()).toEqual([...required].sort());
  });

  test("a schema the conversion cannot read fails it (never a silently empty schema)", () => {
    expect(() => jsonSchemaOf(v.custom<string>((x) => typeof x === "string"))).toThrow(/custom/);
    expect(() => jsonSchemaOf(v.pipe(v.string(), v.toUpperCase()))).toThrow(/to_upper_case/);
  });
});

describe("packages/scan-client/src/wire.ts", () => {
  test("is what tools/openapi-types.ts generates from the document (run it after changing a schema)", () => {
    expect(readFileSync(WIRE_FILE, "utf8")).toBe(wireTypes(doc));
  });

  test("names the SDK's types, and the generator refuses a schema it has no TypeScript for", () => {
    const text = wireTypes(doc);
    for (const name of ["WireEvent", "IngestAnswer", "ErrorAnswer", "FieldError", "Rejection"]) {
      expect(text).toMatch(new RegExp(`export (interface|type) ${name}\\b`));
    }
    const broken = structuredClone(doc);
    (broken.components.schemas as Record<string, unknown>).Odd = { type: "object", patternProperties: {} };
    expect(() => wireTypes(broken)).toThrow(UnsupportedSchemaError);
  });
});

/** `schema` with each #/components/schemas/X reference replaced by X's schema, recursively. */
function inlineRefs(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(inlineRefs);
  if (typeof schema !== "object" || schema === null) return schema;
  const ref = (schema as { $ref?: string }).$ref;
  if (ref) return inlineRefs(doc.components.schemas[ref.split("/").at(-1) as ComponentName]);
  return Object.fromEntries(Object.entries(schema).map(([k, x]) => [k, inlineRefs(x)]));
}
