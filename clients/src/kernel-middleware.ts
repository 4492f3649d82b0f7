import type { ClientMiddleware } from 'nice-grpc-common';
import { composeKernelMiddleware } from './client-chain';
import { KERNEL_CLIENT_DEFAULTS, type KernelCallOptionsExt, type KernelClientOptions } from './kernel-client-options';
import { attemptErrorsMiddleware } from './middleware/attempt-errors';
import { authenticationMiddleware } from './middleware/authentication';
import { deadlineMiddleware } from './middleware/deadline';
import { errorNormalizationMiddleware } from './middleware/error-normalization';
import { idempotencyKeyMiddleware } from './middleware/idempotency-key';
import type { KernelMiddleware } from './middleware/kernel-middleware-type';
import { retryMiddleware } from './middleware/retry';
import { tracingMiddleware } from './middleware/tracing';

/**
 * The kernel client middleware, in ONE list, outermost first: straight-line async functions
 * around `call.next` (see kernel-middleware-type.ts), which {@link composeKernelMiddleware}
 * builds into one nice-grpc middleware ({@link kernelMiddleware} does that). The order is the
 * design:
 *
 * 1. error normalization — outermost so that nothing leaves a call other than a
 *    KernelClientError (or the caller's own AbortError), whatever layer failed.
 * 2. tracing — one trace per logical call, so all attempts share the trace id; it also stamps
 *    that id on errors that never reached the server.
 * 3. idempotency key — one key per logical call, above the retry loop, so that every retry of
 *    the call presents the same key and the kernel applies the change at most once.
 * 4. deadline — one deadline for the logical call, above the retry loop, so that retries and
 *    backoff pauses cannot extend it; the retry loop reads it to stop in time.
 * 5. retry — everything below runs once per attempt.
 * 6. authentication and tenant — per attempt, so a token source may refresh between attempts.
 * 7. attempt errors — innermost, decodes each attempt's rich error from its own trailer, which
 *    the retry decision (RetryInfo) needs.
 */
export function kernelMiddlewareList(options: KernelClientOptions): KernelMiddleware[] {
  return [
    errorNormalizationMiddleware(),
    tracingMiddleware(),
    idempotencyKeyMiddleware(),
    deadlineMiddleware(options.deadlineMs ?? KERNEL_CLIENT_DEFAULTS.deadlineMs),
    retryMiddleware({
      maxAttempts: options.maxAttempts ?? KERNEL_CLIENT_DEFAULTS.maxAttempts,
      initialBackoffMs: options.initialBackoffMs ?? KERNEL_CLIENT_DEFAULTS.initialBackoffMs,
      maxBackoffMs: options.maxBackoffMs ?? KERNEL_CLIENT_DEFAULTS.maxBackoffMs,
    }),
    authenticationMiddleware({ token: options.token, tenantId: options.tenantId }),
    attemptErrorsMiddleware(),
  ];
}

/**
 * {@link kernelMiddlewareList} built into ONE nice-grpc client middleware, for
 * `createClientFactory().use(...)`, whose first element runs first. (nice-grpc's `factory.use()`
 * runs the LAST attached middleware first; building the list here keeps the order readable
 * top-down instead of reversed.) A unary call runs the list as nested promises; a streaming call
 * runs the same list, its messages handed to the caller one at a time at the edge of the chain.
 */
export function kernelMiddleware(options: KernelClientOptions): ClientMiddleware<KernelCallOptionsExt> {
  return composeKernelMiddleware(kernelMiddlewareList(options));
}
