// The IndexedDB queue's logic under fake-indexeddb (an in-memory IndexedDB, a fresh one per test):
// seq order and growth across reopens, peek's order and bound, remove, size, and that a failed
// transaction rejects append instead of reporting events as queued. That a queued event survives
// a real page reload is shown in Chromium by test/integration/scan-client-browser.test.ts.
import { describe, expect, test } from "bun:test";
import { IDBFactory } from "fake-indexeddb";
import { ScanClientError } from "../src/errors.ts";
import { type IdbFactory, IndexedDbQueue, IndexedDbQueueError } from "../src/queue/indexeddb.ts";
import type { WireEvent } from "../src/wire.ts";

const event = (i: number): WireEvent => ({
  event_id: `0190a000-0000-7000-8000-${String(i).padStart(12, "0")}`,
  qr_id: `gate-7:ticket-${i}`,
  scanned_at: new Date(Date.UTC(2026, 11, 7, 4, 0, i)).toISOString(),
  schema_version: 2,
  attributes: { n: i, ok: true },
});
const items = (from: number, count: number) =>
  Array.from({ length: count }, (_, k) => ({ event: event(from + k), queuedAt: 1_000 + from + k }));

/** A fresh in-memory IndexedDB. */
function freshFactory() {
  return { factory: new IDBFactory() as unknown as IdbFactory };
}

describe("IndexedDbQueue", () => {
  test("append assigns increasing seqs in order; peek returns the oldest first, at most max; size counts", async () => {
    const { factory } = freshFactory();
    const q = await IndexedDbQueue.open("scans", factory);
    const a = await q.append(items(0, 3));
    const b = await q.append(items(3, 2));
    const seqs = [...a, ...b].map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect(new Set(seqs).size).toBe(5);
    expect(a.map((e) => e.event)).toEqual([event(0), event(1), event(2)]);
    expect(await q.size()).toBe(5);
    expect(await q.lastSeq()).toBe(b.at(-1)?.seq as number);
    expect(await q.peek(2)).toEqual(a.slice(0, 2));
    expect(await q.peek(100)).toEqual([...a, ...b]);
    expect(await q.peek(0)).toEqual([]);
    expect(await q.append([])).toEqual([]);
    await q.close();
  });

  test("remove deletes exactly the given seqs, in one call; unknown seqs are ignored", async () => {
    const { factory } = freshFactory();
    const q = await IndexedDbQueue.open("scans", factory);
    const all = await q.append(items(0, 5));
    await q.remove([all[1]?.seq as number, all[3]?.seq as number, 9_999]);
    expect(await q.size()).toBe(3);
    expect((await q.peek(10)).map((e) => e.event.qr_id)).toEqual([
      "gate-7:ticket-0",
      "gate-7:ticket-2",
      "gate-7:ticket-4",
    ]);
    await q.remove([]);
    expect(await q.size()).toBe(3);
    await q.remove([all[4]?.seq as number]);
    expect(await q.lastSeq()).toBe(all[2]?.seq as number); // the newest left
    await q.remove([all[0]?.seq as number, all[2]?.seq as number]);
    expect(await q.lastSeq()).toBe(0);
    await q.close();
  });

  test("what was appended is there after close and reopen, and seq keeps growing even once the store was emptied", async () => {
    const { factory } = freshFactory();
    const q1 = await IndexedDbQueue.open("scans", factory);
    const first = await q1.append(items(0, 4));
    await q1.remove([first[0]?.seq as number]);
    await q1.close();

    const q2 = await IndexedDbQueue.open("scans", factory);
    expect(await q2.peek(10)).toEqual(first.slice(1));
    await q2.remove(first.slice(1).map((e) => e.seq));
    expect(await q2.size()).toBe(0);
    await q2.close();

    const q3 = await IndexedDbQueue.open("scans", factory);
    const [next] = await q3.append(items(10, 1));
    expect(next?.seq).toBeGreaterThan(first.at(-1)?.seq as number);
    // Another database name is another queue.
    const other = await IndexedDbQueue.open("other", factory);
    expect(await other.size()).toBe(0);
    await Promise.all([q3.close(), other.close()]);
  });

  test("a request failing mid-transaction aborts it: append rejects with a typed error and none of the batch is stored", async () => {
    const factory = new IDBFactory();
    // The same store plus a unique index on queuedAt, so the batch's third add fails (ConstraintError)
    // after the first two succeeded: only a queue that waits for "complete" reports the failure.
    await new Promise<void>((resolve, reject) => {
      const req = factory.open("scans", 1);
      req.onupgradeneeded = () =>
        req.result.createObjectStore("events", { keyPath: "seq", autoIncrement: true }).createIndex("q", "queuedAt", {
          unique: true,
        });
      req.onsuccess = () => {
        req.result.close();
        resolve();
      };
      req.onerror = () => reject(req.error);
    });
    const q = await IndexedDbQueue.open("scans", factory as unknown as IdbFactory);
    const batch = items(0, 4).map((e, i) => ({ ...e, queuedAt: i === 2 ? 1_000 : e.queuedAt }));
    const error = await q.append(batch).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(IndexedDbQueueError);
    expect(error).toMatchObject({ code: "journal_io", op: "append" });
    expect(String(error)).toMatch(/IndexedDB queue append: transaction aborted \(ConstraintError/);
    expect(await q.size()).toBe(0);
    await q.close();
  });

  test("a transaction that fails after every request succeeded (a failed commit) rejects append: it waits for complete", async () => {
    const factory = new IDBFactory();
    let failNextCommit = false;
    // The queue's connection, with its readwrite transactions aborted right after their last add()
    // succeeded: what a commit refused by the disk looks like to the page.
    const failing: IdbFactory = {
      open(name, version) {
        const req = factory.open(name, version);
        req.addEventListener("success", () => {
          const db = req.result;
          const transaction = db.transaction.bind(db);
          db.transaction = ((...args: Parameters<typeof transaction>) => {
            const tx = transaction(...args);
            if (!failNextCommit) return tx;
            const store = tx.objectStore("events");
            const add = store.add.bind(store);
            let pending = 0;
            store.add = (value: unknown) => {
              const r = add(value);
              pending++;
              r.addEventListener("success", () => {
                if (--pending === 0) tx.abort();
              });
              return r;
            };
            tx.objectStore = () => store;
            return tx;
          }) as typeof db.transaction;
        });
        return req as unknown as ReturnType<IdbFactory["open"]>;
      },
    };
    const q = await IndexedDbQueue.open("scans", failing);
    await q.append(items(0, 2));
    failNextCommit = true;
    await expect(q.append(items(2, 3))).rejects.toThrow(
      "IndexedDB queue append: transaction aborted (without an error: abort() or the connection closing)",
    );
    failNextCommit = false;
    expect((await q.peek(10)).map((e) => e.event.qr_id)).toEqual(["gate-7:ticket-0", "gate-7:ticket-1"]);
    await q.close();
  });

  test("a value IndexedDB cannot store rejects append; a closed queue rejects every call", async () => {
    const { factory } = freshFactory();
    const q = await IndexedDbQueue.open("scans", factory);
    const bad = { event: { ...event(0), attributes: { f: (() => 1) as unknown as string } }, queuedAt: 1 };
    await expect(q.append([bad])).rejects.toThrow(/IndexedDB queue append: .*DataCloneError/);
    expect(await q.size()).toBe(0);
    await q.close();
    await expect(q.size()).rejects.toThrow("IndexedDB queue size: the queue is closed");
    const closed = await q.append(items(0, 1)).catch((e: unknown) => e);
    expect(closed).toBeInstanceOf(IndexedDbQueueError);
    // The app handles it like any other SDK error.
    expect(closed).toBeInstanceOf(ScanClientError);
    expect((closed as ScanClientError).code).toBe("closed");
  });

  test("open without any IndexedDB says so", async () => {
    await expect(IndexedDbQueue.open("scans")).rejects.toThrow(
      "IndexedDB queue open: this environment has no indexedDB",
    );
  });
});
