import { performance } from 'node:perf_hooks';
import type { TracingContext } from '../call-context';
import type { Metrics } from '../observability/metrics';
import type { KernelMiddleware } from './typed-chain';

/**
 * Performance budgets (docs/laws.md#law-8): each RPC has a latency budget (KERNEL_RPC_BUDGETS_MS, by method action or "*").
 * Measured from the start of the call to the end of the handler; a call over budget logs a
 * warning with the trace id and increments rpc_budget_violations_total. It never fails the call.
 * A server-streaming call (a watch) lasts as long as its subscriber wants: the "*" default does
 * not apply to it, only a budget configured for its own action.
 */
export function performanceBudgetMiddleware(deps: { budgetsMs: Record<string, number>; metrics: Metrics }): KernelMiddleware<{}, TracingContext> {
  return async function performanceBudget(call, context) {
    try {
      return await call.next(call.request, context);
    } finally {
      const budgetMs = deps.budgetsMs[context.method.action] ?? (call.responseStream ? undefined : deps.budgetsMs['*']);
      const elapsedMs = performance.now() - context.startedAt;
      if (budgetMs !== undefined && elapsedMs > budgetMs) {
        deps.metrics.increment('rpc_budget_violations_total', { method: context.method.action });
        context.log.warn({ budget_ms: budgetMs, elapsed_ms: Math.round(elapsedMs) }, 'rpc over its latency budget');
      }
    }
  };
}
