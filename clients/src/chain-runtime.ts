import type { MethodDescriptor } from 'nice-grpc-common';
import { AbortError } from './abort';

/**
 * What the kernel's two middleware chains — the server's (services/platform/middleware/typed-chain.ts)
 * and the typed client's (client-chain.ts) — run the same way: a list of straight-line middleware
 * around `next()`, and streams pulled through a handoff at the chain's edge. Each chain keeps its
 * own types (a server call context, client call options); the mechanics are here, once.
 */

/** What a middleware of either chain sees of a call; `next` runs the rest of the list. */
export interface ChainLink<Context> {
  readonly method: MethodDescriptor;
  readonly request: unknown;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  next(request: unknown, context: Context): Promise<unknown>;
}

/** The call as nice-grpc hands it to a middleware (either side). */
interface ChainCall {
  readonly method: MethodDescriptor;
  readonly request: unknown;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/**
 * Runs `list` (first element outermost) around `innermost`: each middleware gets a link whose
 * `next` runs the one after it; the last one's `next` is `innermost`. The first middleware gets
 * `request` (the call's own unless given: a caller may keep one `call` per method).
 *
 * The links are instances of one class, not object literals with a `next` closure: a closure per
 * layer per call is an allocation and, under the tsx loader (which keeps function names), a
 * name definition each — measurable at the kernel's call rate.
 */
export function runMiddlewareList<Context>(
  list: ReadonlyArray<(link: ChainLink<Context>, context: Context) => Promise<unknown>>,
  call: ChainCall,
  context: Context,
  innermost: (request: unknown, context: Context) => Promise<unknown>,
  request: unknown = call.request,
): Promise<unknown> {
  return new ListRun(list, call, innermost).at(0, request, context);
}

/** One run of a middleware list: the call's fixed parts, shared by its links. */
class ListRun<Context> {
  constructor(
    readonly list: ReadonlyArray<(link: ChainLink<Context>, context: Context) => Promise<unknown>>,
    readonly call: ChainCall,
    readonly innermost: (request: unknown, context: Context) => Promise<unknown>,
  ) {}

  at(index: number, request: unknown, context: Context): Promise<unknown> {
    return index === this.list.length ? this.innermost(request, context) : this.list[index](new Link(this, index, request), context);
  }
}

/** What the middleware at `index` sees: its request, and `next` running the one after it. */
class Link<Context> implements ChainLink<Context> {
  constructor(
    private readonly run: ListRun<Context>,
    private readonly index: number,
    readonly request: unknown,
  ) {}

  get method(): MethodDescriptor {
    return this.run.call.method;
  }

  get requestStream(): boolean {
    return this.run.call.requestStream;
  }

  get responseStream(): boolean {
    return this.run.call.responseStream;
  }

  next(request: unknown, context: Context): Promise<unknown> {
    return this.run.at(this.index + 1, request, context);
  }
}

/**
 * A streaming call through a chain: `run(drain)` runs the chain, whose innermost step calls
 * `drain(messages)` with the stream's source (nice-grpc's generator: the server handler's
 * messages, or the RPC's received ones). The messages are yielded here, outside the chain, one
 * at a time as the consumer asks; the chain's result is returned when the stream ends and its
 * error thrown after the messages delivered before it. A consumer that stops (`return()`) finds
 * the source between messages: it is closed (its finally blocks run; on the client, the RPC is
 * cancelled) and the chain unwinds with an AbortError.
 */
export async function* pullThrough<Message>(
  run: (drain: (messages: AsyncGenerator<unknown, unknown, undefined>) => Promise<unknown>) => Promise<unknown>,
): AsyncGenerator<Message, unknown, undefined> {
  const handoff = new Handoff();
  const finished = run(async (messages) => {
    for (;;) {
      try {
        await handoff.wanted();
      } catch (abandoned) {
        await messages.return(undefined);
        throw abandoned;
      }
      const step = await messages.next();
      if (step.done) return step.value;
      handoff.put(step.value);
    }
  });
  finished.then(
    () => handoff.end(),
    (error: unknown) => handoff.end({ error }),
  );
  try {
    for (let item = await handoff.take(); !item.done; item = await handoff.take()) yield item.value as Message;
    return await finished;
  } finally {
    // Reached at the stream's end, at its error, or when the consumer stopped asking: then the
    // source's wait to be asked fails with an AbortError.
    handoff.cancel();
    await finished.catch(() => undefined);
  }
}

/**
 * One message at a time from a producer inside a middleware chain (the RPC's received messages
 * in the typed client; a streaming handler in the kernel's server chain) to the consumer outside
 * it (the caller iterating the stream; nice-grpc's writer), PULLED: the producer waits in
 * `wanted` until the consumer asks (`take`), reads one message and `put`s it straight into the
 * consumer's hands. It is never more than that one message ahead, and a consumer that stops
 * asking finds it waiting between messages: `cancel` makes that wait fail with an AbortError, so
 * the producer closes its source at once and the chain unwinds.
 *
 */
class Handoff {
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
