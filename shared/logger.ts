// Structured JSON logs (pino). One logger per process, named after the service, at the level its
// configuration gives (LOG_LEVEL in each process's schema).
import pino from "pino";
import { ConfigError, type LogLevel } from "./config.ts";

export type Logger = pino.Logger;

/**
 * One JSON object per line: time (ms since the epoch), level (its name: "info", "error"…),
 * service, pid, msg, and the context fields of docs/operations.md "Logs" (request_id, trace_id,
 * worker, batch_id, offsets, err…).
 */
export function createLogger(service: string, level: LogLevel, destination?: pino.DestinationStream): Logger {
  const options = {
    level,
    base: { service, pid: process.pid },
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * A process's start: its configuration, resolved once, and its logger at the configured level.
 * An invalid configuration is logged once (naming every bad variable) and the process exits 1.
 */
export function startProcess<C extends { LOG_LEVEL: LogLevel }>(
  service: string,
  load: () => C,
): { config: C; logger: Logger } {
  let config: C;
  try {
    config = load();
  } catch (error) {
    const logger = createLogger(service, "info");
    if (error instanceof ConfigError) logger.fatal(error.message);
    else logger.fatal({ err: error }, "could not load the configuration");
    process.exit(1);
  }
  return { config, logger: createLogger(service, config.LOG_LEVEL) };
}

/**
 * A warning that can repeat for every request of an outage, logged at most once per `windowMs`
 * per key; the next line logged for that key says how many were left out (`suppressed`).
 */
export function throttledWarn(logger: Logger, windowMs: number, now: () => number = Date.now) {
  const seen = new Map<string, { until: number; suppressed: number }>();
  return function warn(key: string, fields: Record<string, unknown>, msg: string): void {
    const t = now();
    const entry = seen.get(key);
    if (entry && t < entry.until) {
      entry.suppressed++;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    seen.set(key, { until: t + windowMs, suppressed: 0 });
    logger.warn(suppressed ? { ...fields, suppressed } : fields, msg);
  };
}
