import type { AuthenticationContext, TenantContext, TracingContext } from '../call-context';
import type { TrafficGovernor } from '../traffic/governor';
import type { KernelMiddleware } from './typed-chain';

/**
 * Traffic governance (docs/capabilities/traffic.md): every call passes the tenant's limits once (TrafficGovernor.admit) or
 * is refused RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure. Placed after tenant resolution
 * because every limit is keyed by tenant and principal, and before the request guard,
 * idempotency and any database work, so that a refused call — a noisy tenant's flood — costs
 * no database round trip, no idempotency record and no connection another tenant could use.
 * Server-streaming calls (watches) pass the rate limits but do not hold an in-flight slot for
 * as long as their subscriber listens.
 */
export function trafficMiddleware(deps: { governor: TrafficGovernor }): KernelMiddleware<{}, TracingContext & AuthenticationContext & TenantContext> {
  return async function traffic(call, context) {
    const admission = await deps.governor.admit(context.tenantId, context.principal.subject, context.method.action, { countInFlight: !call.responseStream });
    try {
      return await call.next(call.request, context);
    } finally {
      admission.release();
    }
  };
}
