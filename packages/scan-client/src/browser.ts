// Entry point for browsers: ScanClient with an IndexedDB queue as its default ({ name } or
// "scan-client"). No node:* import reaches this graph.
import { ScanClient as BaseScanClient, type QueueFactory } from "./client.ts";
import { isQueue } from "./queue.ts";
import { IndexedDbQueue } from "./queue/indexeddb.ts";

export class ScanClient extends BaseScanClient {
  protected static override queueFactory: QueueFactory = async (option) => {
    if (isQueue(option)) return option;
    const name = option && "name" in option ? option.name : "scan-client";
    return IndexedDbQueue.open(name);
  };
}

export type {
  QueueOption,
  RefusedEvent,
  ScanClientMetrics,
  ScanClientOptions,
  ScanInput,
} from "./client.ts";
export { QueueFullError, ScanClientError, type ScanClientErrorCode } from "./errors.ts";
export type { Queue, QueuedEvent } from "./queue.ts";
export { IndexedDbQueue } from "./queue/indexeddb.ts";
export type { ErrorAnswer, FieldError, IngestAnswer, WireEvent } from "./wire.ts";
