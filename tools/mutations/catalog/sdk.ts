// Hand-made mutations of the scanner SDK (packages/scan-client): see tools/mutations/types.ts.
import type { Mutation } from "../types.ts";

const IT = "test/integration/scan-client.test.ts";

export const mutations: Mutation[] = [
  {
    id: "sdk-journal-not-replayed",
    promise:
      "scan-client: a scan is durable once scan() resolves; the next open() on the journal sends what was not acknowledged",
    file: "packages/scan-client/src/queue/file.ts",
    find: "      for (const e of events) queue.live.set(e.seq, e);\n",
    replace: "",
    killers: [IT],
    testNamePattern: "kill -9",
    observed:
      "expect(queued).toBeGreaterThanOrEqual(resolved.length): the new process found 0 queued events after the kill (and 0 > 0 after half were sent)",
  },
  {
    id: "sdk-scan-resolves-before-disk",
    promise: "scan-client: a scan is durable once scan() resolves (written and fsync'd first)",
    file: "packages/scan-client/src/queue/file.ts",
    find: "    }).then(() => queued);",
    replace: "    }).catch(() => {}), Promise.resolve(queued);",
    killers: ["packages/scan-client/test/journal-kill.test.ts", IT],
    testNamePattern: "kill -9",
    observed:
      "journal-kill: resolved scans missing from the journal after the kill (every run); scan-client.test.ts: expect(queued).toBeGreaterThanOrEqual(resolved.length)",
  },
  {
    id: "sdk-scanned-at-restamped",
    promise: "scan-client: event_id and scanned_at are fixed at scan() and never change on retry (stored exactly once)",
    file: "packages/scan-client/src/batch.ts",
    find: "const wire: WireEvent = { ...q.event, sent_at: sentAt };",
    replace: "const wire: WireEvent = { ...q.event, sent_at: sentAt, scanned_at: sentAt };",
    killers: [IT],
    testNamePattern: "503|kill -9",
    observed: "expect(duplicates).toEqual([]): events stored twice (two scanned_at for one event_id) after a retry",
  },
  {
    id: "sdk-event-id-restamped",
    promise: "scan-client: event_id and scanned_at are fixed at scan() and never change on retry (stored exactly once)",
    file: "packages/scan-client/src/batch.ts",
    find: "const wire: WireEvent = { ...q.event, sent_at: sentAt };",
    replace: "const wire: WireEvent = { ...q.event, sent_at: sentAt, event_id: crypto.randomUUID() };",
    killers: [IT],
    testNamePattern: "503|kill -9",
    observed: "expect(missing).toEqual([]): none of the event_ids scan() returned is stored (new ids at each attempt)",
  },
  {
    id: "sdk-retry-after-ignored",
    promise: "scan-client: Retry-After is waited out before the next request",
    file: "packages/scan-client/src/client.ts",
    find: "const delay = serverWait ?? backoffMs(",
    replace: "const delay = 0 * (serverWait ?? 0) + backoffMs(",
    killers: [IT],
    testNamePattern: "429|503",
    observed: "expectRetryAfterHonoured: requests sent 10-60 ms after a 429/503 that said Retry-After: 1",
  },
  {
    id: "sdk-refused-retried",
    promise: "scan-client: a per-event 4xx is final: reported to onRefused and removed, never retried forever",
    file: "packages/scan-client/src/client.ts",
    find: "    if ((status === 202 || status === 400) && answer && Array.isArray(answer.rejected)) {",
    replace:
      '    if (status === 400) return this.retryLater(null, new ScanClientError("server_error", "retried"));\n    if ((status === 202 || status === 400) && answer && Array.isArray(answer.rejected)) {',
    killers: [IT],
    testNamePattern: "a final 400",
    observed: "flush(): timeout, the all-invalid batch (400) was resent until the flush's 20 s ran out",
  },
  {
    id: "sdk-refused-dropped-silently",
    promise: "scan-client: nothing is dropped silently: a refused event goes to onRefused",
    file: "packages/scan-client/src/client.ts",
    find: '    if (refused.length > 0) this.callback(() => this.options.onRefused?.(refused), "onRefused");',
    replace: "",
    killers: [IT],
    testNamePattern: "a final 400",
    observed: 'expect(refused.map((r) => r.qr_id).sort()).toEqual(["bad one", …]): received []',
  },
  {
    id: "sdk-sent-at-at-queue-time",
    promise:
      "scan-client: sent_at is the device clock at each attempt, so the edge's derived_at is the scan's real instant",
    file: "packages/scan-client/src/client.ts",
    find: "const sentAt = new Date(this.now()).toISOString();",
    replace: "const sentAt = new Date(queued[0]!.queuedAt).toISOString();",
    killers: [IT],
    testNamePattern: "device clock",
    observed: "expect(off).toEqual([]): derived_at 6 s after the real scan time for every event sent 6 s late",
  },
  {
    id: "sdk-403-not-bisected",
    promise:
      "scan-client: a 403 for one event's qr_id refuses only that event: the batch is bisected, the others are stored",
    file: "packages/scan-client/src/client.ts",
    find: "if ((status === 413 || status === 403) && n > 1) {",
    replace: "if (status === 413 && n > 1) {",
    killers: [IT],
    testNamePattern: "a 403 for one event",
    observed: 'expect(refused).toEqual([{ qr_id: "globex:1", status: 403 }]): all 16 events of the batch refused',
  },
];
