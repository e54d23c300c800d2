// Hand-made mutations of the scanner's path (issue 28): the device clock's correction at the edge,
// and the scanner SDK's durable queue, fixed ids and retry policy. See tools/mutations/types.ts.
import type { Mutation } from "../types.ts";

export const mutations: Mutation[] = [
  {
    id: "clock-no-correction",
    promise:
      "A scan from a device whose clock is off by up to CLOCK_SKEW_MAX_HOURS is stored, its derived_at the real scan time (docs/api.md, Device clocks)",
    file: "shared/event.ts",
    find: "  const ms = scannedMs + offset;",
    replace: "  const ms = scannedMs;",
    killers: ["test/integration/device-clock.test.ts"],
    testNamePattern: "clocks 2 hours fast|CLOCK_SKEW_MAX_HOURS",
    observed:
      "device clocks: the fast and slow clocks' events answered 400 (is more than 5 minutes in the future / stored at the device's time), expected 202 with derived_at within 5 s",
  },
  {
    id: "clock-window-on-device-time",
    promise:
      "The accepted window applies to the scan's instant on the edge's clock, so a gate whose clock runs fast loses nothing (docs/api.md, Device clocks)",
    file: "server/ingest.ts",
    find: "          const window = scannedAtWindowError(derived.ms, now, o.maxAgeMs, o.maxFutureMs);",
    replace:
      "          const window = scannedAtWindowError(Date.parse(result.output.scanned_at), now, o.maxAgeMs, o.maxFutureMs);",
    killers: ["test/integration/device-clock.test.ts"],
    testNamePattern: "clocks 2 hours fast",
    observed: "attempt 0: status 400 (scanned_at: is more than 5 minutes in the future), expected 202",
  },
  {
    id: "clock-counts-device-minute",
    promise:
      "scan_counts counts each scan once, in the minute it really happened (derived_at), also for a device clock hours off (docs/api.md, Device clocks)",
    file: "shared/scan-events.ts",
    find: "    derivedAt: record.derived_at ?? record.scanned_at,",
    replace: "    derivedAt: record.scanned_at,",
    killers: ["test/integration/device-clock.test.ts"],
    testNamePattern: "clocks 2 hours fast",
    observed:
      "scan_counts: the two scans counted in the device's minutes (2 hours ahead, 3 hours behind), expected the real ones (derived_at's)",
  },
  {
    id: "idb-append-writes-nothing",
    promise:
      "In a browser a scan is durable once scan() resolves: a page reload loses nothing queued (packages/scan-client/README.md, Guarantees 1)",
    file: "packages/scan-client/src/queue/indexeddb.ts",
    find: "        const req = store.add(value);\n",
    replace: "        const req = store.count();\n",
    killers: ["test/integration/scan-client-browser.test.ts"],
    testNamePattern: "reloaded mid-queue",
    observed: "flush() timed out with 20 events still queued; after the reload the page found nothing in IndexedDB",
  },
  {
    id: "idb-append-resolves-on-abort",
    promise:
      "In a browser scan() resolves only once IndexedDB committed the transaction: a commit that fails rejects it (packages/scan-client/README.md, Guarantees 1)",
    file: "packages/scan-client/src/queue/indexeddb.ts",
    find: "      tx.onabort = () =>\n",
    replace: "      tx.onabort = () => resolve(result());\n      tx.onerror = () =>\n",
    killers: ["packages/scan-client/test/indexeddb.test.ts"],
    observed:
      "a transaction aborted after every add() succeeded (a failed commit): append resolved with the events instead of rejecting",
  },
  {
    id: "client-not-resending-on-open",
    promise:
      "The next ScanClient.open() on the same queue sends what an earlier process or page left unacknowledged (packages/scan-client/README.md, Guarantees 1)",
    file: "packages/scan-client/src/client.ts",
    find: "    this.queuedCount = await this.queue.size();",
    replace: "    this.queuedCount = 0;",
    killers: ["test/integration/scan-client-browser.test.ts"],
    testNamePattern: "reloaded mid-queue",
    observed: "after the reload the reopened client shows queued: 0, expected 15",
  },
];
