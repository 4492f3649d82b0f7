import { z } from 'zod';
import type { RateLimit as RateLimitMessage, TrafficPolicy as TrafficPolicyMessage } from '../../gen/proto/axis/kernel/traffic/v1/traffic';
import type { TrafficServiceImplementation } from '../../gen/proto/axis/kernel/traffic/v1/traffic_service';
import type { KernelCallContext } from '../platform/call-context';
import { invalidArgument } from '../platform/kernel-error';
import { parseRequest } from '../platform/request-validation';
import type { TrafficGovernor } from '../platform/traffic/governor';
import { POLICY_BOUNDS as B, type RateLimit, type TrafficPolicy } from '../platform/traffic/policy';
import { readPolicy, writePolicy } from '../platform/traffic/policy-store';

const int = (min: number, max: number) =>
  z.number().refine(Number.isFinite, 'must be a finite number').refine(Number.isInteger, 'must be a whole number').pipe(z.number().min(min, `must be ${min} to ${max}`).max(max, `must be ${min} to ${max}`));

/** A Duration in whole milliseconds within the period bounds (sub-millisecond rounds up). */
const periodMs = z
  .object({ seconds: z.number(), nanos: z.number() })
  .transform((d) => d.seconds * 1000 + d.nanos / 1e6)
  .pipe(z.number().min(B.periodMs.min, 'must be 1 ms to 1 day').max(B.periodMs.max, 'must be 1 ms to 1 day'))
  .transform(Math.ceil);

const rateLimit = z.object({
  requests: int(B.requests.min, B.requests.max),
  period: periodMs.optional().refine((p) => p !== undefined, 'required'),
  burst: int(B.burst.min, B.burst.max),
});

const required = <T>(value: T | undefined) => value !== undefined;

const setPolicySchema = z.object({
  policy: z
    .object({
      tenantLimit: rateLimit.optional().refine(required, 'required'),
      principalLimit: rateLimit.optional(),
      methodLimit: rateLimit.optional(),
      methodCosts: z
        .record(z.string().max(300, 'at most 300 characters'), int(B.cost.min, B.cost.max))
        .refine((costs) => Object.keys(costs).length <= B.methodCosts, `at most ${B.methodCosts} entries`),
      maxInFlight: int(B.maxInFlight.min, B.maxInFlight.max),
      dailyQuota: int(B.dailyQuota.min, B.dailyQuota.max),
    })
    .optional()
    .refine(required, 'required')
    .transform((p) => p!),
});

const toRate = (r: { requests: number; period?: number; burst: number } | undefined): RateLimit | undefined =>
  r && { requests: r.requests, periodMs: r.period!, burst: r.burst };

const rateMessage = (r: RateLimit | undefined): RateLimitMessage | undefined =>
  r && { requests: r.requests, period: { seconds: Math.floor(r.periodMs / 1000), nanos: (r.periodMs % 1000) * 1e6 }, burst: r.burst };

function policyMessage(p: TrafficPolicy, configuredDefault: boolean): TrafficPolicyMessage {
  return {
    tenantLimit: rateMessage(p.tenant),
    principalLimit: rateMessage(p.principal),
    methodLimit: rateMessage(p.method),
    methodCosts: { ...p.methodCosts },
    maxInFlight: p.maxInFlight,
    dailyQuota: p.dailyQuota,
    updateTime: p.updateTime,
    configuredDefault,
  };
}

/**
 * Traffic governance (docs/capabilities/traffic.md) over gRPC: a tenant's policy, validated whole (a limit is never silently off: every rate,
 * burst, cost, cap and quota is a finite whole number within POLICY_BOUNDS, and a cost names a
 * method this kernel serves), stored in traffic_policy and applied by every node's governor.
 */
export function trafficService(governor: TrafficGovernor): TrafficServiceImplementation<KernelCallContext> {
  return {
    async setPolicy(request, ctx) {
      const input = parseRequest(setPolicySchema, request).policy;
      const known = governor.methods();
      const unknown = Object.keys(input.methodCosts).filter((name) => !known.has(name));
      if (unknown.length > 0) {
        throw invalidArgument(
          'METHOD_UNKNOWN',
          'method costs name methods this kernel does not serve',
          unknown.slice(0, 20).map((name) => ({ field: `policy.method_costs[${JSON.stringify(name.slice(0, 100))}]`, description: 'not a method this kernel serves (full name: package.Service/Method)' })),
        );
      }
      const policy: TrafficPolicy = {
        tenant: toRate(input.tenantLimit)!,
        principal: toRate(input.principalLimit),
        method: toRate(input.methodLimit),
        methodCosts: input.methodCosts,
        maxInFlight: input.maxInFlight,
        dailyQuota: input.dailyQuota,
      };
      // A cost above a burst could never be admitted: refused rather than a method silently shut.
      const largest = Math.max(1, ...Object.values(policy.methodCosts));
      const violations = (['tenant', 'principal', 'method'] as const)
        .filter((limit) => policy[limit] && policy[limit]!.burst < largest)
        .map((limit) => ({ field: `policy.${limit}_limit.burst`, description: `must be at least the largest method cost (${largest})` }));
      if (violations.length > 0) throw invalidArgument('FIELD_INVALID', 'a burst below a method cost would refuse that method forever', violations);

      const stored = await ctx.unitOfWork.run(async (tx) => {
        const saved = await writePolicy(tx, policy);
        tx.onCommit(() => governor.policies.set(tx.tenantId, saved));
        return saved;
      });
      ctx.unitOfWork.describeChange('traffic/policy', {
        tenant_rate: `${policy.tenant.requests}/${policy.tenant.periodMs}ms`,
        tenant_burst: policy.tenant.burst,
        max_in_flight: policy.maxInFlight,
        daily_quota: policy.dailyQuota,
        method_costs: Object.keys(policy.methodCosts).length,
      });
      return { policy: policyMessage(stored, false) };
    },

    async getPolicy(_request, ctx) {
      const stored = await ctx.unitOfWork.run((tx) => readPolicy(tx));
      return { policy: policyMessage(stored ?? governor.defaults, stored === undefined) };
    },

    async getUsage(_request, ctx) {
      const cached = governor.policies.get(ctx.tenantId);
      const policy = cached instanceof Promise ? await cached : cached;
      const usage = await governor.usage(ctx.tenantId);
      return {
        usage: {
          dailyUsed: usage.dailyUsed,
          dailyQuota: policy.dailyQuota,
          dailyResetTime: usage.dailyResetTime,
          inFlight: usage.inFlight,
          limiterBackend: usage.backend,
        },
      };
    },
  };
}
