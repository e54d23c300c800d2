// The wait every test uses: scripts/wait.ts (shared with the benches and scripts).
export { waitFor } from "../../scripts/wait.ts";
