// Preloaded for every test file (bunfig.toml): a global afterEach that runs the cleanups the test
// registered. A hook declared inside a shared helper module would only apply to the first test
// file that imported it, and later files would leak processes, topics and databases.
import { afterEach } from "bun:test";
import { runCleanups } from "./helpers/cleanup.ts";

afterEach(runCleanups, 60_000);
