/**
 * A tenant's traffic policy as the limiter applies it (docs/capabilities/traffic.md). Rates are
 * kept as what GCRA needs: the emission interval of one cost unit (period / requests, in ms) and
 * the burst (cost units admitted at once).
 */
export interface RateLimit {
  requests: number;
  periodMs: number;
  burst: number;
}

export interface TrafficPolicy {
  tenant: RateLimit;
  principal?: RateLimit;
  method?: RateLimit;
  /** Cost units by method action (`axis.kernel.x.v1.XService/Method`); absent means 1. */
  methodCosts: Record<string, number>;
  /** Calls of the tenant in flight at once on one node. */
  maxInFlight: number;
  /** Cost units per UTC day. */
  dailyQuota: number;
  /** When it was stored; undefined for the configured defaults. */
  updateTime?: Date;
}

/** The bounds every policy is validated against (SetPolicy refuses anything outside them). */
export const POLICY_BOUNDS = {
  requests: { min: 1, max: 1_000_000 },
  periodMs: { min: 1, max: 86_400_000 },
  burst: { min: 1, max: 1_000_000 },
  cost: { min: 1, max: 1000 },
  maxInFlight: { min: 1, max: 100_000 },
  dailyQuota: { min: 1, max: 1_000_000_000_000 },
  /** Method cost entries one policy may carry. */
  methodCosts: 500,
} as const;

/** Emission interval of one cost unit, in ms. */
export const intervalMs = (rate: RateLimit) => rate.periodMs / rate.requests;

export const costOf = (policy: TrafficPolicy, action: string) => policy.methodCosts[action] ?? 1;

/** The configured defaults (KERNEL_TRAFFIC_*), for tenants without a stored policy. */
export function defaultPolicy(config: {
  KERNEL_TRAFFIC_TENANT_RATE: number;
  KERNEL_TRAFFIC_TENANT_BURST: number;
  KERNEL_TRAFFIC_PRINCIPAL_RATE?: number;
  KERNEL_TRAFFIC_PRINCIPAL_BURST?: number;
  KERNEL_TRAFFIC_MAX_IN_FLIGHT: number;
  KERNEL_TRAFFIC_DAILY_QUOTA: number;
}): TrafficPolicy {
  return {
    tenant: { requests: config.KERNEL_TRAFFIC_TENANT_RATE, periodMs: 1000, burst: config.KERNEL_TRAFFIC_TENANT_BURST },
    principal:
      config.KERNEL_TRAFFIC_PRINCIPAL_RATE === undefined
        ? undefined
        : { requests: config.KERNEL_TRAFFIC_PRINCIPAL_RATE, periodMs: 1000, burst: config.KERNEL_TRAFFIC_PRINCIPAL_BURST ?? config.KERNEL_TRAFFIC_PRINCIPAL_RATE },
    methodCosts: {},
    maxInFlight: config.KERNEL_TRAFFIC_MAX_IN_FLIGHT,
    dailyQuota: config.KERNEL_TRAFFIC_DAILY_QUOTA,
  };
}
