import { Status } from 'nice-grpc-common';
import { KernelClientError } from './kernel-client-error';

/** How long to back off when the server did not say (exponential, with jitter). */
export interface BackoffPolicy {
  initialBackoffMs: number;
  maxBackoffMs: number;
}

/**
 * Retry only where the server said it is safe and useful: UNAVAILABLE (the call did not run or
 * the network failed; the idempotency key makes a repeat harmless), or ABORTED /
 * RESOURCE_EXHAUSTED carrying RetryInfo (e.g. IDEMPOTENCY_KEY_IN_USE). Without RetryInfo those
 * two are final answers, and every other code means a retry would fail the same way.
 */
export function isRetryable(error: unknown): error is KernelClientError {
  if (!(error instanceof KernelClientError)) return false;
  if (error.code === Status.UNAVAILABLE) return true;
  return (error.code === Status.ABORTED || error.code === Status.RESOURCE_EXHAUSTED) && error.retryDelayMs !== undefined;
}

/**
 * The pause before the next attempt after `failedAttempts` failures: the server's RetryInfo
 * delay when given, else `initial * 2^(failedAttempts-1)` capped at `max`, jittered into its
 * upper half so that many clients failing together do not retry in lock-step.
 */
export function retryDelayMs(
  error: KernelClientError,
  failedAttempts: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  if (error.retryDelayMs !== undefined) return error.retryDelayMs;
  const ceiling = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** Math.max(0, failedAttempts - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}
