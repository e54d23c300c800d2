// kill -9 at arbitrary points: scanning processes (test/fixtures/scanner.ts, the edge unreachable)
// are killed one after another on one journal, each after a different number of resolved scans.
// After every kill the journal replays (a torn last line at most, never a damaged one), holds every
// scan that resolved, each once, and the next process takes the dead one's lock over.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { replay } from "../src/queue/file.ts";

const SCANNER = join(import.meta.dir, "fixtures/scanner.ts");

test("five kill -9s at different points: every resolved scan is in the journal once", async () => {
  const dir = mkdtempSync(join(tmpdir(), "scan-client-kill-"));
  const journal = join(dir, "q.journal");
  const resolved: string[] = [];
  try {
    for (const killAfter of [1, 37, 120, 9, 250]) {
      const proc = Bun.spawn(["bun", SCANNER], {
        env: { ...process.env, JOURNAL: journal, ENDPOINT: "http://127.0.0.1:9", COUNT: "300" },
        stdout: "pipe",
        stderr: "inherit",
      });
      const seen: string[] = [];
      let buffer = "";
      const reader = proc.stdout.getReader();
      try {
        while (seen.length < killAfter) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += new TextDecoder().decode(value);
          const lines = buffer.split("\n");
          buffer = lines.pop() ?? "";
          for (const l of lines) if (l.startsWith("S ")) seen.push(l.split(" ")[1] as string);
        }
      } finally {
        proc.kill("SIGKILL");
        await proc.exited;
      }
      expect(seen.length).toBeGreaterThanOrEqual(killAfter);
      resolved.push(...seen);
      const ids = replay(journal).events.map((q) => q.event.event_id);
      expect(new Set(ids).size).toBe(ids.length);
      const inJournal = new Set(ids);
      expect(resolved.filter((id) => !inJournal.has(id))).toEqual([]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
