import { setTimeout as sleep } from 'node:timers/promises';

/** The nice-grpc / abort-controller-x convention: cancellation surfaces as an error named AbortError. */
export function isAbortError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'AbortError';
}

/** An error of that convention, for work abandoned because its caller stopped waiting for it. */
export class AbortError extends Error {
  override readonly name = 'AbortError';

  constructor(message = 'The operation has been aborted') {
    super(message);
  }
}

/** Waits `ms`, rejecting with an AbortError as soon as `signal` aborts (so backoff never outlives a call). */
export async function abortableDelay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  await sleep(ms, undefined, signal ? { signal } : undefined);
}
