// Client-side bench: one scan-client instance (its file journal on disk, fsync'd) sending to the real
// edge (Kafka behind it; no worker needed), against a bare fetch loop POSTing the same NDJSON
// batches one at a time (the SDK's one request in flight). Prints events/s sustained (first scan
// to the last acknowledgement) and this process's CPU µs per event (process.cpuUsage), and their
// ratios SDK / bare. No assertions: figures only.
//   bun bench/client.ts [--events 50000] [--batch 500] [--wave 100] [--gzip-above 16384]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ScanClient } from "scan-client";
import { stopProcess } from "../tools/harness.ts";
import { numArg, printTable, saveResults, startBenchServer } from "./lib.ts";

const events = numArg("events", 50_000);
const batch = numArg("batch", 500);
/** Concurrent scan() calls, as a busy gate's bursts (they share fsyncs). */
const wave = numArg("wave", 100);
/** The SDK's gzipAboveBytes (16 KiB by default, so its 500-event bodies are gzipped; the bare loop's are not). */
const gzipAbove = numArg("gzip-above", 16 * 1024);

interface Figures {
  run: string;
  events: number;
  seconds: number;
  events_per_s: number;
  cpu_us_per_event: number;
}

function figures(run: string, n: number, startNs: bigint, cpu: NodeJS.CpuUsage): Figures {
  const seconds = Number(process.hrtime.bigint() - startNs) / 1e9;
  return {
    run,
    events: n,
    seconds: Number(seconds.toFixed(2)),
    events_per_s: Math.round(n / seconds),
    cpu_us_per_event: Number(((cpu.user + cpu.system) / n).toFixed(1)),
  };
}

async function sdkRun(url: string): Promise<Figures> {
  const dir = mkdtempSync(join(tmpdir(), "bench-client-"));
  try {
    let refused = 0;
    const client = await ScanClient.open({
      endpoint: url,
      queue: { path: join(dir, "q.journal") },
      maxQueued: events + 1,
      gzipAboveBytes: gzipAbove,
      batch: { maxEvents: batch, maxWaitMs: 50 },
      onRefused: (r) => {
        refused += r.length;
      },
      onError: (e) => console.error(`bench/client: ${e.code}: ${e.message}`),
    });
    const start = process.hrtime.bigint();
    const cpu = process.cpuUsage();
    for (let i = 0; i < events; i += wave) {
      const n = Math.min(wave, events - i);
      await Promise.all(Array.from({ length: n }, (_, j) => client.scan({ qr_id: `QR-${(i + j) % 1000}` })));
    }
    await client.flush({ timeoutMs: 300_000 });
    const result = figures("scan-client (journal on disk)", events, start, process.cpuUsage(cpu));
    const m = client.metrics();
    if (m.sent !== events || refused) throw new Error(`bench/client: sent ${m.sent} of ${events}, refused ${refused}`);
    await client.close();
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The same batches, built beforehand, POSTed one after the other. */
async function bareRun(url: string): Promise<Figures> {
  const bodies: string[] = [];
  const sentAt = new Date().toISOString();
  for (let i = 0; i < events; i += batch) {
    const lines: string[] = [];
    for (let j = i; j < Math.min(i + batch, events); j++) {
      lines.push(
        JSON.stringify({
          event_id: crypto.randomUUID(),
          qr_id: `QR-${j % 1000}`,
          scanned_at: sentAt,
          sent_at: sentAt,
          schema_version: 2,
        }),
      );
    }
    bodies.push(`${lines.join("\n")}\n`);
  }
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  for (const body of bodies) {
    const res = await fetch(`${url}/v1/scans`, {
      method: "POST",
      headers: { "content-type": "application/x-ndjson" },
      body,
    });
    const text = await res.text();
    if (res.status !== 202) throw new Error(`bench/client: bare POST answered ${res.status}: ${text}`);
  }
  return figures("bare fetch loop (same batches)", events, start, process.cpuUsage(cpu));
}

const server = await startBenchServer();
try {
  // No separate warm-up: the bare run goes first and warms the edge (JIT, Kafka connections), which
  // favours the SDK run a little; use --events large enough that this does not matter.
  const bare = await bareRun(server.url);
  const sdk = await sdkRun(server.url);
  const rows = [sdk, bare];
  printTable(rows as unknown as Record<string, string | number>[]);
  const ratios = {
    throughput_sdk_over_bare: Number((sdk.events_per_s / bare.events_per_s).toFixed(2)),
    cpu_per_event_sdk_over_bare: Number((sdk.cpu_us_per_event / bare.cpu_us_per_event).toFixed(2)),
  };
  console.log(JSON.stringify(ratios));
  console.log(`saved ${saveResults("client", { events, batch, wave, gzipAbove, rows, ratios })}`);
} finally {
  await stopProcess(server.proc, 5_000);
}
