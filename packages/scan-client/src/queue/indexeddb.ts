// Skeleton: the "browser" helper writes the real IndexedDB queue; this keeps the typecheck passing.
import type { Queue, QueuedEvent } from "../queue.ts";

const notImplemented = () => new Error("IndexedDbQueue: not implemented");

export class IndexedDbQueue implements Queue {
  static async open(_name: string): Promise<IndexedDbQueue> {
    throw notImplemented();
  }
  async append(_events: Omit<QueuedEvent, "seq">[]): Promise<QueuedEvent[]> {
    throw notImplemented();
  }
  async peek(_max: number): Promise<QueuedEvent[]> {
    throw notImplemented();
  }
  async remove(_seqs: readonly number[]): Promise<void> {
    throw notImplemented();
  }
  async size(): Promise<number> {
    throw notImplemented();
  }
  async close(): Promise<void> {
    throw notImplemented();
  }
}
