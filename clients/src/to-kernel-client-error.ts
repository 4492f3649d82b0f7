import { ClientError, Status, type Metadata } from 'nice-grpc-common';
import { KernelClientError } from './kernel-client-error';
import { decodeStatusDetails } from './status-details';

/** The trailer the server uses for the rich error model (a serialized `google.rpc.Status`). */
export const STATUS_DETAILS_TRAILER = 'grpc-status-details-bin';
/** The trailer the kernel writes on every response, success or error. */
export const TRACE_ID_TRAILER = 'x-trace-id';

/**
 * Turns whatever a call threw into a {@link KernelClientError}: a gRPC `ClientError` is enriched
 * from the call's trailer (rich details, trace id); anything else that is not already a kernel
 * error becomes UNKNOWN with the original as `cause`, so callers only ever branch on one type.
 * Abort errors are the caller's business and must be filtered out before calling this.
 */
export function toKernelClientError(error: unknown, path: string, trailer?: Metadata): KernelClientError {
  if (error instanceof KernelClientError) return error;
  if (error instanceof ClientError) {
    const details = decodeStatusDetails(trailer?.get(STATUS_DETAILS_TRAILER));
    return new KernelClientError({
      ...details,
      code: error.code,
      path: error.path || path,
      details: error.details,
      traceId: trailer?.get(TRACE_ID_TRAILER) || details.metadata?.trace_id || undefined,
      cause: error,
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new KernelClientError({ code: Status.UNKNOWN, path, details: message, cause: error });
}
