import { AbortError } from './abort';

/**
 * One message at a time from a producer inside a middleware chain (the RPC's received messages
 * in the typed client; a streaming handler in the kernel's server chain) to the consumer outside
 * it (the caller iterating the stream; nice-grpc's writer), PULLED: the producer waits in
 * `wanted` until the consumer asks (`take`), reads one message and `put`s it straight into the
 * consumer's hands. It is never more than that one message ahead, and a consumer that stops
 * asking finds it waiting between messages: `cancel` makes that wait fail with an AbortError, so
 * the producer closes its source at once and the chain unwinds.
 *
 * Shared by clients/src/client-chain.ts and services/platform/middleware/typed-chain.ts.
 */
export class Handoff {
  private taker?: { resolve(result: IteratorResult<unknown>): void; reject(error: unknown): void };
  private wake?: () => void;
  private ended?: { failure?: { error: unknown } };
  private cancelled = false;

  /** Resolves once the consumer asks for a message; rejects with an AbortError once it has stopped. */
  async wanted(): Promise<void> {
    for (;;) {
      if (this.cancelled) throw new AbortError();
      if (this.taker) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Hands a message to the consumer that asked for it. */
  put(value: unknown): void {
    const taker = this.taker;
    this.taker = undefined;
    taker?.resolve({ done: false, value });
  }

  /** Asks for the next message: resolves with it, or done once the stream ended; rejects with its error. */
  take(): Promise<IteratorResult<unknown>> {
    return new Promise((resolve, reject) => {
      this.taker = { resolve, reject };
      if (this.ended) this.answerEnded();
      else this.wakeProducer();
    });
  }

  /** The stream ended, with `failure` when it failed. */
  end(failure?: { error: unknown }): void {
    this.ended = { failure };
    this.answerEnded();
  }

  /** The consumer stopped asking: the producer's wait fails with an AbortError. */
  cancel(): void {
    this.cancelled = true;
    this.wakeProducer();
  }

  private answerEnded(): void {
    const taker = this.taker;
    this.taker = undefined;
    const failure = this.ended?.failure;
    if (failure) taker?.reject(failure.error);
    else taker?.resolve({ done: true, value: undefined });
  }

  private wakeProducer(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
