// The durable queue the client sends from: a file journal in Bun/Node (./queue/file.ts), IndexedDB in
// browsers (./queue/indexeddb.ts). Events are stored without sent_at (set at each attempt).
import type { WireEvent } from "./wire.ts";

export interface QueuedEvent {
  seq: number;
  event: WireEvent;
  /** The device clock (ms) when it was queued. */
  queuedAt: number;
}

export interface Queue {
  /** Durably appends; resolves once on disk. Assigns seq (increasing). */
  append(events: Omit<QueuedEvent, "seq">[]): Promise<QueuedEvent[]>;
  /** The oldest `max` events not yet removed, oldest first. */
  peek(max: number): Promise<QueuedEvent[]>;
  /** Durably removes (acknowledged, refused or evicted). */
  remove(seqs: readonly number[]): Promise<void>;
  size(): Promise<number>;
  /** The newest queued event's seq, 0 when empty (optional: without it, open() reads the whole queue). */
  lastSeq?(): Promise<number>;
  close(): Promise<void>;
}

export function isQueue(value: unknown): value is Queue {
  const q = value as Partial<Queue> | null;
  return (
    typeof q === "object" &&
    q !== null &&
    typeof q.append === "function" &&
    typeof q.peek === "function" &&
    typeof q.remove === "function"
  );
}
