// Structured JSON logs (pino). One logger per process, named after the service.
import pino from "pino";

export type Logger = pino.Logger;

export function createLogger(service: string, level = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({ name: service, level, base: { service, pid: process.pid } });
}
