// Scan events as a client would send them. The edge app and server processes come from ./fixtures.ts.

export function scan(overrides: Record<string, unknown> = {}) {
  return {
    event_id: crypto.randomUUID(),
    qr_id: `QR-${Math.floor(Math.random() * 1000)}`,
    scanned_at: new Date().toISOString(),
    ...overrides,
  };
}

export { freePort } from "../../tools/stack/processes.ts";
