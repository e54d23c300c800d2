// The browser's durable queue: one IndexedDB object store whose autoIncrement key is the event's
// seq. append() resolves only on the readwrite transaction's "complete" event (durability "strict"
// where the browser supports it: flushed to disk, not just to the OS), so a scan the app was told
// is queued survives a page reload, a tab kill or a browser crash. The key generator never hands
// out a key twice, so seq keeps increasing across reopens even when the store was emptied.
// Pure IndexedDB API (no library), so the same code runs under fake-indexeddb in unit tests.
import { ScanClientError } from "../errors.ts";
import type { Queue, QueuedEvent } from "../queue.ts";

// The few IndexedDB types used here, declared by hand: the project's tsconfig has no DOM lib (it
// is a Bun project, and lib.dom's fetch/Headers types clash with Bun's).
interface IdbRequest<T> {
  result: T;
  error: { name: string; message: string } | null;
  onsuccess: ((this: unknown, ev: unknown) => unknown) | null;
  onerror: ((this: unknown, ev: unknown) => unknown) | null;
}
interface IdbOpenRequest extends IdbRequest<IdbDatabase> {
  onupgradeneeded: ((this: unknown, ev: unknown) => unknown) | null;
  onblocked: ((this: unknown, ev: unknown) => unknown) | null;
}
interface IdbCursorWithValue {
  value: unknown;
  continue(): void;
}
interface IdbObjectStore {
  add(value: unknown): IdbRequest<unknown>;
  delete(key: number): IdbRequest<undefined>;
  count(): IdbRequest<number>;
  openCursor(query?: null, direction?: "next" | "prev"): IdbRequest<IdbCursorWithValue | null>;
}
interface IdbTransaction {
  objectStore(name: string): IdbObjectStore;
  error: { name: string; message: string } | null;
  oncomplete: ((this: unknown, ev: unknown) => unknown) | null;
  onerror: ((this: unknown, ev: unknown) => unknown) | null;
  onabort: ((this: unknown, ev: unknown) => unknown) | null;
}
interface IdbDatabase {
  objectStoreNames: { contains(name: string): boolean };
  createObjectStore(name: string, options: { keyPath: string; autoIncrement: boolean }): IdbObjectStore;
  transaction(
    store: string,
    mode: "readonly" | "readwrite",
    options?: { durability?: "strict" | "relaxed" | "default" },
  ): IdbTransaction;
  close(): void;
  onversionchange: ((this: unknown, ev: unknown) => unknown) | null;
}
/** The IndexedDB factory (`globalThis.indexedDB`, or fake-indexeddb's in tests). */
export interface IdbFactory {
  open(name: string, version?: number): IdbOpenRequest;
}

/**
 * An IndexedDB operation failed: `op` says which, `cause` is the DOMException (QuotaExceededError…).
 * A ScanClientError like the file journal's: "journal_io", or "closed" for a call on a closed queue.
 */
export class IndexedDbQueueError extends ScanClientError {
  override name = "IndexedDbQueueError";
  readonly op: string;
  constructor(op: string, message: string, options: { cause?: unknown; closed?: boolean } = {}) {
    super(options.closed ? "closed" : "journal_io", `IndexedDB queue ${op}: ${message}`, { cause: options.cause });
    this.op = op;
  }
}

const STORE = "events";
const VERSION = 1;

/** What is stored per event; seq is filled in by the key generator (keyPath "seq"). */
type Stored = QueuedEvent;

const describe = (error: { name: string; message: string } | null | undefined) =>
  error ? `${error.name}: ${error.message}` : "without an error: abort() or the connection closing";

export class IndexedDbQueue implements Queue {
  readonly #db: IdbDatabase;
  #closed = false;

  private constructor(db: IdbDatabase) {
    this.#db = db;
    // Another tab deleting or upgrading this database: let it, this handle is unusable afterwards.
    db.onversionchange = () => {
      this.#closed = true;
      db.close();
    };
  }

  /** Opens (creating on first use) the database `name`; `factory` defaults to the browser's indexedDB. */
  static open(name: string, factory?: IdbFactory): Promise<IndexedDbQueue> {
    const idb = factory ?? (globalThis as { indexedDB?: IdbFactory }).indexedDB;
    if (!idb) return Promise.reject(new IndexedDbQueueError("open", "this environment has no indexedDB"));
    return new Promise((resolve, reject) => {
      const req = idb.open(name, VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains(STORE)) db.createObjectStore(STORE, { keyPath: "seq", autoIncrement: true });
      };
      req.onsuccess = () => resolve(new IndexedDbQueue(req.result));
      req.onerror = () =>
        reject(new IndexedDbQueueError("open", `database "${name}": ${describe(req.error)}`, { cause: req.error }));
      req.onblocked = () =>
        reject(
          new IndexedDbQueueError("open", `database "${name}" is blocked by another tab holding an older version`),
        );
    });
  }

  /** Runs `work` in one transaction; resolves with its result once the transaction has completed. */
  #transact<T>(op: string, mode: "readonly" | "readwrite", work: (store: IdbObjectStore) => () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new IndexedDbQueueError(op, "the queue is closed", { closed: true }));
    return new Promise((resolve, reject) => {
      let tx: IdbTransaction;
      let result: () => T;
      try {
        tx = this.#db.transaction(STORE, mode, mode === "readwrite" ? { durability: "strict" } : undefined);
        result = work(tx.objectStore(STORE));
      } catch (error) {
        // Synchronous: a closed connection, or a value that cannot be cloned (DataCloneError).
        reject(new IndexedDbQueueError(op, String(error), { cause: error }));
        return;
      }
      tx.oncomplete = () => resolve(result());
      // A failed request aborts the transaction: report once, from onabort, with the first error.
      tx.onerror = null;
      tx.onabort = () =>
        reject(new IndexedDbQueueError(op, `transaction aborted (${describe(tx.error)})`, { cause: tx.error }));
    });
  }

  append(events: Omit<QueuedEvent, "seq">[]): Promise<QueuedEvent[]> {
    if (events.length === 0) return Promise.resolve([]);
    return this.#transact("append", "readwrite", (store) => {
      const stored: QueuedEvent[] = [];
      for (const e of events) {
        const value = { event: e.event, queuedAt: e.queuedAt } as Omit<Stored, "seq">;
        const req = store.add(value);
        req.onsuccess = () => stored.push({ seq: req.result as number, event: e.event, queuedAt: e.queuedAt });
      }
      // Requests of one transaction succeed in order, so `stored` is in seq order.
      return () => stored;
    });
  }

  peek(max: number): Promise<QueuedEvent[]> {
    if (max <= 0) return Promise.resolve([]);
    return this.#transact("peek", "readonly", (store) => {
      const out: QueuedEvent[] = [];
      const req = store.openCursor();
      req.onsuccess = () => {
        const cursor = req.result;
        if (!cursor) return;
        out.push(cursor.value as Stored);
        if (out.length < max) cursor.continue();
      };
      return () => out;
    });
  }

  remove(seqs: readonly number[]): Promise<void> {
    if (seqs.length === 0) return Promise.resolve();
    return this.#transact("remove", "readwrite", (store) => {
      for (const seq of seqs) store.delete(seq);
      return () => undefined;
    });
  }

  size(): Promise<number> {
    return this.#transact("size", "readonly", (store) => {
      const req = store.count();
      return () => req.result;
    });
  }

  /** The newest event's seq, read with one step of a reverse cursor (not the whole store). */
  lastSeq(): Promise<number> {
    return this.#transact("lastSeq", "readonly", (store) => {
      let last = 0;
      const req = store.openCursor(null, "prev");
      req.onsuccess = () => {
        if (req.result) last = (req.result.value as Stored).seq;
      };
      return () => last;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Pending transactions still complete; the connection closes after them.
    this.#db.close();
  }
}
