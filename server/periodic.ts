// What the edge does in the background every few seconds (the managed keys' refresh, the replica
// heartbeat): a task that never overlaps itself and whose stop waits for the run in flight. Its
// queries are bounded in time by server/background-db.ts. The task itself never throws: it counts
// and logs its own failures.

export class Periodic {
  #timer: ReturnType<typeof setInterval> | null = null;
  #running: Promise<void> | null = null;

  constructor(
    private readonly task: () => Promise<void>,
    private readonly intervalMs: number,
  ) {}

  /** Runs once now, then every interval. */
  async start(): Promise<void> {
    await this.run();
    this.#timer = setInterval(() => void this.run(), this.intervalMs);
  }

  /** Runs the task, or joins the run already in flight. */
  run(): Promise<void> {
    this.#running ??= this.task().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  /** No further runs; resolves once the one in flight has finished. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#running;
  }
}
