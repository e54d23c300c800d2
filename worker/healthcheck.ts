// The worker image's HEALTHCHECK: the first worker's GET /health (no partition stalled) on
// METRICS_PORT, from the worker's schema; the supervisor gives worker i METRICS_PORT + i.
//   bun worker/healthcheck.ts
import * as v from "valibot";
import { loadConfig } from "../shared/config.ts";
import { probeHealth } from "../shared/healthcheck.ts";
import { WorkerConfigSchema } from "./config.ts";

const { METRICS_PORT } = loadConfig(v.object({ METRICS_PORT: WorkerConfigSchema.entries.METRICS_PORT }));
process.exit(await probeHealth(`http://127.0.0.1:${METRICS_PORT}/health`));
