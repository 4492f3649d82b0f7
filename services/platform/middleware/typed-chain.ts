import { AbortError } from 'abort-controller-x';
import type { CallContext, MethodDescriptor, ServerMiddleware, ServerMiddlewareCall } from 'nice-grpc-common';

/**
 * What a kernel middleware sees of a call. `next` runs the rest of the chain (and the handler)
 * and resolves with the call's result: the response of a unary call; for a streaming call,
 * once the stream has ended (its messages flow past the middleware, which never transform them).
 */
export interface ChainCall<NextContext> {
  readonly method: MethodDescriptor;
  readonly request: unknown;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  next(request: unknown, context: CallContext & NextContext): Promise<unknown>;
}

/**
 * A kernel middleware: straight-line async code around `call.next`, one shape for every kind of
 * call. It adds `Ext` to the call context and needs `Required` from the middleware before it.
 * (nice-grpc's own middleware are async generators at every layer; a unary call — nearly every
 * call — then pays a generator and its promise wrapping per layer. Here a unary call pays one
 * promise per layer, and streaming calls are adapted once, at the edge of the chain.)
 */
export type KernelMiddleware<Ext = {}, Required = {}> = (call: ChainCall<Required & Ext>, context: CallContext & Required) => Promise<unknown>;

/**
 * An ordered middleware chain whose order the compiler checks: each `.use(m)` requires that the
 * middleware already in the chain provide the call context `m` declares it needs (its second
 * type parameter); otherwise `.use` demands a second argument naming the missing context keys,
 * which no caller passes — the mis-ordered chain does not compile
 * (tests/architecture/middleware-order.typecheck.ts proves it).
 *
 * `build()` turns the list into ONE nice-grpc middleware: a unary call runs the list as nested
 * promises; a streaming call runs the same list, its handler's messages handed one at a time to
 * nice-grpc's writer (with its backpressure) through a single-slot handoff.
 */
export class MiddlewareChain<Context> {
  private constructor(private readonly list: ReadonlyArray<KernelMiddleware<any, any>>) {}

  /** An empty chain: the first middleware may require nothing beyond the call context. */
  static start(): MiddlewareChain<{}> {
    return new MiddlewareChain<{}>([]);
  }

  use<Ext, Required>(
    next: KernelMiddleware<Ext, Required>,
    ..._missing: Context extends Required ? [] : [missingContext: Exclude<keyof Required, keyof Context>]
  ): MiddlewareChain<Context & Ext> {
    return new MiddlewareChain<Context & Ext>([...this.list, next]);
  }

  /** The chain as one nice-grpc server middleware, outermost first. */
  build(): ServerMiddleware<Context> {
    const list = this.list;
    if (list.length === 0) throw new Error('an empty middleware chain');
    const run = (call: ServerMiddlewareCall<unknown, unknown>, context: CallContext, innermost: (request: unknown, context: CallContext) => Promise<unknown>) => {
      const at = (index: number, request: unknown, context: CallContext): Promise<unknown> =>
        index === list.length
          ? innermost(request, context)
          : list[index](
              {
                method: call.method,
                request,
                requestStream: call.requestStream,
                responseStream: call.responseStream,
                next: (nextRequest, nextContext) => at(index + 1, nextRequest, nextContext),
              },
              context,
            );
      return at(0, call.request, context);
    };
    return async function* kernelChain(call, context) {
      if (!call.requestStream && !call.responseStream) {
        // nice-grpc's unary handler is a generator that returns the implementation's response.
        return (await run(call, context, async (request, ctx) => (await call.next(request as never, ctx as never).next()).value)) as never;
      }
      const handoff = new Handoff();
      const finished = run(call, context, async (request, ctx) => {
        const messages = call.next(request as never, ctx as never);
        let step = await messages.next();
        while (!step.done) {
          try {
            await handoff.put(step.value);
          } catch (abandoned) {
            // The writer is gone: close the handler's generator (its finally blocks run) and unwind.
            await messages.return(undefined as never);
            throw abandoned;
          }
          step = await messages.next();
        }
        return step.value;
      });
      finished.then(
        () => handoff.end(),
        (error: unknown) => handoff.end(error),
      );
      try {
        for (let item = await handoff.take(); !item.done; item = await handoff.take()) yield item.value as never;
        return (await finished) as never;
      } finally {
        // The writer stopped asking (the call was cancelled): the handler's next put fails with an
        // AbortError, which unwinds the chain (its finally blocks: span, log line, in-flight slot).
        handoff.cancel();
        await finished.catch(() => undefined);
      }
    };
  }
}

/**
 * One message at a time from a streaming handler (inside the chain) to nice-grpc's writer
 * (outside it): `put` resolves once the writer has taken the message, so the handler runs no
 * further ahead of the client than the transport lets the writer.
 */
class Handoff {
  private slot?: { value: unknown; taken(): void; abandoned(error: unknown): void };
  private wake?: () => void;
  private ended?: { error: unknown };
  private cancelled = false;

  put(value: unknown): Promise<void> {
    if (this.cancelled) return Promise.reject(new AbortError());
    return new Promise<void>((taken, abandoned) => {
      this.slot = { value, taken, abandoned };
      this.wake?.();
    });
  }

  async take(): Promise<IteratorResult<unknown>> {
    for (;;) {
      const slot = this.slot;
      if (slot) {
        this.slot = undefined;
        slot.taken();
        return { done: false, value: slot.value };
      }
      if (this.ended) {
        if (this.ended.error !== undefined) throw this.ended.error;
        return { done: true, value: undefined };
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  end(error?: unknown): void {
    this.ended = { error };
    this.wake?.();
  }

  cancel(): void {
    this.cancelled = true;
    this.slot?.abandoned(new AbortError());
    this.slot = undefined;
  }
}
