import { SchedulerServiceDefinition } from '../../gen/proto/axis/kernel/scheduler/v1/scheduler_service';
import { createKernelClient, type KernelClient } from './kernel-client';
import type { KernelClientOptions } from './kernel-client-options';

/** A typed client of `axis.kernel.scheduler.v1.SchedulerService` (jobs, schedules, remote workers). */
export type SchedulerClient = KernelClient<SchedulerServiceDefinition>;

/**
 * A SchedulerService client. A remote worker calls LeaseJobs (long-poll with `wait`), then
 * Heartbeat / CompleteJob / FailJob with the lease token it got (scope scheduler:work). Give
 * LeaseJobs a call deadline longer than its `wait`.
 */
export function createSchedulerClient(options: KernelClientOptions = {}): SchedulerClient {
  return createKernelClient(SchedulerServiceDefinition, options);
}

export { SchedulerServiceDefinition };
