import type { Metadata } from 'nice-grpc-common';
import { isAbortError } from '../abort';
import { toKernelClientError } from '../to-kernel-client-error';
import type { KernelMiddleware } from './kernel-middleware-type';

/**
 * Innermost: turns one attempt's gRPC failure into a {@link KernelClientError} decoded from that
 * attempt's own trailer (rich details from `grpc-status-details-bin`, `x-trace-id`). It must sit
 * below the retry loop, because retrying depends on the decoded RetryInfo.
 */
export function attemptErrorsMiddleware(): KernelMiddleware {
  return async function attemptErrors(call, options) {
    let trailer: Metadata | undefined;
    try {
      return await call.next(call.request, {
        ...options,
        onTrailer(received) {
          trailer = received;
          options.onTrailer?.(received);
        },
      });
    } catch (error) {
      if (isAbortError(error)) throw error;
      throw toKernelClientError(error, call.method.path, trailer);
    }
  };
}
