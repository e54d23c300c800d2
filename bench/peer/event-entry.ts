// What the Node peer needs from the shared event schema; bundled to dist/event.mjs by bench/peer.ts.
import * as v from "valibot";
import { ScanEventSchema } from "../../shared/event.ts";

export { SCHEMA_VERSION, fieldErrors, scannedAtWindowError, toScanRecord } from "../../shared/event.ts";
export const validateEvent = (event: unknown) => v.safeParse(ScanEventSchema, event);
