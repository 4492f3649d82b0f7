import type { Metadata } from 'nice-grpc-common';
import { TRACE_ID_TRAILER } from './to-kernel-client-error';

/** The trailer the kernel sets when it answered from its idempotency store instead of re-executing. */
export const REPLAYED_TRAILER = 'idempotent-replayed';

/** What the kernel's response trailer says about a call. */
export interface KernelResponseInfo {
  /** The call's trace id (`x-trace-id`, present on every kernel response). */
  traceId: string | undefined;
  /** True when the response is a stored replay of an earlier call with the same idempotency key. */
  replayed: boolean;
}

/**
 * Reads a trailer received through the `onTrailer` call option. With retries, `onTrailer` is
 * called once, with the trailer of the final attempt.
 */
export function readResponseInfo(trailer: Metadata): KernelResponseInfo {
  return {
    traceId: trailer.get(TRACE_ID_TRAILER) || undefined,
    replayed: trailer.get(REPLAYED_TRAILER) === 'true',
  };
}
