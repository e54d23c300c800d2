#!/usr/bin/env bun
// bunx bun-rdkafka-probe [include-dir]: checks the installed rdkafka.h and librdkafka against the
// binding (see probe.ts). Exit 0 and one line when they match; exit 1 and every difference otherwise.
import { probeLayout } from "./probe.ts";

try {
  const r = probeLayout({ includeDir: process.argv[2] });
  console.log(
    `bun-rdkafka: rdkafka.h ${r.headerVersion} and librdkafka ${r.libraryVersion} match the binding (${r.checked} values checked)`,
  );
} catch (error) {
  console.error(`bun-rdkafka: ${(error as Error).message}`);
  process.exit(1);
}
