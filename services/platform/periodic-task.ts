import type { Logger } from './observability/logger';

/**
 * Runs `work` every `intervalMs` (never overlapping itself) until stopped. A failure is logged
 * at error level and retried on the next tick (docs/laws.md#law-10: surfaced, not swallowed).
 */
export class PeriodicTask {
  private timer?: NodeJS.Timeout;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly name: string,
    private readonly intervalMs: number,
    private readonly work: () => Promise<unknown>,
    private readonly log: Logger,
  ) {}

  start(): this {
    this.schedule();
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.work()
        .then(() => undefined)
        .catch((error) => this.log.error({ err: error, task: this.name }, `${this.name} failed; retrying next tick`))
        .finally(() => this.schedule());
    }, this.intervalMs);
    this.timer.unref();
  }
}
