// The scanner page's script (served as is; /sdk.js is packages/scan-client/src/browser.ts bundled by
// the test). On load: reads how many events the IndexedDB queue holds (straight from
// the queue, before the client touches it), then opens the client on that queue, and exposes
// window.scanner for the test: scan(n), metrics(), flush(), errors.
import { IndexedDbQueue, ScanClient } from "/sdk.js";

const config = JSON.parse(new URLSearchParams(location.search).get("config"));
const state = document.getElementById("state");

const direct = await IndexedDbQueue.open(config.queueName);
const storedAtLoad = await direct.size();
await direct.close();

/** Transient problems the client reported (network errors while the edge is cut), by code. */
const errors = {};
const refused = [];
const client = await ScanClient.open({
  endpoint: config.endpoint,
  apiKey: config.apiKey,
  queue: { name: config.queueName },
  batch: { maxEvents: 10, maxWaitMs: 50 },
  retry: { baseMs: 50, maxMs: 500 },
  onError: (e) => {
    errors[e.code] = (errors[e.code] ?? 0) + 1;
  },
  onRefused: (r) => refused.push(...r),
});
const metricsAtOpen = client.metrics();

window.scanner = {
  storedAtLoad,
  metricsAtOpen,
  errors,
  refused,
  /** Scans n codes, one after the other; resolves with what each scan() resolved with (durably queued). */
  async scan(n, prefix) {
    const scanned = [];
    for (let i = 0; i < n; i++) scanned.push(await client.scan({ qr_id: `${prefix}:${i}`, scanner_id: "chromium" }));
    return scanned;
  },
  metrics: () => client.metrics(),
  flush: (timeoutMs) => client.flush({ timeoutMs }),
};
state.textContent = "ready";
