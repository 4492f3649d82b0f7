import type { Metadata } from 'nice-grpc-common';
import { abortableDelay } from '../abort';
import { isRetryable, retryDelayMs, type BackoffPolicy } from '../retry-policy';
import type { KernelMiddleware } from './kernel-middleware-type';

/**
 * Re-runs the attempt-level middleware below it while {@link isRetryable} says the server
 * allows it, up to `maxAttempts` attempts, and never past the call's deadline: when the next
 * pause would end at or after the deadline, the last server error is thrown right away (more
 * useful than a DEADLINE_EXCEEDED later). Everything above it (trace, idempotency key,
 * deadline) is fixed once per logical call, so every attempt carries the same key and trace id.
 *
 * The caller's `onTrailer` sees only the final attempt's trailer: the response it got, or the
 * error it gets. Streaming calls get one attempt: a consumed request stream, or a response
 * stream already handed out in part, cannot be replayed transparently.
 */
export function retryMiddleware(defaults: BackoffPolicy & { maxAttempts: number }): KernelMiddleware {
  return async function retry(call, options) {
    if (call.requestStream || call.responseStream) return await call.next(call.request, options);

    const maxAttempts = Math.max(1, Math.floor(options.maxAttempts ?? defaults.maxAttempts));
    const deadline = options.deadline instanceof Date ? options.deadline.getTime() : Infinity;
    const { onTrailer } = options;

    for (let attempt = 1; ; attempt++) {
      let trailer: Metadata | undefined;
      const attemptOptions = {
        ...options,
        onTrailer(received: Metadata) {
          trailer = received;
        },
      };
      try {
        const response = await call.next(call.request, attemptOptions);
        if (trailer) onTrailer?.(trailer);
        return response;
      } catch (error) {
        const delayMs = isRetryable(error) ? retryDelayMs(error, attempt, defaults) : undefined;
        const retry = delayMs !== undefined && attempt < maxAttempts && Date.now() + delayMs < deadline;
        if (!retry) {
          if (trailer) onTrailer?.(trailer);
          throw error;
        }
        // Aborts with the call: the deadline middleware's signal fires on expiry or caller abort.
        await abortableDelay(delayMs, options.signal);
      }
    }
  };
}
