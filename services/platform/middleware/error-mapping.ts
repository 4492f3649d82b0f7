import { trace as otelTrace } from '@opentelemetry/api';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status } from 'nice-grpc-common';
import {
  Any,
  BadRequest,
  ErrorInfo,
  PreconditionFailure,
  QuotaFailure,
  RetryInfo,
  RichServerError,
  type ErrorDetails,
} from 'nice-grpc-error-details';
import { Status as RpcStatus } from 'nice-grpc-error-details/lib/proto/google/rpc/status';
import type { TracingContext } from '../call-context';
import { ERROR_DOMAIN, KernelError } from '../kernel-error';
import type { Metrics } from '../observability/metrics';
import { VALUE_REJECTED } from '../database/postgres-errors';
import type { KernelMiddleware } from './typed-chain';

/**
 * The edge of the error model (docs/laws.md#law-6): a KernelError becomes a google.rpc.Status with exactly
 * one ErrorInfo (reason, domain kernel.axis, metadata including trace_id) plus BadRequest /
 * RetryInfo / QuotaFailure / PreconditionFailure where they apply. Anything else is a bug: it
 * is logged with its cause and the trace id and answered as a masked INTERNAL.
 * Sits inside tracing so that the trace id exists and the final status is logged.
 */
export function errorMappingMiddleware(deps: { metrics: Metrics }): KernelMiddleware<{}, TracingContext> {
  return async function errorMapping(call, context) {
    try {
      return await call.next(call.request, context);
    } catch (error) {
      const kernelError = toKernelError(error, context);
      // Every refusal counted by method, code and reason, and named on the call's span.
      deps.metrics.increment('rpc_refusals_total', { method: context.method.action, code: Status[kernelError.code], reason: kernelError.reason });
      otelTrace.getSpan(context.otel)?.setAttribute('axis.error.reason', kernelError.reason);
      if (kernelError.code === Status.INTERNAL || kernelError.code === Status.UNKNOWN) {
        context.log.error({ err: error }, 'unhandled error (masked as INTERNAL)');
        deps.metrics.increment('rpc_internal_errors_total', { method: context.method.action });
      } else if (kernelError.code === Status.UNAVAILABLE || kernelError.code === Status.DATA_LOSS) {
        context.log.error({ err: kernelError.options.cause ?? kernelError, reason: kernelError.reason }, kernelError.message);
      } else if (kernelError.reason === VALUE_REJECTED) {
        // The caller gets a permanent INVALID_ARGUMENT, but the kernel's validation let through a
        // value PostgreSQL refused: a gap to close, which must not pass unnoticed (docs/laws.md#law-10: nothing silent).
        context.log.error(
          { err: kernelError.options.cause ?? kernelError, reason: kernelError.reason, sqlstate: kernelError.options.metadata?.sqlstate },
          'validation gap: the database refused a value of the request',
        );
        deps.metrics.increment('rpc_validation_gaps_total', { method: context.method.action });
      }
      const rich = toRichServerError(kernelError, context.trace.traceId);
      // The rich status travels in the `grpc-status-details-bin` trailer (what nice-grpc-error-details'
      // server middleware writes, without a layer of its own).
      context.trailer.set(
        'grpc-status-details-bin',
        RpcStatus.encode(RpcStatus.fromPartial({ code: rich.code, message: rich.details, details: rich.extra.map(packDetail) })).finish(),
      );
      throw rich;
    }
  };
}

function toKernelError(error: unknown, context: TracingContext): KernelError {
  if (error instanceof KernelError) return error;
  if (isAbortError(error)) return new KernelError(Status.CANCELLED, 'CANCELLED', 'the call was cancelled');
  if (error instanceof ServerError) return new KernelError(error.code, Status[error.code], error.details);
  return new KernelError(Status.INTERNAL, 'INTERNAL', `internal error (trace ${context.trace.traceId})`, { cause: error });
}

/**
 * The error's text travels in the call's trailers (`grpc-message` and `grpc-status-details-bin`),
 * and an HTTP/2 peer refuses a header block beyond its limit (Node: 64 KB) — a trailer that
 * cannot be sent leaves the stream, and the connection, hanging. Error texts can quote the
 * request (a field path naming a map key, a resource name), so every text is clipped here, at
 * the edge, for every capability: the message to MAX_MESSAGE code units, each violation's and
 * metadata value's text to MAX_TEXT, at most MAX_VIOLATIONS violations of each kind — under
 * 32 KB in all. (A 60 KB map key in a request once wedged its connection for the deadline.)
 */
const MAX_MESSAGE = 512;
const MAX_TEXT = 200;
const MAX_VIOLATIONS = 20;

/** `text` cut to `max` UTF-16 code units (never inside a surrogate pair), marked with an ellipsis. */
export function clipText(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}…`;
}

const clipAll = <T extends object>(items: readonly T[] | undefined): T[] | undefined =>
  items?.slice(0, MAX_VIOLATIONS).map((item) => Object.fromEntries(Object.entries(item).map(([k, v]) => [k, typeof v === 'string' ? clipText(v, MAX_TEXT) : v])) as T);

function toRichServerError(error: KernelError, traceId: string): RichServerError {
  const { metadata = {}, retryDelayMs } = error.options;
  const fieldViolations = clipAll(error.options.fieldViolations);
  const quotaViolations = clipAll(error.options.quotaViolations);
  const preconditionViolations = clipAll(error.options.preconditionViolations);
  const clippedMetadata = Object.fromEntries(Object.entries(metadata).map(([k, v]) => [clipText(k, MAX_TEXT), clipText(v, MAX_TEXT)]));
  const details: ErrorDetails[] = [
    ErrorInfo.fromPartial({ reason: error.reason, domain: ERROR_DOMAIN, metadata: { ...clippedMetadata, trace_id: traceId } }),
  ];
  if (fieldViolations?.length) details.push(BadRequest.fromPartial({ fieldViolations }));
  if (retryDelayMs !== undefined) {
    details.push(
      RetryInfo.fromPartial({
        retryDelay: { seconds: Math.floor(retryDelayMs / 1000), nanos: Math.round((retryDelayMs % 1000) * 1e6) },
      }),
    );
  }
  if (quotaViolations?.length) details.push(QuotaFailure.fromPartial({ violations: quotaViolations }));
  if (preconditionViolations?.length) details.push(PreconditionFailure.fromPartial({ violations: preconditionViolations }));
  return new RichServerError(error.code, clipText(error.message, MAX_MESSAGE), details);
}

const DETAIL_TYPES = [ErrorInfo, BadRequest, RetryInfo, QuotaFailure, PreconditionFailure] as const;

/** One error detail as google.protobuf.Any (type.googleapis.com/<full name>). */
function packDetail(detail: ErrorDetails): Any {
  const type = DETAIL_TYPES.find((t) => t.$type === detail.$type);
  if (!type) throw new Error(`no encoder for error detail ${detail.$type}`);
  return Any.fromPartial({ typeUrl: `type.googleapis.com/${detail.$type}`, value: type.encode(detail as never).finish() });
}
