// CPU and RSS of processes by pid, from /proc (Linux), for the end-to-end bench.
import { readFileSync } from "node:fs";

const CLOCK_TICKS = 100; // USER_HZ on Linux
const PAGE = 4096;

function ticks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return null; // the process is gone
  }
}

function rssBytes(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/statm`, "utf8").split(" ")[1]) * PAGE;
  } catch {
    return 0;
  }
}

/** CPU time (user + system) of the processes that still exist, in clock ticks (1/100 s). */
export function cpuTicks(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) total += ticks(pid) ?? 0;
  return total;
}

/** Samples CPU% (of one core) and RSS for named groups of pids; `pids()` is re-read each sample. */
export function cpuSampler(groups: () => Record<string, number[]>) {
  let last = new Map<number, number>();
  let lastAt = performance.now();
  return () => {
    const now = performance.now();
    const seconds = (now - lastAt) / 1000;
    const next = new Map<number, number>();
    const out: Record<string, { cpu_pct: number; rss_mib: number }> = {};
    for (const [name, pids] of Object.entries(groups())) {
      let cpu = 0;
      let rss = 0;
      for (const pid of pids) {
        const t = ticks(pid);
        if (t === null) continue;
        next.set(pid, t);
        const before = last.get(pid);
        if (before !== undefined && seconds > 0) cpu += ((t - before) / CLOCK_TICKS / seconds) * 100;
        rss += rssBytes(pid);
      }
      out[name] = { cpu_pct: Math.round(cpu), rss_mib: Math.round(rss / 2 ** 20) };
    }
    last = next;
    lastAt = now;
    return out;
  };
}

/**
 * CPU seconds (user + system) used by named groups of pids between `start()` and `stop()`. A pid
 * first seen at `stop()` started inside the window, so all of its CPU counts; a pid that exited
 * inside the window is lost (its ticks are gone with it), so groups should be long-lived processes.
 */
export function cpuWindow(groups: () => Record<string, number[]>) {
  let before = new Map<number, number>();
  const snapshot = () => {
    const out = new Map<string, Map<number, number>>();
    for (const [name, pids] of Object.entries(groups())) {
      const m = new Map<number, number>();
      for (const pid of pids) {
        const t = ticks(pid);
        if (t !== null) m.set(pid, t);
      }
      out.set(name, m);
    }
    return out;
  };
  return {
    start() {
      before = new Map([...snapshot().values()].flatMap((m) => [...m]));
    },
    stop(): Record<string, number> {
      const out: Record<string, number> = {};
      for (const [name, m] of snapshot()) {
        let t = 0;
        for (const [pid, now] of m) t += now - (before.get(pid) ?? 0);
        out[name] = t / CLOCK_TICKS;
      }
      return out;
    },
  };
}
