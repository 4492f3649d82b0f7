import { composeServerMiddleware, type ServerMiddleware } from 'nice-grpc-common';

/**
 * An ordered middleware chain whose order the compiler checks: each `.use(m)` requires that the
 * middleware already in the chain provide the call context `m` declares it needs (its second
 * type parameter); otherwise `.use` demands a second argument naming the missing context keys,
 * which no caller passes — the mis-ordered chain does not compile
 * (tests/architecture/middleware-order.typecheck.ts proves it).
 *
 * (nice-grpc's own `composeServerMiddleware` checks a pair; folding a list with it needs casts
 * that erase exactly this check.)
 */
export class MiddlewareChain<Context> {
  private constructor(private readonly middleware: ServerMiddleware<any, any> | undefined) {}

  /** An empty chain: the first middleware may require nothing beyond the call context. */
  static start(): MiddlewareChain<{}> {
    return new MiddlewareChain<{}>(undefined);
  }

  use<Ext, Required>(
    next: ServerMiddleware<Ext, Required>,
    ..._missing: Context extends Required ? [] : [missingContext: Exclude<keyof Required, keyof Context>]
  ): MiddlewareChain<Context & Ext> {
    const composed = this.middleware ? composeServerMiddleware(this.middleware, next as ServerMiddleware<Ext, any>) : next;
    return new MiddlewareChain<Context & Ext>(composed as ServerMiddleware<any, any>);
  }

  /** The composed middleware, outermost first. */
  build(): ServerMiddleware<Context> {
    if (!this.middleware) throw new Error('an empty middleware chain');
    return this.middleware as ServerMiddleware<Context>;
  }
}
