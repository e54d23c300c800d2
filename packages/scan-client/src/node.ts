// Entry point for Bun and Node: ScanClient with a file journal as its default queue
// ({ path } or, by default, .scan-client/queue.journal in the working directory).
import { ScanClient as BaseScanClient, type QueueFactory } from "./client.ts";
import { isQueue } from "./queue.ts";
import { FileQueue } from "./queue/file.ts";

export class ScanClient extends BaseScanClient {
  protected static override queueFactory: QueueFactory = async (option) => {
    if (isQueue(option)) return option;
    const path = option && "path" in option ? option.path : ".scan-client/queue.journal";
    return FileQueue.open(path);
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
export { FileQueue, type FileQueueOptions } from "./queue/file.ts";
export type { ErrorAnswer, FieldError, IngestAnswer, WireEvent } from "./wire.ts";
