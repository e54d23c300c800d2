// tools/images.ts refuses an image whose `buildah inspect` shows root, no HEALTHCHECK (the OCI
// format drops it), another stop signal or wrong labels: each violation is named.
import { describe, expect, test } from "bun:test";
import { type ImageConfig, imageProblems } from "../../tools/images/inspect.ts";

const want = { revision: "0123abcd", version: "0.1.0" };
const good: ImageConfig = {
  User: "10001:10001",
  Cmd: ["bun", "server/main.ts"],
  Env: [],
  WorkingDir: "/app",
  Healthcheck: { Test: ["CMD", "bun", "server/healthcheck.ts"] },
  StopSignal: "SIGTERM",
  Labels: {
    "org.opencontainers.image.source": "file://qrscan-ingest",
    "org.opencontainers.image.revision": "0123abcd",
    "org.opencontainers.image.version": "0.1.0",
  },
};

describe("imageProblems", () => {
  test("a production image as the Dockerfile builds it has none", () => {
    expect(imageProblems(good, want)).toEqual([]);
  });

  test.each([
    ["root by number", { User: "0:0" }, ["uid", "group"]],
    ["no USER (root)", { User: "" }, ["uid", "group"]],
    ["a user name (may resolve to root)", { User: "app:app" }, ["uid", "group"]],
    ["root's group", { User: "10001:0" }, ["group"]],
    ["no group (the passwd entry's, maybe 0)", { User: "10001" }, ["group"]],
    ["HEALTHCHECK dropped (OCI format)", { Healthcheck: undefined }, ["HEALTHCHECK is []: must be CMD …"]],
    ["another stop signal", { StopSignal: "SIGINT" }, ['STOPSIGNAL is "SIGINT": must be SIGTERM']],
    ["no CMD", { Cmd: [] }, ["no CMD"]],
    [
      "metrics exposed by the image",
      { Env: ["HOME=/tmp", "METRICS_HOST=0.0.0.0"] },
      ["ENV METRICS_HOST=0.0.0.0: an image keeps metrics on loopback; the deployment sets it"],
    ],
  ] as const)("%s is refused", (_what, change, problems) => {
    const c = { ...good, ...change } as ImageConfig;
    const expected = problems.map((p) =>
      p === "uid"
        ? `USER is "${c.User}": must be a numeric uid, not 0`
        : p === "group"
          ? `USER is "${c.User}": must name a numeric group, not 0`
          : p,
    );
    expect(imageProblems(c, want)).toEqual(expected);
  });

  test("labels must name the source and the revision and version that were built", () => {
    expect(imageProblems({ ...good, Labels: {} }, want)).toEqual([
      "label org.opencontainers.image.revision is undefined, expected 0123abcd",
      "label org.opencontainers.image.version is undefined, expected 0.1.0",
      "label org.opencontainers.image.source is missing",
    ]);
    expect(imageProblems(good, { ...want, revision: "ffff" })).toEqual([
      'label org.opencontainers.image.revision is "0123abcd", expected ffff',
    ]);
  });

  test("a supporting image (compose's pgbouncer) needs no HEALTHCHECK or labels, but still no root", () => {
    expect(imageProblems({ ...good, Healthcheck: undefined, Labels: {} }, null)).toEqual([]);
    expect(imageProblems({ ...good, User: "0:0" }, null)).toEqual([
      'USER is "0:0": must be a numeric uid, not 0',
      'USER is "0:0": must name a numeric group, not 0',
    ]);
  });
});
