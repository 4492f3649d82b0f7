import { randomUUID } from 'node:crypto';
import { Metadata } from 'nice-grpc-common';
import type { KernelMiddleware } from './kernel-middleware-type';

/** The metadata key the kernel deduplicates mutating calls by. */
export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';

/**
 * Every method not declared `NO_SIDE_EFFECTS` needs an `idempotency-key` (the kernel refuses
 * mutations without one). The key is chosen once per logical call, outside the retry loop, so
 * every retry of this call presents the same key and the kernel executes the change at most
 * once (a retry after a lost response gets the stored answer, trailer `idempotent-replayed`).
 * Precedence: metadata entry, then the `idempotencyKey` call option, then a new UUID v4.
 */
export function idempotencyKeyMiddleware(): KernelMiddleware {
  return async function idempotencyKey(call, options) {
    if (call.method.options.idempotencyLevel === 'NO_SIDE_EFFECTS') {
      return await call.next(call.request, options);
    }
    const metadata = Metadata(options.metadata);
    if (!metadata.get(IDEMPOTENCY_KEY_HEADER)) {
      metadata.set(IDEMPOTENCY_KEY_HEADER, options.idempotencyKey || randomUUID());
    }
    return await call.next(call.request, { ...options, metadata });
  };
}
