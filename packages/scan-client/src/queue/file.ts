// A durable queue in one append-only journal file, for Bun and Node (node:fs only). Each line is a
// JSON record: {"s":seq,"q":queuedAt,"e":event} queues an event, {"r":[seq...]} removes some.
// append() resolves only after write + fsync; scan() calls arriving while one fsync runs are
// written together by the next (group commit). On open the journal is replayed: a torn last line
// (a kill -9 mid-write) is dropped and cut off, and when most records are removals the journal is
// rewritten with the live events only (tmp file, fsync, rename). A lock file holding the owner's
// pid, start time and boot keeps two live processes off one journal; a dead owner's lock (kill -9),
// a previous incarnation's (same pid after a container restart) or a reused pid's is taken over.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { ScanClientError } from "../errors.ts";
import type { Queue, QueuedEvent } from "../queue.ts";

const encoder = new TextEncoder();

interface Pending {
  bytes: Uint8Array;
  apply: () => void;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export interface FileQueueOptions {
  /** Rewrite the journal when it holds at least this many records and most are removals. Default 10,000. */
  compactAfterRecords?: number;
  /** A failed compaction (e.g. disk full): not fatal, the journal keeps growing. Default console.warn. */
  onError?: (error: ScanClientError) => void;
}

export class FileQueue implements Queue {
  private readonly live = new Map<number, QueuedEvent>();
  private nextSeq = 1;
  /** Records in the journal file (queued + removal lines), to decide compaction. */
  private records = 0;
  private pending: Pending[] = [];
  private writing: Promise<void> | null = null;
  private failed: unknown = null;
  private closed = false;
  /** After a failed compaction, the next one waits until the journal has this many records. */
  private compactAt = 0;
  /** fsyncs done so far: fewer than appends when concurrent scan() calls were grouped. */
  syncs = 0;

  private constructor(
    readonly path: string,
    private fh: FileHandle,
    private readonly lockPath: string,
    private readonly options: FileQueueOptions,
  ) {}

  static async open(path: string, options: FileQueueOptions = {}): Promise<FileQueue> {
    mkdirSync(dirname(path), { recursive: true });
    const lockPath = `${path}.lock`;
    takeLock(lockPath);
    try {
      const { events, nextSeq, records, torn } = replay(path);
      const compact =
        torn !== null || (records >= (options.compactAfterRecords ?? 10_000) && events.length * 2 < records);
      if (compact) {
        rewrite(path, events);
        syncDir(path);
      }
      const fh = await open(path, "a");
      const queue = new FileQueue(path, fh, lockPath, options);
      for (const e of events) queue.live.set(e.seq, e);
      queue.nextSeq = nextSeq;
      queue.records = compact ? events.length : records;
      return queue;
    } catch (error) {
      releaseLock(lockPath);
      throw error;
    }
  }

  append(events: Omit<QueuedEvent, "seq">[]): Promise<QueuedEvent[]> {
    const queued = events.map((e) => ({ seq: this.nextSeq++, event: e.event, queuedAt: e.queuedAt }));
    const text = queued.map((q) => `${JSON.stringify({ s: q.seq, q: q.queuedAt, e: q.event })}\n`).join("");
    return this.write(text, () => {
      for (const q of queued) this.live.set(q.seq, q);
      this.records += queued.length;
    }).then(() => queued);
  }

  async peek(max: number): Promise<QueuedEvent[]> {
    const out: QueuedEvent[] = [];
    for (const e of this.live.values()) {
      if (out.length >= max) break;
      out.push(e);
    }
    return out;
  }

  remove(seqs: readonly number[]): Promise<void> {
    const known = seqs.filter((s) => this.live.has(s));
    if (known.length === 0) return Promise.resolve();
    return this.write(`${JSON.stringify({ r: known })}\n`, () => {
      for (const s of known) this.live.delete(s);
      this.records += 1;
    });
  }

  async size(): Promise<number> {
    return this.live.size;
  }

  async lastSeq(): Promise<number> {
    let last = 0;
    for (const seq of this.live.keys()) last = seq; // insertion order is seq order
    return last;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writing;
    await this.fh.close();
    releaseLock(this.lockPath);
  }

  /** Queues `text` for the next group write; `apply` updates memory once it is on disk. */
  private write(text: string, apply: () => void): Promise<void> {
    if (this.closed) return Promise.reject(new ScanClientError("closed", `journal ${this.path} is closed`));
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.pending.push({ bytes: encoder.encode(text), apply, resolve, reject });
      this.writing ??= this.drain();
    });
  }

  private async drain(): Promise<void> {
    // Cleared in the same function, with no await between the loop's last check and here: a write()
    // arriving in between would otherwise find `writing` set and never be drained.
    try {
      while (this.pending.length > 0) {
        const group = this.pending;
        this.pending = [];
        try {
          if (this.failed) throw this.failed;
          const bytes = concat(group.map((p) => p.bytes));
          let offset = 0;
          while (offset < bytes.byteLength) {
            const { bytesWritten } = await this.fh.write(bytes, offset);
            offset += bytesWritten;
          }
          await this.fh.datasync();
          this.syncs++;
          for (const p of group) p.apply();
          for (const p of group) p.resolve();
        } catch (cause) {
          // A partial write may have left a torn line: nothing more is written until a reopen cuts it.
          this.failed ??= new ScanClientError("journal_io", `journal ${this.path}: write failed (${String(cause)})`, {
            cause,
          });
          for (const p of group) p.reject(this.failed);
        }
        if (this.pending.length === 0) await this.maybeCompact();
      }
    } finally {
      this.writing = null;
    }
  }

  /** Rewrites the journal with the live events when most of its records are removals. */
  private async maybeCompact(): Promise<void> {
    if (this.failed || this.records < (this.options.compactAfterRecords ?? 10_000)) return;
    if (this.live.size * 2 >= this.records || this.records < this.compactAt) return;
    try {
      rewrite(this.path, [...this.live.values()]);
    } catch (cause) {
      // Not renamed: the old journal is whole and stays open; try again once it has doubled.
      this.compactAt = this.records * 2;
      const error = new ScanClientError("journal_io", `journal ${this.path}: compaction failed (${String(cause)})`, {
        cause,
      });
      this.report(error);
      return;
    }
    // Renamed: appends must go to the new file (the old handle's inode is unlinked).
    const old = this.fh;
    try {
      syncDir(this.path);
      this.fh = await open(this.path, "a");
    } catch (cause) {
      this.failed = new ScanClientError(
        "journal_io",
        `journal ${this.path}: after compaction, sync/reopen failed (${String(cause)})`,
        {
          cause,
        },
      );
    }
    this.records = this.live.size;
    await old
      .close()
      .catch((cause) =>
        this.report(
          new ScanClientError("journal_io", `journal ${this.path}: closing the old journal failed`, { cause }),
        ),
      );
  }

  private report(error: ScanClientError): void {
    if (this.options.onError) this.options.onError(error);
    else console.warn(`scan-client: ${error.message}`);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Reads the journal: live events (oldest first), the next seq, record count, and a torn tail if any. */
export function replay(path: string): {
  events: QueuedEvent[];
  nextSeq: number;
  records: number;
  torn: string | null;
} {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return { events: [], nextSeq: 1, records: 0, torn: null };
    }
    throw error;
  }
  const live = new Map<number, QueuedEvent>();
  let nextSeq = 1;
  let records = 0;
  const end = text.lastIndexOf("\n") + 1;
  // Everything after the last newline was being written when the process died: never acknowledged.
  const torn = end < text.length ? text.slice(end) : null;
  const lines = text.slice(0, end).split("\n");
  lines.pop();
  for (const [i, line] of lines.entries()) {
    let record: { s?: number; q?: number; e?: QueuedEvent["event"]; r?: number[] };
    try {
      record = JSON.parse(line);
    } catch (cause) {
      throw new ScanClientError(
        "journal_corrupt",
        `journal ${path}: line ${i + 1} of ${lines.length} is not JSON (not a torn last line: the file was damaged); move it aside to start afresh`,
        { cause },
      );
    }
    records++;
    if (typeof record.s === "number" && record.e) {
      live.set(record.s, { seq: record.s, event: record.e, queuedAt: record.q ?? 0 });
      nextSeq = Math.max(nextSeq, record.s + 1);
    } else if (Array.isArray(record.r)) {
      for (const s of record.r) live.delete(s);
    } else {
      throw new ScanClientError("journal_corrupt", `journal ${path}: line ${i + 1} is not a journal record`);
    }
  }
  return { events: [...live.values()], nextSeq, records, torn };
}

/** Replaces the journal by one holding `events` only: tmp file, fsync, rename (syncDir then). */
function rewrite(path: string, events: readonly QueuedEvent[]): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, "w");
  try {
    const text = events.map((q) => `${JSON.stringify({ s: q.seq, q: q.queuedAt, e: q.event })}\n`).join("");
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** fsyncs the journal's directory, so that a rename survives a power cut. */
function syncDir(path: string): void {
  const dir = openSync(dirname(path), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** Lock paths this process holds: a second open of one journal in the same process is the error. */
const heldLocks = new Set<string>();

/** The owner recorded in a lock file: pid, its start time and the boot it ran in (null off Linux). */
interface LockOwner {
  pid: number;
  start: string | null;
  boot: string | null;
}

/**
 * Creates the lock file with our identity (O_EXCL). A lock is stale, and taken over, when its pid is
 * dead, or is ours but not in heldLocks (a previous incarnation: pid 1 again after a container
 * restart), or is live but started at another time or in another boot (the pid was reused).
 */
function takeLock(lockPath: string): void {
  const key = resolve(lockPath);
  if (heldLocks.has(key)) {
    throw new ScanClientError("queue_locked", `journal lock ${lockPath} is already held by this process`);
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, "wx");
      writeSync(fd, JSON.stringify(identity(process.pid)));
      closeSync(fd);
      heldLocks.add(key);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const owner = readOwner(lockPath);
    if (owner && owner.pid !== process.pid && alive(owner.pid) && sameIncarnation(owner)) {
      throw new ScanClientError(
        "queue_locked",
        `journal lock ${lockPath} is held by live process ${owner.pid}: two processes must not share one journal`,
      );
    }
    unlinkSync(lockPath);
  }
  throw new ScanClientError("queue_locked", `journal lock ${lockPath}: another process took it over meanwhile`);
}

function releaseLock(lockPath: string): void {
  heldLocks.delete(resolve(lockPath));
  unlinkSync(lockPath);
}

/** A lock file's owner: JSON, or a bare pid (older versions); null when unreadable (stale). */
function readOwner(lockPath: string): LockOwner | null {
  const text = readFileSync(lockPath, "utf8").trim();
  const parsed = /^\d+$/.test(text) ? { pid: Number(text) } : (parseJson(text) as Partial<LockOwner> | null);
  if (!parsed || !Number.isInteger(parsed.pid) || (parsed.pid as number) <= 0) return null;
  return { pid: parsed.pid as number, start: parsed.start ?? null, boot: parsed.boot ?? null };
}

function identity(pid: number): LockOwner {
  return { pid, start: startTime(pid), boot: bootId() };
}

/** False when the recorded start time or boot differs from the live process's (pid reuse). */
function sameIncarnation(owner: LockOwner): boolean {
  const now = identity(owner.pid);
  if (owner.boot !== null && now.boot !== null && owner.boot !== now.boot) return false;
  if (owner.start !== null && now.start !== null && owner.start !== now.start) return false;
  return true;
}

/** Linux: field 22 of /proc/<pid>/stat (start time in clock ticks since boot); null elsewhere. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name "(...)", which may hold spaces: field 3 is the first.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null; // no procfs (macOS, Windows): the pid alone decides
  }
}

function bootId(): string | null {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return null; // no procfs: the pid alone decides
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null; // a torn lock file (killed while writing it): stale
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
