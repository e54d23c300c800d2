// Pure batching: how many of the queue's oldest events go in the next request, by count and bytes,
// and the NDJSON body with this attempt's sent_at.
import type { QueuedEvent } from "./queue.ts";
import type { WireEvent } from "./wire.ts";

const encoder = new TextEncoder();

export interface Batch {
  events: QueuedEvent[];
  /** NDJSON, one event per line, each with `sentAt` as sent_at. */
  body: Uint8Array;
}

/**
 * The longest prefix of `queued` (at most maxEvents) whose NDJSON body fits maxBytes; always at
 * least one event (an event larger than maxBytes goes alone: the edge's 413 then says it is final).
 */
export function buildBatch(
  queued: readonly QueuedEvent[],
  sentAt: string,
  maxEvents: number,
  maxBytes: number,
  version: 1 | 2 = 2,
): Batch {
  const lines: string[] = [];
  const events: QueuedEvent[] = [];
  let bytes = 0;
  for (const q of queued) {
    if (events.length >= maxEvents) break;
    const wire: WireEvent = { ...q.event, sent_at: sentAt };
    if (version === 1) {
      // A version 1 edge refuses both fields by name (JSON drops undefined): the version 1 event.
      wire.sent_at = undefined;
      wire.schema_version = undefined;
    }
    const line = JSON.stringify(wire);
    const size = encoder.encode(line).byteLength + 1;
    if (events.length > 0 && bytes + size > maxBytes) break;
    lines.push(line);
    events.push(q);
    bytes += size;
  }
  return { events, body: encoder.encode(lines.length ? `${lines.join("\n")}\n` : "") };
}

/** gzip through CompressionStream (browsers, Bun, Node 18+). */
export async function gzip(body: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([body]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
