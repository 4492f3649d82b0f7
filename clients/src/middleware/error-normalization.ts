import { isAbortError } from '../abort';
import { toKernelClientError } from '../to-kernel-client-error';
import type { KernelMiddleware } from './kernel-middleware-type';

/**
 * Outermost safety net: whatever escapes the chain (a local failure, a bug in a token source)
 * leaves as a {@link KernelClientError}, so callers branch on one type. The caller's own
 * cancellation stays an AbortError, the convention the whole nice-grpc ecosystem relies on.
 */
export function errorNormalizationMiddleware(): KernelMiddleware {
  return async function errorNormalization(call, options) {
    try {
      return await call.next(call.request, options);
    } catch (error) {
      if (isAbortError(error)) throw error;
      throw toKernelClientError(error, call.method.path);
    }
  };
}
