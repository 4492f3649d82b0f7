import { TrafficServiceDefinition } from '../../gen/proto/axis/kernel/traffic/v1/traffic_service';
import type { CapabilityModule, KernelDependencies } from '../platform/capability-module';
import { TRAFFIC_POLICY_CHANNEL } from '../platform/traffic/policy-store';
import { idempotencySweep } from './idempotency-sweep';
import { trafficService } from './traffic-service';

/**
 * Traffic governance (docs/capabilities/traffic.md) as the kernel serves it: the policy API. Enforcement is the platform's
 * (the traffic step of the middleware chain, services/platform/traffic); this module keeps every
 * node's policy cache current — a tenant's entry reloads when any node's SetPolicy commits
 * (NOTIFY), and all reload after the notification connection was lost — and runs the
 * idempotency store's retention sweep as a system job.
 */
export function trafficModule(deps: KernelDependencies): CapabilityModule {
  deps.notifications.subscribe(TRAFFIC_POLICY_CHANNEL, (tenantId) => deps.traffic.policies.invalidate(tenantId));
  deps.notifications.onReconnect(() => deps.traffic.policies.expireAll());
  return {
    definition: TrafficServiceDefinition,
    implementation: trafficService(deps.traffic),
    systemJobs: [idempotencySweep(deps)],
  };
}
