// The wait every test uses: tools/wait.ts (shared with the benches and tools). It throws,
// naming what it waited for and the last value it saw.
export { waitFor } from "../../tools/wait.ts";
