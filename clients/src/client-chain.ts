import type { ClientMiddleware, ClientMiddlewareCall } from 'nice-grpc-common';
import { pullThrough, runMiddlewareList } from './chain-runtime';
import type { KernelCallOptionsExt } from './kernel-client-options';
import type { KernelCallOptions, KernelMiddleware } from './middleware/kernel-middleware-type';

/**
 * Builds a list of kernel client middleware, first element outermost, into ONE nice-grpc client
 * middleware (for `createClientFactory().use(...)`).
 *
 * A call without a response stream (unary, nearly every call; or client-streaming, whose request
 * iterable goes to the RPC untouched) runs the list as nested promises around nice-grpc's own
 * step, a generator that yields nothing and returns the response.
 *
 * A call with a response stream runs the same list; at its innermost point the received messages
 * are handed one at a time (chain-runtime.ts, shared with the server's chain) to the caller iterating the stream outside
 * the chain. A message is read from the RPC only when the caller asks for one.
 * An error the stream ends with rejects `next` in every layer, so the caller gets it (normalized)
 * after the messages delivered before it. When the caller stops iterating, nice-grpc's step is
 * closed with `.return()`, which cancels the RPC, and the chain unwinds with an AbortError (its
 * finally blocks run: the deadline's timer is cleared).
 */
export function composeKernelMiddleware(list: readonly KernelMiddleware[]): ClientMiddleware<KernelCallOptionsExt> {
  if (list.length === 0) throw new Error('an empty middleware list');
  return async function* kernelClientChain<Request, Response>(
    call: ClientMiddlewareCall<Request, Response>,
    options: KernelCallOptions,
  ): AsyncGenerator<Response, Response | void, undefined> {
    const untyped = call as ClientMiddlewareCall<unknown, unknown>;
    const run = (innermost: (request: unknown, options: KernelCallOptions) => Promise<unknown>) => runMiddlewareList(list, call, options, innermost);
    if (!call.responseStream) return (await run((request, options) => responseOf(untyped.next(request, options)))) as Response;
    return (yield* pullThrough<Response>((drain) => run((request, options) => drain(untyped.next(request, options))))) as Response | void;
  };
}

/** The response of nice-grpc's step for a call without a response stream (it yields no message). */
async function responseOf(step: AsyncGenerator<unknown, unknown, undefined>): Promise<unknown> {
  const result = await step.next();
  if (result.done) return result.value;
  await step.return(undefined);
  throw new Error('a middleware yielded a message in a call without a response stream');
}
