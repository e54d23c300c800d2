// The package outside this repository: `bun pm pack` makes the tarball, a throwaway project in a
// temp dir installs it from that file, and the produce/consume/lag examples run from there against
// the local stack. The layout probe, run from the installed copy, passes here and fails with a
// clear message against a doctored rdkafka.h or a librdkafka of another release.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTopic } from "../../../test/helpers/fixtures.ts";
import { ensureStack } from "../../../test/helpers/stack.ts";
import { runToEnd } from "../../../tools/harness.ts";
import pkg from "../package.json";
import { produceConsumeLag } from "./run-examples.ts";

const PACKAGE_DIR = new URL("..", import.meta.url).pathname;
const DEFAULT_HEADER = "/usr/include/librdkafka/rdkafka.h";
let work: string;
let project: string;
let tarball: string;

async function ok(cmd: string[], cwd: string, env: Record<string, string> = {}) {
  const r = await runToEnd({ cmd, cwd, env, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} (in ${cwd}) exited with ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

await ensureStack();

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "rdk-pack-"));
  await ok(["bun", "pm", "pack", "--destination", work, "--quiet"], PACKAGE_DIR);
  tarball = join(work, `${pkg.name}-${pkg.version}.tgz`);
  project = join(work, "app");
  mkdirSync(project);
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "rdk-app", private: true, type: "module", dependencies: { [pkg.name]: `file:${tarball}` } }),
  );
  await ok(["bun", "install"], project);
  // The examples as a user would copy them from the installed package.
  for (const f of ["produce.ts", "consume.ts", "lag.ts"]) {
    cpSync(join(project, "node_modules", pkg.name, "examples", f), join(project, f));
  }
}, 240_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("the packed tarball", () => {
  test("holds the sources, README, CHANGELOG and examples, and no tests or build scripts", async () => {
    const listing = (await ok(["tar", "-tzf", tarball], work)).stdout.split("\n");
    for (const f of [
      "src/index.ts",
      "src/ffi.ts",
      "src/probe-cli.ts",
      "README.md",
      "CHANGELOG.md",
      "examples/produce.ts",
    ]) {
      expect(listing).toContain(`package/${f}`);
    }
    expect(listing.filter((f) => f.startsWith("package/test/") || f.startsWith("package/scripts/"))).toEqual([]);
  });

  test("installed in a throwaway project, `bun-rdkafka` resolves to the installed copy", async () => {
    const r = await ok(["bun", "-e", 'console.log(Bun.resolveSync("bun-rdkafka", process.cwd()))'], project);
    expect(r.stdout.trim()).toBe(join(project, "node_modules", pkg.name, "src", "index.ts"));
    // The exports map keeps the FFI layer out of reach: a deep import does not resolve.
    const deep = await runToEnd({
      cmd: ["bun", "-e", 'Bun.resolveSync("bun-rdkafka/src/ffi.ts", process.cwd())'],
      cwd: project,
    });
    expect(deep.code).not.toBe(0);
    expect(deep.stderr).toContain("bun-rdkafka/src/ffi.ts");
  });

  test("the produce/consume/lag examples run from the installed package against the broker", async () => {
    const topic = await createTopic(3);
    const { produced, consumed, lag } = await produceConsumeLag(project, topic);
    expect(produced).toContain("delivered 100 more");
    expect(consumed).toContain("consumed and committed 101 messages");
    expect(lag).toContain("total lag 0");
  });

  test("the installed layout probe passes against this machine's rdkafka.h and librdkafka", async () => {
    const r = await ok(["bun", "node_modules/.bin/bun-rdkafka-probe"], project);
    expect(r.stdout).toMatch(/rdkafka\.h 2\.0\.2 and librdkafka 2\.0\.2 match the binding \(\d+ values checked\)/);
  });

  test("a doctored rdkafka.h fails the installed probe, naming the field", async () => {
    const include = join(work, "include");
    mkdirSync(join(include, "librdkafka"), { recursive: true });
    const text = readFileSync(DEFAULT_HEADER, "utf8");
    // rd_kafka_topic_partition_t with an extra pointer before `offset`.
    const doctored = text.replace(
      /(typedef struct rd_kafka_topic_partition_s \{[\s\S]*?int32_t\s+partition;[^\n]*\n)/,
      "$1        void *extra;\n",
    );
    expect(doctored).not.toBe(text);
    writeFileSync(join(include, "librdkafka", "rdkafka.h"), doctored);
    const r = await runToEnd({ cmd: ["bun", "node_modules/.bin/bun-rdkafka-probe", include], cwd: project });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("differs from what bun-rdkafka was built against");
    expect(r.stderr).toMatch(/TOPIC_PARTITION\.offset: rdkafka\.h says 24, the binding uses 16/);
  });

  test("a librdkafka of another release is refused on load, with the version found and the fix", async () => {
    // A library that reports 1.0.0 and forwards everything else to the real librdkafka.
    const dir = join(work, "fake-lib");
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, "fake.c"),
      'int rd_kafka_version(void) { return 0x010000ff; }\nconst char *rd_kafka_version_str(void) { return "1.0.0"; }\n',
    );
    const so = join(dir, "librdkafka-fake.so");
    await ok(["cc", "-shared", "-fPIC", join(dir, "fake.c"), "-o", so, "-Wl,--no-as-needed", "-lrdkafka"], dir);
    const r = await runToEnd({
      cmd: ["bun", "produce.ts"],
      cwd: project,
      env: { LIBRDKAFKA_PATH: so, KAFKA_BROKERS: "127.0.0.1:1" },
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`the librdkafka loaded from ${so} differs from what bun-rdkafka was built against`);
    expect(r.stderr).toContain("it is 1.0.0, the binding's struct layouts are from 2.0.2");
    // The real library at the same variable works: the refusal is the version, not the lookup.
    const real = await runToEnd({
      cmd: ["bun", "-e", 'import { librdkafkaVersion } from "bun-rdkafka"; console.log(librdkafkaVersion())'],
      cwd: project,
      env: { LIBRDKAFKA_PATH: "librdkafka.so.1" },
    });
    expect(real.stdout.trim()).toBe("2.0.2");
  });
});
