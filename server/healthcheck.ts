// The server image's HEALTHCHECK: its own GET /health on PORT (the server's schema, so a changed
// PORT is probed where the server listens).
//   bun server/healthcheck.ts
import * as v from "valibot";
import { loadConfig } from "../shared/config.ts";
import { probeHealth } from "../shared/healthcheck.ts";
import { ServerConfigSchema } from "./config.ts";

const { PORT } = loadConfig(v.object({ PORT: ServerConfigSchema.entries.PORT }));
process.exit(await probeHealth(`http://127.0.0.1:${PORT}/health`));
