import type { CallContext, MethodDescriptor, ServerMiddleware } from 'nice-grpc-common';
import { pullThrough, runMiddlewareList, type ChainLink } from '../../../clients/src/chain-runtime';

/**
 * What a kernel middleware sees of a call. `next` runs the rest of the chain (and the handler)
 * and resolves with the call's result: the response of a unary call; for a streaming call,
 * once the stream has ended (its messages flow past the middleware, which never transform them).
 */
export type ChainCall<NextContext> = ChainLink<CallContext & NextContext>;

/**
 * A kernel middleware: straight-line async code around `call.next`, one shape for every kind of
 * call. It adds `Ext` to the call context and needs `Required` from the middleware before it.
 * (nice-grpc's own middleware are async generators at every layer; a unary call — nearly every
 * call — then pays a generator and its promise wrapping per layer. Here a unary call pays one
 * promise per layer, and streaming calls are adapted once, at the edge of the chain.)
 *
 * A call has ONE context object: a middleware adds its part to it (`Object.assign(context, …)`)
 * and passes it on, rather than a copy per layer (the copies were among the top allocation sites
 * of a call in a heap profile). Nothing may keep a context beyond its call.
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
 * promises; a streaming call runs the same list, its handler's messages pulled one at a time by
 * nice-grpc's writer (with its backpressure) — the list runner and the pull handoff are the ones
 * the typed client uses too (clients/src/chain-runtime.ts): a cancelled call closes the handler at
 * once and unwinds the chain.
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

  /**
   * A unary method's handler behind the chain: the list runs straight into `implementation`, with
   * no generator anywhere (the kernel's own server edge, services/platform/grpc-server.ts, calls
   * this for every unary method; nice-grpc's server would wrap each call in two).
   */
  unary(method: MethodDescriptor, implementation: (request: unknown, context: CallContext) => Promise<unknown>): (request: unknown, context: CallContext) => Promise<unknown> {
    const list = this.list;
    if (list.length === 0) throw new Error('an empty middleware chain');
    const call = { method, request: undefined, requestStream: false, responseStream: false };
    return (request, context) => runMiddlewareList<CallContext>(list, call, context, implementation, request);
  }

  /** The chain as one nice-grpc server middleware, outermost first (streaming methods). */
  build(): ServerMiddleware<Context> {
    const list = this.list;
    if (list.length === 0) throw new Error('an empty middleware chain');
    return async function* kernelChain(call, context) {
      const run = (innermost: (request: unknown, context: CallContext) => Promise<unknown>) =>
        runMiddlewareList<CallContext>(list, call, context, innermost);
      if (!call.requestStream && !call.responseStream) {
        // nice-grpc's unary handler is a generator that returns the implementation's response.
        return (await run(async (request, ctx) => (await call.next(request as never, ctx as never).next()).value)) as never;
      }
      return (yield* pullThrough<never>((drain) => run((request, ctx) => drain(call.next(request as never, ctx as never))))) as never;
    };
  }
}
