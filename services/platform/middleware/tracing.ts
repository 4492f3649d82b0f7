import { performance } from 'node:perf_hooks';
import { ServerError, Status, type CallContext, type ServerMiddleware } from 'nice-grpc-common';
import type { CallParties, TracingContext } from '../call-context';
import type { MethodRegistry } from '../method-registry';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import { continueTrace } from '../trace-context';

/**
 * Outermost: continues (or restarts) the W3C trace, gives the call a logger carrying the trace
 * id, writes the `x-trace-id` trailer on every response, success or error, and logs one line
 * per call with its final status and duration.
 */
export function tracingMiddleware(deps: { registry: MethodRegistry; log: Logger; metrics: Metrics }): ServerMiddleware<TracingContext> {
  return async function* tracing(call, context: CallContext) {
    const startedAt = performance.now();
    const trace = continueTrace(context.metadata.get('traceparent'), context.metadata.get('tracestate'));
    const method = deps.registry.get(call.method);
    const log = deps.log.child({ trace_id: trace.traceId, span_id: trace.spanId, method: method.action });
    const parties: CallParties = {};
    context.trailer.set('x-trace-id', trace.traceId);
    let code: Status = Status.OK;
    try {
      return yield* call.next(call.request, { ...context, trace, log, method, startedAt, parties });
    } catch (error) {
      code = error instanceof ServerError ? error.code : Status.UNKNOWN;
      throw error;
    } finally {
      const durationMs = performance.now() - startedAt;
      deps.metrics.increment('rpc_calls_total', { method: method.action, code: Status[code] });
      log.info({ status: Status[code], duration_ms: Math.round(durationMs * 1000) / 1000, ...parties }, 'rpc');
    }
  };
}

