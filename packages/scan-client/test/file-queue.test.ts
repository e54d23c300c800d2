// Unit tests of the file journal: replay after a torn last line, acknowledgements, compaction,
// group commit, and the lock that keeps a second live process off the journal.
import { afterEach, expect, test } from "bun:test";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ScanClientError } from "../src/errors.ts";
import { FileQueue, replay } from "../src/queue/file.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function journalPath(): string {
  const dir = mkdtempSync(join(tmpdir(), "scan-client-"));
  dirs.push(dir);
  return join(dir, "q.journal");
}
const ev = (i: number) => ({
  event: { event_id: `id-${i}`, qr_id: `QR-${i}`, scanned_at: "2026-12-07T04:00:00.000Z", schema_version: 2 as const },
  queuedAt: 1_000 + i,
});

test("appended events survive a reopen, removed ones do not; seqs keep increasing", async () => {
  const path = journalPath();
  const a = await FileQueue.open(path);
  const added = await a.append([ev(1), ev(2), ev(3)]);
  expect(added.map((e) => e.seq)).toEqual([1, 2, 3]);
  await a.remove([2]);
  await a.close();
  const b = await FileQueue.open(path);
  expect((await b.peek(10)).map((e) => [e.seq, e.event.event_id, e.queuedAt])).toEqual([
    [1, "id-1", 1_001],
    [3, "id-3", 1_003],
  ]);
  expect(await b.lastSeq()).toBe(3);
  expect((await b.append([ev(4)]))[0]?.seq).toBe(4);
  expect(await b.size()).toBe(3);
  expect(await b.lastSeq()).toBe(4);
  await b.close();
});

test("a torn last line (killed mid-write) is ignored and cut off, so later appends stay readable", async () => {
  const path = journalPath();
  const a = await FileQueue.open(path);
  await a.append([ev(1), ev(2)]);
  await a.close();
  appendFileSync(path, '{"s":3,"q":1003,"e":{"event_id":"id-3","qr_');
  expect(replay(path).torn).toContain('"s":3');
  const b = await FileQueue.open(path);
  expect((await b.peek(10)).map((e) => e.event.event_id)).toEqual(["id-1", "id-2"]);
  await b.append([ev(4)]);
  await b.close();
  expect(readFileSync(path, "utf8")).not.toContain("id-3");
  const c = await FileQueue.open(path);
  expect((await c.peek(10)).map((e) => e.event.event_id)).toEqual(["id-1", "id-2", "id-4"]);
  await c.close();
});

test("a damaged line before the last one is an error naming the line, not silently skipped", async () => {
  const path = journalPath();
  writeFileSync(path, '{"s":1,"q":1,"e":{"event_id":"a","qr_id":"Q","scanned_at":"x"}}\ngarbage\n{"r":[1]}\n');
  const error = await FileQueue.open(path).catch((e) => e);
  expect(error).toBeInstanceOf(ScanClientError);
  expect(error.code).toBe("journal_corrupt");
  expect(error.message).toContain("line 2");
  expect(existsSync(`${path}.lock`)).toBe(false);
});

test("a journal that is mostly acknowledgements is compacted on open", async () => {
  const path = journalPath();
  const a = await FileQueue.open(path, { compactAfterRecords: 1_000_000 });
  const added = await a.append(Array.from({ length: 100 }, (_, i) => ev(i)));
  await a.remove(added.slice(0, 95).map((e) => e.seq));
  await a.close();
  expect(replay(path).records).toBe(101);
  const b = await FileQueue.open(path, { compactAfterRecords: 50 });
  await b.close();
  const after = replay(path);
  expect(after.records).toBe(5);
  expect(after.events.map((e) => e.seq)).toEqual([96, 97, 98, 99, 100]);
  expect(after.nextSeq).toBe(101);
});

test("a running queue compacts its journal too, keeping the live events and their seqs", async () => {
  const path = journalPath();
  const a = await FileQueue.open(path, { compactAfterRecords: 20 });
  const added = await a.append(Array.from({ length: 30 }, (_, i) => ev(i)));
  for (const e of added.slice(0, 25)) await a.remove([e.seq]);
  // 30 appends + 25 removals went past 20 records with 5 live: rewritten to the 5 live ones.
  expect(replay(path).records).toBeLessThan(20);
  await a.append([ev(99)]);
  await a.close();
  const after = replay(path);
  expect(after.events.map((e) => e.seq)).toEqual([26, 27, 28, 29, 30, 31]);
  expect(after.torn).toBeNull();
});

test("a failed compaction (the rewrite cannot write) keeps the journal working and is reported", async () => {
  const path = journalPath();
  mkdirSync(`${path}.tmp`); // the rewrite's tmp file cannot be created
  const errors: ScanClientError[] = [];
  const a = await FileQueue.open(path, { compactAfterRecords: 20, onError: (e) => errors.push(e) });
  const added = await a.append(Array.from({ length: 30 }, (_, i) => ev(i)));
  for (const e of added.slice(0, 25)) await a.remove([e.seq]);
  await a.append([ev(99)]);
  await a.close();
  expect(errors.map((e) => e.code)).toEqual(["journal_io"]);
  expect(errors[0]?.message).toContain("compaction failed");
  expect(replay(path).events.map((e) => e.seq)).toEqual([26, 27, 28, 29, 30, 31]);
}, 5_000);

test("concurrent appends are grouped into fewer writes, each resolving with its own seq", async () => {
  const path = journalPath();
  const a = await FileQueue.open(path);
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => a.append([ev(i)])));
  expect(results.map((r) => r[0]?.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
  expect(a.syncs).toBeLessThan(5);
  await a.close();
  expect(replay(path).events.length).toBe(50);
});

test("the lock: a second open while the owner lives fails; a dead owner's lock is taken over", async () => {
  const path = journalPath();
  const a = await FileQueue.open(path);
  const error = await FileQueue.open(path).catch((e) => e);
  expect(error.code).toBe("queue_locked");
  await a.close();
  // A lock left by a process killed with -9: its pid is gone.
  const dead = Bun.spawnSync(["true"]).pid;
  writeFileSync(`${path}.lock`, String(dead));
  const b = await FileQueue.open(path);
  expect(JSON.parse(readFileSync(`${path}.lock`, "utf8")).pid).toBe(process.pid);
  await b.close();
  expect(existsSync(`${path}.lock`)).toBe(false);
});

test("the lock: our own pid left by a previous incarnation is taken over; a live other process's is refused unless its pid was reused", async () => {
  const path = journalPath();
  // A container restart: the same pid (1 in Docker) wrote this lock in the previous incarnation.
  writeFileSync(`${path}.lock`, JSON.stringify({ pid: process.pid, start: "1", boot: "an-earlier-boot" }));
  const a = await FileQueue.open(path);
  expect((await FileQueue.open(path).catch((e) => e)).code).toBe("queue_locked"); // same process, twice
  await a.close();
  const other = Bun.spawn(["sleep", "30"]);
  try {
    const start = readFileSync(`/proc/${other.pid}/stat`, "utf8").split(") ")[1]?.split(" ")[19];
    writeFileSync(`${path}.lock`, JSON.stringify({ pid: other.pid, start, boot: null }));
    expect((await FileQueue.open(path).catch((e) => e)).code).toBe("queue_locked");
    // The same pid, started at another time: a reused pid, the recorded owner is dead.
    writeFileSync(`${path}.lock`, JSON.stringify({ pid: other.pid, start: "1", boot: null }));
    const b = await FileQueue.open(path);
    await b.close();
  } finally {
    other.kill("SIGKILL");
  }
});
