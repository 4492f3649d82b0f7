import { context as otelContext, isSpanContextValid, trace as otelTrace, TraceFlags } from '@opentelemetry/api';
import { Metadata } from 'nice-grpc-common';
import { KernelClientError } from '../kernel-client-error';
import { newTraceparent, traceIdOf } from '../traceparent';
import type { KernelMiddleware } from './kernel-middleware-type';

/**
 * One W3C trace per logical call: the caller's `traceparent` metadata when it is valid, else the
 * caller's active OpenTelemetry span (through @opentelemetry/api, whatever SDK the calling
 * service runs), else a fresh trace (an invalid header would make the kernel restart the trace
 * anyway, and the client would then not know the id). The kernel continues this trace id, so it
 * is also the id of an error that never reached the server (UNAVAILABLE, local deadline) and is
 * stamped on it. With @opentelemetry/instrumentation-grpc registered, the instrumentation's
 * client span (a child of the same active span) replaces the header: the trace id is the same.
 */
export function tracingMiddleware(): KernelMiddleware {
  return async function tracing(call, options) {
    const metadata = Metadata(options.metadata);
    let traceId = traceIdOf(metadata.get('traceparent'));
    if (traceId === undefined) {
      const traceparent = activeTraceparent() ?? newTraceparent();
      metadata.set('traceparent', traceparent);
      traceId = traceIdOf(traceparent) as string;
    }
    try {
      return await call.next(call.request, { ...options, metadata });
    } catch (error) {
      if (error instanceof KernelClientError && error.traceId === undefined) throw error.withTraceId(traceId);
      throw error;
    }
  };
}

/** The caller's active OpenTelemetry span as a traceparent, when there is a valid one. */
function activeTraceparent(): string | undefined {
  const span = otelTrace.getSpanContext(otelContext.active());
  if (!span || !isSpanContextValid(span)) return undefined;
  return `00-${span.traceId}-${span.spanId}-${(span.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00'}`;
}
