// The layout probe against this machine's rdkafka.h, and against a doctored header; the generated
// error-code table checked against the same header and against librdkafka itself.
import { describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_HEADER, OUTPUT, generateErrorCodes } from "../scripts/gen-error-codes.ts";
import { ErrorCode } from "../src/error-codes.ts";
import { lib } from "../src/ffi.ts";
import { BUILT_AGAINST } from "../src/layout.ts";
import { PROGRAM, headerValues, layoutDifferences, probeLayout } from "../src/probe.ts";

describe("librdkafka ABI", () => {
  const values = headerValues();

  test("the probe printed every checked constant", () => {
    expect(values.size).toBe(PROGRAM.match(/P\("/g)?.length ?? -1);
    expect(values.size).toBeGreaterThan(50);
  });

  test("every struct offset and constant matches the installed rdkafka.h", () => {
    expect(layoutDifferences(values)).toEqual([]);
  });

  test("the installed header and library are the release the binding was built against", () => {
    const result = probeLayout();
    expect(result.headerVersion).toBe(BUILT_AGAINST.version);
    expect(result.libraryVersion).toBe(BUILT_AGAINST.version);
    expect(result.checked).toBe(values.size);
  });

  test("a header whose rd_kafka_message_t differs fails the probe, naming each moved field", () => {
    const dir = mkdtempSync(join(tmpdir(), "rdk-fake-h-"));
    try {
      mkdirSync(join(dir, "librdkafka"));
      cpSync(DEFAULT_HEADER, join(dir, "librdkafka", "rdkafka.h"));
      const h = join(dir, "librdkafka", "rdkafka.h");
      const text = readFileSync(h, "utf8");
      // One extra field before `payload`: every later offset of rd_kafka_message_t moves by 8.
      const doctored = text.replace(
        /(int32_t\s+partition;[^\n]*\n)(\s*void\s*\*payload;)/,
        "$1        void *extra;\n$2",
      );
      expect(doctored).not.toBe(text);
      writeFileSync(h, doctored);
      expect(() => probeLayout({ includeDir: dir })).toThrow(
        /MESSAGE\.payload: rdkafka\.h says 32, the binding uses 24/,
      );
      expect(() => probeLayout({ includeDir: dir })).toThrow(/differs from what bun-rdkafka was built against/);
      // A header of another release, same layout: the library no longer matches it.
      writeFileSync(h, text.replace(/#define RD_KAFKA_VERSION\s+0x[0-9a-f]+/, "#define RD_KAFKA_VERSION 0x020300ff"));
      expect(() => probeLayout({ includeDir: dir })).toThrow(
        /loaded librdkafka \(2\.0\.2\) differs .* is 2\.3\.0: the header and the library come from different installs/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("error-codes.ts is what the generator makes from the installed header", () => {
    expect(readFileSync(OUTPUT, "utf8")).toBe(generateErrorCodes(readFileSync(DEFAULT_HEADER, "utf8")));
    expect(ErrorCode._QUEUE_FULL).toBe(-184);
  });
});

describe("generated error codes", () => {
  test("every name maps to the code librdkafka itself gives that name", () => {
    const entries = Object.entries(ErrorCode);
    expect(entries.length).toBeGreaterThan(100);
    for (const [name, code] of entries) expect(String(lib().rd_kafka_err2name(code))).toBe(name);
  });
});
