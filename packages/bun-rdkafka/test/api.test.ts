// API hygiene: the public surface is the safe classes and types (never the raw FFI table or the
// loader), every public method and accessor has a doc comment and is exercised by a test of
// this package, and errors are the closed code list with its retriable flags.
import { describe, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import ts from "typescript";
import * as api from "../src/index.ts";
import * as probe from "../src/probe.ts";

const SRC = new URL("../src/", import.meta.url).pathname;
const TESTS = new URL("./", import.meta.url).pathname;

describe("the public surface", () => {
  test("the package exports the safe classes, helpers and error types, and nothing of the FFI layer", () => {
    expect(Object.keys(api).sort()).toEqual(
      [
        "ErrorCode",
        "KAFKA_ERRORS",
        "KafkaAdmin",
        "KafkaConsumer",
        "KafkaError",
        "KafkaProducer",
        "LibraryMismatchError",
        "LibraryNotFoundError",
        "QueueFullError",
        "errorFromCode",
        "librdkafkaVersion",
        "nextOffsets",
      ].sort(),
    );
    for (const internal of ["lib", "libc", "loadLibrdkafka", "LIBRARY_CANDIDATES", "createHandle"]) {
      expect(Object.keys(api)).not.toContain(internal);
      expect(Object.keys(probe)).not.toContain(internal);
    }
  });

  test("package.json exposes only the entry points: no deep import into src/", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    expect(Object.keys(pkg.exports).sort()).toEqual([".", "./package.json", "./probe"]);
    expect(pkg.engines.bun).toBe(">=1.1");
    expect(pkg.types).toBe("./src/index.ts");
  });

  test("librdkafkaVersion() is the loaded library's version string", () => {
    expect(api.librdkafkaVersion()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

interface Member {
  owner: string;
  name: string;
  documented: boolean;
}

/** Public members (constructor, methods, accessors) of the classes each source file exports. */
function publicMembers(): Member[] {
  const members: Member[] = [];
  for (const file of readdirSync(SRC).filter((f) => f.endsWith(".ts"))) {
    const source = ts.createSourceFile(file, readFileSync(SRC + file, "utf8"), ts.ScriptTarget.Latest, true);
    const documented = (node: ts.Node) => ts.getJSDocCommentsAndTags(node).length > 0;
    source.forEachChild((node) => {
      const exported =
        ts.canHaveModifiers(node) && ts.getModifiers(node)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
      if (!exported) return;
      if (ts.isFunctionDeclaration(node) && node.name) {
        members.push({ owner: file, name: node.name.text, documented: documented(node) });
      }
      if (!ts.isClassDeclaration(node) || !node.name) return;
      const owner = node.name.text;
      for (const m of node.members) {
        const isPrivate =
          (m.name && ts.isPrivateIdentifier(m.name)) ||
          ts.getModifiers(m as ts.HasModifiers)?.some((x) => x.kind === ts.SyntaxKind.PrivateKeyword);
        if (isPrivate) continue;
        if (ts.isConstructorDeclaration(m)) members.push({ owner, name: "constructor", documented: documented(m) });
        else if ((ts.isMethodDeclaration(m) || ts.isGetAccessor(m)) && m.name && ts.isIdentifier(m.name)) {
          members.push({ owner, name: m.name.text, documented: documented(m) });
        }
      }
    });
  }
  return members;
}

const PUBLIC_CLASSES = ["KafkaProducer", "KafkaConsumer", "KafkaAdmin"];
/** The functions the entry points export (other exported functions are internal to src/). */
const EXPORTED_FUNCTIONS = new Set(
  [...Object.entries(api), ...Object.entries(probe)].filter(([, v]) => typeof v === "function").map(([k]) => k),
);

describe("every public method", () => {
  const members = publicMembers();
  const testText = readdirSync(TESTS)
    .filter((f) => f.endsWith(".ts") && f !== "api.test.ts")
    .map((f) => readFileSync(TESTS + f, "utf8"))
    .join("\n");

  test("the scan finds the classes' members and the exported functions", () => {
    for (const cls of PUBLIC_CLASSES) expect(members.filter((m) => m.owner === cls).length).toBeGreaterThan(3);
    for (const f of ["nextOffsets", "librdkafkaVersion", "errorFromCode", "probeLayout"]) {
      expect(members.map((m) => m.name)).toContain(f);
    }
  });

  test("has a doc comment", () => {
    const undocumented = members
      .filter((m) => PUBLIC_CLASSES.includes(m.owner) || EXPORTED_FUNCTIONS.has(m.name))
      .filter((m) => !m.documented)
      .map((m) => `${m.owner}.${m.name}`);
    expect(undocumented).toEqual([]);
  });

  test("is called by a test of this package", () => {
    const untested = members
      .filter((m) => PUBLIC_CLASSES.includes(m.owner) && m.name !== "constructor")
      .filter((m) => !new RegExp(`\\.${m.name}\\b`).test(testText))
      .map((m) => `${m.owner}.${m.name}`);
    expect(untested).toEqual([]);
  });
});

describe("errors", () => {
  test("the codes are a closed list, each with its retriable flag", () => {
    expect(Object.fromEntries(Object.entries(api.KAFKA_ERRORS).map(([k, v]) => [k, v.retriable]))).toEqual({
      LIBRARY_NOT_FOUND: false,
      LIBRARY_MISMATCH: false,
      CONFIG: false,
      QUEUE_FULL: true,
      BROKER_UNAVAILABLE: true,
      TIMEOUT: true,
      UNKNOWN_TOPIC: false,
      REBALANCE: false,
      FATAL: false,
      CLOSED: false,
      KAFKA: false,
    });
  });

  test("errorFromCode maps librdkafka's codes onto the list and keeps the original code", () => {
    const E = api.ErrorCode;
    const cases: [number, string, boolean][] = [
      [E._QUEUE_FULL, "QUEUE_FULL", true],
      [E._TRANSPORT, "BROKER_UNAVAILABLE", true],
      [E._MSG_TIMED_OUT, "BROKER_UNAVAILABLE", true],
      [E.NOT_ENOUGH_REPLICAS, "BROKER_UNAVAILABLE", true],
      [E._TIMED_OUT, "TIMEOUT", true],
      [E.UNKNOWN_TOPIC_OR_PART, "UNKNOWN_TOPIC", false],
      [E.REBALANCE_IN_PROGRESS, "REBALANCE", false],
      [E.TOPIC_AUTHORIZATION_FAILED, "KAFKA", false],
    ];
    for (const [code, expected, retriable] of cases) {
      const error = api.errorFromCode(code, "context");
      expect(error).toBeInstanceOf(api.KafkaError);
      expect({ code: error.code, retriable: error.retriable, kafkaCode: error.kafkaCode }).toEqual({
        code: expected as api.KafkaErrorCode,
        retriable,
        kafkaCode: code,
      });
    }
    // Fatal wins over the code's own class.
    expect(api.errorFromCode(E._TRANSPORT, "x", true).code).toBe("FATAL");
    expect(api.errorFromCode(E._QUEUE_FULL, "x")).toBeInstanceOf(api.QueueFullError);
  });

  test("a LibraryMismatchError lists each difference", () => {
    const error = new api.LibraryMismatchError("rdkafka.h", ["MESSAGE.size: rdkafka.h says 80, the binding uses 72"]);
    expect(error.code).toBe("LIBRARY_MISMATCH");
    expect(error.retriable).toBe(false);
    expect(error.differences).toHaveLength(1);
    expect(error.message).toBe(
      "rdkafka.h differs from what bun-rdkafka was built against: MESSAGE.size: rdkafka.h says 80, the binding uses 72",
    );
  });
});
