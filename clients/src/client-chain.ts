import type { ClientMiddleware, ClientMiddlewareCall } from 'nice-grpc-common';
import { Handoff } from './handoff';
import type { KernelCallOptionsExt } from './kernel-client-options';
import type { KernelCallOptions, KernelMiddleware } from './middleware/kernel-middleware-type';

type Step = (request: unknown, options: KernelCallOptions) => Promise<unknown>;

/**
 * Builds a list of kernel client middleware, first element outermost, into ONE nice-grpc client
 * middleware (for `createClientFactory().use(...)`).
 *
 * A call without a response stream (unary, nearly every call; or client-streaming, whose request
 * iterable goes to the RPC untouched) runs the list as nested promises around nice-grpc's own
 * step, a generator that yields nothing and returns the response.
 *
 * A call with a response stream runs the same list; at its innermost point the received messages
 * are handed one at a time, through a {@link Handoff}, to the caller iterating the stream outside
 * the chain. A message is read from the RPC only when the caller asks for one.
 * An error the stream ends with rejects `next` in every layer, so the caller gets it (normalized)
 * after the messages delivered before it. When the caller stops iterating, nice-grpc's step is
 * closed with `.return()`, which cancels the RPC, and the chain unwinds with an AbortError (its
 * finally blocks run: the deadline's timer is cleared).
 */
export function composeKernelMiddleware(list: readonly KernelMiddleware[]): ClientMiddleware<KernelCallOptionsExt> {
  if (list.length === 0) throw new Error('an empty middleware list');
  const run = (call: ClientMiddlewareCall<unknown, unknown>, options: KernelCallOptions, innermost: Step): Promise<unknown> => {
    const at = (index: number, request: unknown, options: KernelCallOptions): Promise<unknown> =>
      index === list.length
        ? innermost(request, options)
        : list[index](
            {
              method: call.method,
              request,
              requestStream: call.requestStream,
              responseStream: call.responseStream,
              next: (nextRequest, nextOptions) => at(index + 1, nextRequest, nextOptions),
            },
            options,
          );
    return at(0, call.request, options);
  };

  return async function* kernelClientChain<Request, Response>(
    call: ClientMiddlewareCall<Request, Response>,
    options: KernelCallOptions,
  ): AsyncGenerator<Response, Response | void, undefined> {
    const untyped = call as ClientMiddlewareCall<unknown, unknown>;
    if (!call.responseStream) {
      return (await run(untyped, options, (request, options) => responseOf(untyped.next(request, options)))) as Response;
    }
    const handoff = new Handoff();
    const finished = run(untyped, options, async (request, options) => {
      const messages = untyped.next(request, options);
      for (;;) {
        try {
          await handoff.wanted();
        } catch (abandoned) {
          // The caller stopped iterating: close nice-grpc's step (it cancels the RPC), then unwind.
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
      for (let item = await handoff.take(); !item.done; item = await handoff.take()) yield item.value as Response;
      return (await finished) as Response | void;
    } finally {
      // Reached at the stream's end, at its error, or when the caller stopped iterating
      // (`return()`): then the step waiting for the next request fails with an AbortError.
      handoff.cancel();
      await finished.catch(() => undefined);
    }
  };
}

/** The response of nice-grpc's step for a call without a response stream (it yields no message). */
async function responseOf(step: AsyncGenerator<unknown, unknown, undefined>): Promise<unknown> {
  const result = await step.next();
  if (result.done) return result.value;
  await step.return(undefined);
  throw new Error('a middleware yielded a message in a call without a response stream');
}
