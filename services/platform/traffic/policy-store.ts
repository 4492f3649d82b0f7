import type { Sql, TenantTransaction } from '../database/transaction';
import type { RateLimit, TrafficPolicy } from './policy';

/** The channel on which SetPolicy tells every node that a tenant's policy changed (payload: the tenant id). */
export const TRAFFIC_POLICY_CHANNEL = 'kernel_traffic_policy';

interface PolicyRow {
  tenant_requests: string;
  tenant_period_ms: string;
  tenant_burst: string;
  principal_requests: string | null;
  principal_period_ms: string | null;
  principal_burst: string | null;
  method_requests: string | null;
  method_period_ms: string | null;
  method_burst: string | null;
  method_costs: Record<string, number>;
  max_in_flight: number;
  daily_quota: string;
  update_time: Date;
}

const rate = (requests: string | null, periodMs: string | null, burst: string | null): RateLimit | undefined =>
  requests === null || periodMs === null || burst === null ? undefined : { requests: Number(requests), periodMs: Number(periodMs), burst: Number(burst) };

/** The tenant's stored policy (table traffic_policy, one row per tenant), or undefined. */
export async function readPolicy(tx: Sql & { tenantId: string }): Promise<TrafficPolicy | undefined> {
  const [row] = await tx.query<PolicyRow>('SELECT * FROM traffic_policy WHERE tenant_id = $1', [tx.tenantId]);
  if (!row) return undefined;
  return {
    tenant: rate(row.tenant_requests, row.tenant_period_ms, row.tenant_burst)!,
    principal: rate(row.principal_requests, row.principal_period_ms, row.principal_burst),
    method: rate(row.method_requests, row.method_period_ms, row.method_burst),
    methodCosts: row.method_costs,
    maxInFlight: row.max_in_flight,
    dailyQuota: Number(row.daily_quota),
    updateTime: row.update_time,
  };
}

/** Stores the tenant's policy whole (insert or replace) and notifies every node at commit. */
export async function writePolicy(tx: TenantTransaction, policy: TrafficPolicy): Promise<TrafficPolicy> {
  const [row] = await tx.query<{ update_time: Date }>(
    `INSERT INTO traffic_policy AS p (tenant_id, tenant_requests, tenant_period_ms, tenant_burst, principal_requests, principal_period_ms,
        principal_burst, method_requests, method_period_ms, method_burst, method_costs, max_in_flight, daily_quota, update_time)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())
     ON CONFLICT (tenant_id) DO UPDATE SET
       tenant_requests = EXCLUDED.tenant_requests, tenant_period_ms = EXCLUDED.tenant_period_ms, tenant_burst = EXCLUDED.tenant_burst,
       principal_requests = EXCLUDED.principal_requests, principal_period_ms = EXCLUDED.principal_period_ms, principal_burst = EXCLUDED.principal_burst,
       method_requests = EXCLUDED.method_requests, method_period_ms = EXCLUDED.method_period_ms, method_burst = EXCLUDED.method_burst,
       method_costs = EXCLUDED.method_costs, max_in_flight = EXCLUDED.max_in_flight, daily_quota = EXCLUDED.daily_quota, update_time = now()
     RETURNING update_time`,
    [
      tx.tenantId,
      policy.tenant.requests,
      policy.tenant.periodMs,
      policy.tenant.burst,
      policy.principal?.requests ?? null,
      policy.principal?.periodMs ?? null,
      policy.principal?.burst ?? null,
      policy.method?.requests ?? null,
      policy.method?.periodMs ?? null,
      policy.method?.burst ?? null,
      JSON.stringify(policy.methodCosts),
      policy.maxInFlight,
      policy.dailyQuota,
    ],
  );
  await tx.query('SELECT pg_notify($1, $2)', [TRAFFIC_POLICY_CHANNEL, tx.tenantId]);
  return { ...policy, updateTime: row.update_time };
}
