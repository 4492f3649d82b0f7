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

function toRichServerError(error: KernelError, traceId: string): RichServerError {
  const { metadata = {}, fieldViolations, retryDelayMs, quotaViolations, preconditionViolations } = error.options;
  const details: ErrorDetails[] = [
    ErrorInfo.fromPartial({ reason: error.reason, domain: ERROR_DOMAIN, metadata: { ...metadata, trace_id: traceId } }),
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
  return new RichServerError(error.code, error.message, details);
}

const DETAIL_TYPES = [ErrorInfo, BadRequest, RetryInfo, QuotaFailure, PreconditionFailure] as const;

/** One error detail as google.protobuf.Any (type.googleapis.com/<full name>). */
function packDetail(detail: ErrorDetails): Any {
  const type = DETAIL_TYPES.find((t) => t.$type === detail.$type);
  if (!type) throw new Error(`no encoder for error detail ${detail.$type}`);
  return Any.fromPartial({ typeUrl: `type.googleapis.com/${detail.$type}`, value: type.encode(detail as never).finish() });
}
