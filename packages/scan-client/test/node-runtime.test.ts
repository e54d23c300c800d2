// The package as Node imports it once installed: `bun run build` (the prepack script) writes dist/,
// and Node, importing "scan-client" from a node_modules that links the package, takes the exports'
// "default" condition (Node strips no types under node_modules). A Node process queues scans in a
// journal, sends them to a small node:http edge stand-in answering as the edge does, and a second
// client on the same journal finds nothing left.
import { expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const NODE_SCRIPT = `
import { createServer } from "node:http";
import { gunzipSync } from "node:zlib";
import { ScanClient } from "scan-client";
import { ScanClient as BrowserScanClient } from "scan-client/browser";
if (typeof BrowserScanClient.open !== "function") throw new Error("scan-client/browser exports no ScanClient");
const received = [];
const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let body = Buffer.concat(chunks);
    if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
    const events = body.toString("utf8").trimEnd().split("\\n").map((l) => JSON.parse(l));
    received.push(...events);
    res.writeHead(202, { "content-type": "application/json" });
    res.end(JSON.stringify({ accepted: events.length, rejected: [], request_id: "node" }));
  });
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const endpoint = "http://127.0.0.1:" + server.address().port;
const journal = process.argv[2];
const client = await ScanClient.open({ endpoint, queue: { path: journal }, batch: { maxWaitMs: 10 }, gzipAboveBytes: 200 });
for (let i = 0; i < 5; i++) await client.scan({ qr_id: "QR-" + i });
await client.flush({ timeoutMs: 5000 });
const m = client.metrics();
await client.close();
const again = await ScanClient.open({ endpoint, queue: { path: journal } });
const left = again.metrics().queued;
await again.close();
server.close();
console.log(JSON.stringify({ sent: m.sent, left, received: received.length, v2: received.every((e) => e.schema_version === 2 && e.sent_at) }));
`;

test("Node imports the installed package (the built default export): journal, send, reopen", async () => {
  const dir = mkdtempSync(join(tmpdir(), "scan-client-node-"));
  try {
    const pkg = join(import.meta.dir, "..");
    const build = Bun.spawnSync(["bun", "run", "build"], { cwd: pkg, stdout: "pipe", stderr: "pipe" });
    expect({ code: build.exitCode, err: build.exitCode === 0 ? "" : build.stderr.toString() }).toEqual({
      code: 0,
      err: "",
    });
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(pkg, join(dir, "node_modules", "scan-client"), "dir");
    writeFileSync(join(dir, "run.mjs"), NODE_SCRIPT);
    const proc = Bun.spawn(["node", join(dir, "run.mjs"), join(dir, "q.journal")], {
      cwd: dir,
      stdout: "pipe",
      stderr: "pipe",
    });
    const killer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
    const [code, out, err] = await Promise.all([
      proc.exited,
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    clearTimeout(killer);
    expect({ code, err }).toEqual({ code: 0, err: "" });
    expect(JSON.parse(out)).toEqual({ sent: 5, left: 0, received: 5, v2: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 20_000);
