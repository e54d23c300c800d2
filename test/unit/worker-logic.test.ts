// Pure worker logic: decoding to sink rows, database error classification, backoff, commit
// offsets, per-partition progress.
//
// Mutations these tests were checked against: each applied alone to a throwaway copy of the tree
// (git archive HEAD plus these tests), the test run there on a private stack and failing as shown;
// the shared tree was never edited.
//
// | mutation                                                   | failed test: message                                           |
// |------------------------------------------------------------|----------------------------------------------------------------|
// | retry.ts retries every error (the !retriable check removed)| a non-transient error is tried exactly once: expected the      |
// |                                                            | original error object, received a RetriesExhaustedError        |
import { describe, expect, test } from "bun:test";
import { type ConsumedMessage, nextOffsets } from "bun-rdkafka";
import { DbDeadlineError, classifyDbError, isTransientDbError, withDeadline } from "../../shared/db-errors.ts";
import { toScanRecord } from "../../shared/event.ts";
import { copyText, decode, isPoison } from "../../shared/scan-events.ts";
import { PartitionProgress } from "../../worker/progress.ts";
import { RetriesExhaustedError, backoffDelay, createRetrier } from "../../worker/retry.ts";

const message = (value: string | null, partition = 0, offset = 0): ConsumedMessage => ({
  topic: "scans",
  partition,
  offset,
  key: null,
  value: value === null ? null : new TextEncoder().encode(value),
  headers: null,
  timestamp: 0,
});

const event = {
  event_id: "9b2c4a57-1d7e-4a43-9a40-6f1f2e1d5b11",
  qr_id: "QR-1",
  scanned_at: "2026-11-25T10:00:00+02:00",
};

describe("decode", () => {
  test("a valid record becomes one COPY line in column order, timestamps in canonical UTC, uuid lower-case, and its UTC day", () => {
    const rec = toScanRecord(
      { ...event, event_id: event.event_id.toUpperCase(), scanner_id: "tab\there", attributes: { a: "x\\y" } },
      "2026-11-25T08:00:01Z",
      "10.0.0.7",
    );
    const row = decode(message(JSON.stringify(rec), 3, 42));
    if (isPoison(row)) throw new Error(row.error);
    expect(row.day).toBe("2026-11-25");
    expect(row.line).toBe(
      `${event.event_id}\t2026-11-25T08:00:00.000000Z\tQR-1\ttab\\there\t\\N\t\\N\t\\N\t\\N\t{"a":"x\\\\\\\\y"}\t10.0.0.7\t2026-11-25T08:00:01.000000Z\t2\t3\t42\t\\N\t2026-11-25T08:00:00.000000Z\n`,
    );
  });

  test("the partition day is UTC, not the offset's local day", () => {
    const rec = toScanRecord({ ...event, scanned_at: "2026-11-25T01:30:00+05:00" }, "2026-11-25T00:00:00Z", null);
    const row = decode(message(JSON.stringify(rec)));
    expect(isPoison(row) ? row.error : row.day).toBe("2026-11-24");
  });

  test("undecodable, empty and schema-violating messages are poison with a reason", () => {
    const reasons = [
      message(null),
      message("{oops"),
      message(JSON.stringify({ ...event })), // missing received_at, client_ip, schema_version
      message(JSON.stringify(toScanRecord({ ...event, qr_id: "no spaces" }, "2026-11-25T00:00:00Z", null))),
      message(JSON.stringify({ ...toScanRecord(event, "2026-11-25T00:00:00Z", null), client_ip: "fe80::1%eth0" })),
    ].map((m) => {
      const d = decode(m);
      return isPoison(d) ? d.error : "ok";
    });
    expect(reasons[0]).toBe("empty message value");
    expect(reasons[1]).toMatch(/^undecodable payload/);
    expect(reasons[2]).toMatch(/^schema violation: received_at/);
    expect(reasons[3]).toMatch(/^schema violation: qr_id/);
    expect(reasons[4]).toMatch(/^schema violation: client_ip/);
  });

  test("COPY text escaping covers backslash, tab, newline and carriage return", () => {
    expect(copyText("a\\b\tc\nd\re")).toBe("a\\\\b\\tc\\nd\\re");
    expect(copyText("plain")).toBe("plain");
  });
});

describe("retry", () => {
  const err = (code: string, message = "x") => Object.assign(new Error(message), { code });
  test("transient: serialization, deadlock, connection classes, pgbouncer conditions", () => {
    for (const c of [
      "40001",
      "40P01",
      "08006",
      "08P01",
      "57P01",
      "57P03",
      "53300",
      "CONNECTION_CLOSED",
      "ECONNREFUSED",
    ]) {
      expect(isTransientDbError(err(c))).toBe(true);
    }
    expect(isTransientDbError(new Error("query_wait_timeout"))).toBe(true);
  });
  test("not transient: data, constraint and schema errors", () => {
    for (const c of ["22P02", "23502", "42P01", "42703"]) expect(isTransientDbError(err(c))).toBe(false);
    expect(isTransientDbError("a string")).toBe(false);
  });
  test("one closed classification: data (22, 23), transient (incl. 57014 statement timeout), fatal", () => {
    const table: [unknown, string][] = [
      [err("22P02"), "data"],
      [err("22008"), "data"],
      [err("23505"), "data"],
      [err("23514"), "data"],
      [err("57014", "canceling statement due to statement timeout"), "transient"],
      [err("40001"), "transient"],
      [err("08006"), "transient"],
      [err("ECONNRESET"), "transient"],
      [new Error("ERROR: query_timeout"), "transient"],
      [err("42P01"), "fatal"],
      [err("P0001"), "fatal"],
      [err("XX000"), "fatal"],
      [new DbDeadlineError("write batch", 10), "fatal"],
      [Object.assign(new DbDeadlineError("write batch", 10), { code: "08006" }), "fatal"],
      ["a string", "fatal"],
    ];
    expect(table.map(([e]) => classifyDbError(e) as string)).toEqual(table.map(([, c]) => c));
  });
  test("a call past its deadline rejects with DbDeadlineError; one within it settles normally", async () => {
    const started = performance.now();
    const never = new Promise<never>(() => {});
    await expect(withDeadline("write batch", 50, never)).rejects.toBeInstanceOf(DbDeadlineError);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(await withDeadline("ok", 1_000, Promise.resolve(7))).toBe(7);
  });
  test("full jitter stays within [0, min(cap, base * 2^attempt)]", () => {
    expect(backoffDelay(0, { baseMs: 100, capMs: 5_000 }, () => 0.999)).toBe(99);
    expect(backoffDelay(3, { baseMs: 100, capMs: 5_000 }, () => 0.5)).toBe(400);
    expect(backoffDelay(20, { baseMs: 100, capMs: 5_000 }, () => 0.999)).toBe(4_995);
    expect(backoffDelay(5, { baseMs: 100, capMs: 5_000 }, () => 0)).toBe(0);
  });
  test("the retrier retries transient failures until one succeeds, calling the pause/resume hooks once", async () => {
    const calls: string[] = [];
    const retry = createRetrier({
      baseMs: 1,
      capMs: 2,
      maxMs: 200,
      onStartRetrying: () => calls.push("pause"),
      onStopRetrying: () => calls.push("resume"),
    });
    let n = 0;
    expect(await retry("op", async () => (++n < 3 ? Promise.reject(err("40001")) : "done"))).toBe("done");
    expect(n).toBe(3);
    expect(calls).toEqual(["pause", "resume"]);
  });
  test("a non-transient error is tried exactly once and rethrown as the same object, without pausing", async () => {
    const calls: string[] = [];
    const retry = createRetrier({
      baseMs: 1,
      capMs: 2,
      maxMs: 200,
      onStartRetrying: () => calls.push("pause"),
      onStopRetrying: () => calls.push("resume"),
    });
    const original = err("42P01", "relation missing");
    let attempts = 0;
    const started = performance.now();
    const caught = await retry("op", async () => {
      attempts++;
      throw original;
    }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(caught).toBe(original);
    expect(caught).not.toBeInstanceOf(RetriesExhaustedError);
    expect(attempts).toBe(1);
    expect(calls).toEqual([]);
    expect(performance.now() - started).toBeLessThan(5_000);
  });
  test("a transient error past the budget: RetriesExhaustedError carrying the last error, after several attempts", async () => {
    const calls: string[] = [];
    const retry = createRetrier({
      baseMs: 1,
      capMs: 2,
      maxMs: 200,
      onStartRetrying: () => calls.push("pause"),
      onStopRetrying: () => calls.push("resume"),
    });
    let attempts = 0;
    let last: unknown = null;
    const started = performance.now();
    const caught = await retry("op", async () => {
      attempts++;
      last = err("08006", "down");
      throw last;
    }).then(
      () => null,
      (e: unknown) => e,
    );
    const elapsed = performance.now() - started;
    expect(caught).toBeInstanceOf(RetriesExhaustedError);
    expect((caught as RetriesExhaustedError).cause).toBe(last);
    expect((caught as Error).message).toMatch(/^op: still failing after \d+ ms of retries: down$/);
    // Backoff of at most 2 ms within a 200 ms budget: many attempts, and it gave up after the budget.
    expect(attempts).toBeGreaterThan(2);
    expect(elapsed).toBeGreaterThanOrEqual(190);
    expect(elapsed).toBeLessThan(5_000);
    expect(calls).toEqual(["pause", "resume"]);
  });
});

test("commit offsets: highest offset + 1 per partition", () => {
  const ms = [message("a", 0, 5), message("b", 1, 9), message("c", 0, 7), message("d", 0, 6)];
  expect(nextOffsets(ms)).toEqual([
    { topic: "scans", partition: 0, offset: 8 },
    { topic: "scans", partition: 1, offset: 10 },
  ]);
});

describe("partition progress", () => {
  const tp = (partition: number) => ({ topic: "scans", partition });
  const at = (partition: number, offset: number) => ({ topic: "scans", partition, offset });

  test("pending work with no commit past the stall timeout is stalled; a commit clears it", () => {
    let now = 1_000_000;
    const p = new PartitionProgress("scans", 5_000, () => now);
    p.assigned([tp(0), tp(1), { topic: "other", partition: 2 }]);
    now += 60_000; // idle for a minute: no pending work, not stalled
    expect(p.stalled()).toEqual([]);
    p.polled([at(0, 10)]);
    now += 4_000;
    expect(p.stalled()).toEqual([]);
    now += 2_000;
    expect(p.stalled()).toEqual([0]);
    expect(p.view()).toEqual([
      { partition: 0, pending: true, commitAgeSeconds: 66, stalled: true },
      { partition: 1, pending: false, commitAgeSeconds: 66, stalled: false },
    ]);
    p.committed([at(0, 10)]);
    expect(p.stalled()).toEqual([]);
    expect(p.view()[0]).toEqual({ partition: 0, pending: false, commitAgeSeconds: 0, stalled: false });
  });

  test("steady commits with work always in flight are not a stall; a revoked partition is forgotten", () => {
    let now = 0;
    const p = new PartitionProgress("scans", 5_000, () => now);
    p.assigned([tp(0)]);
    for (let i = 1; i <= 10; i++) {
      p.polled([at(0, i * 100 + 100)]);
      now += 3_000;
      p.committed([at(0, i * 100)]);
      expect(p.stalled()).toEqual([]);
    }
    now += 6_000;
    expect(p.stalled()).toEqual([0]);
    p.revoked([tp(0)]);
    expect(p.view()).toEqual([]);
  });
});
