// An in-memory Queue for unit tests of the client's pure logic: it survives nothing.
import type { Queue, QueuedEvent } from "../queue.ts";

export class MemoryQueue implements Queue {
  private readonly events = new Map<number, QueuedEvent>();
  private nextSeq = 1;

  async append(events: Omit<QueuedEvent, "seq">[]): Promise<QueuedEvent[]> {
    return events.map((e) => {
      const queued = { ...e, seq: this.nextSeq++ };
      this.events.set(queued.seq, queued);
      return queued;
    });
  }

  async peek(max: number): Promise<QueuedEvent[]> {
    const out: QueuedEvent[] = [];
    for (const e of this.events.values()) {
      if (out.length >= max) break;
      out.push(e);
    }
    return out;
  }

  async remove(seqs: readonly number[]): Promise<void> {
    for (const s of seqs) this.events.delete(s);
  }

  async size(): Promise<number> {
    return this.events.size;
  }

  async lastSeq(): Promise<number> {
    let last = 0;
    for (const seq of this.events.keys()) last = seq;
    return last;
  }

  async close(): Promise<void> {}
}
