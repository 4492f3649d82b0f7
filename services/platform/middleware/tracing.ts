import { performance } from 'node:perf_hooks';
import { SpanKind, SpanStatusCode, trace as otelTrace } from '@opentelemetry/api';
import { ServerError, Status } from 'nice-grpc-common';
import type { CallParties, TracingContext } from '../call-context';
import type { MethodRegistry } from '../method-registry';
import { callLog, type Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import { remoteParent, withSpanIds, type Telemetry } from '../observability/telemetry';
import { continueTrace } from '../trace-context';
import type { KernelMiddleware } from './typed-chain';

/**
 * Outermost: continues (or restarts) the W3C trace, opens the call's server span (OpenTelemetry,
 * gRPC semantic conventions, tenant and principal as attributes — never the request), gives the
 * call a logger carrying the trace and span ids, writes the `x-trace-id` trailer on every
 * response, success or error, and at the end logs one line per call and records its duration by
 * method and status.
 *
 * The server span is the kernel's own rather than @opentelemetry/instrumentation-grpc's: only the
 * chain knows the tenant, the principal and the status the error edge decided, and patching
 * grpc-js from inside a library would change every other grpc-js user of the process. Callers
 * instrumented with instrumentation-grpc (or the typed client's traceparent) are continued.
 */
export function tracingMiddleware(deps: { registry: MethodRegistry; log: Logger; metrics: Metrics; telemetry: Telemetry }): KernelMiddleware<TracingContext> {
  return async function tracing(call, context) {
    const startedAt = performance.now();
    const incoming = continueTrace(context.metadata.getAll('traceparent'), context.metadata.getAll('tracestate'), context.metadata.getAll('baggage'));
    const method = deps.registry.get(call.method);
    const span = deps.telemetry.tracer.startSpan(
      method.action,
      {
        kind: SpanKind.SERVER,
        attributes: { 'rpc.system': 'grpc', 'rpc.service': method.service, 'rpc.method': method.name },
      },
      remoteParent(incoming),
    );
    const trace = withSpanIds(span, incoming);
    const otel = otelTrace.setSpan(remoteParent(incoming), span);
    const log = callLog(deps.log, { trace_id: trace.traceId, span_id: trace.spanId, method: method.action });
    const parties: CallParties = {};
    context.trailer.set('x-trace-id', trace.traceId);
    let code: Status = Status.OK;
    try {
      return await call.next(call.request, Object.assign(context, { trace, otel, log, method, startedAt, parties }));
    } catch (error) {
      code = error instanceof ServerError ? error.code : Status.UNKNOWN;
      throw error;
    } finally {
      const durationMs = performance.now() - startedAt;
      const status = Status[code];
      deps.metrics.increment('rpc_calls_total', { method: method.action, code: status });
      deps.metrics.record('rpc.server.duration', durationMs, { 'rpc.method': method.action, 'rpc.grpc.status_code': status }, 'ms');
      if (span.isRecording()) {
        span.setAttribute('rpc.grpc.status_code', code);
        if (parties.tenant) span.setAttribute('axis.tenant', parties.tenant);
        if (parties.principal) span.setAttribute('axis.principal', parties.principal);
        if (code !== Status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: status });
      }
      span.end();
      // One line per call, its fields given directly (no per-call child logger).
      if (deps.log.isLevelEnabled('info')) {
        deps.log.info(
          { trace_id: trace.traceId, span_id: trace.spanId, method: method.action, status, duration_ms: Math.round(durationMs * 1000) / 1000, ...parties },
          'rpc',
        );
      }
    }
  };
}
