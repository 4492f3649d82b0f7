import { SchedulerServiceDefinition } from '../../gen/proto/axis/kernel/scheduler/v1/scheduler_service';
import type { Database } from '../platform/database/database';
import type { Logger } from '../platform/observability/logger';
import type { KernelDependencies, KernelServiceModule, SystemJob } from '../platform/service-module';
import type { JobHandlers } from './job-api';
import { schedulerService } from './scheduler-service';
import { createSchedule } from './schedules';

/** The scheduler's entry in kernelServices(deps). */
export function schedulerModule(deps: KernelDependencies): KernelServiceModule {
  return {
    definition: SchedulerServiceDefinition,
    implementation: schedulerService({ db: deps.db, notifications: deps.notifications }),
    scopes: { LeaseJobs: 'scheduler:work', Heartbeat: 'scheduler:work', CompleteJob: 'scheduler:work', FailJob: 'scheduler:work' },
    // A long-poll waits up to 60 s by design; only time beyond that is over budget.
    budgetsMs: { LeaseJobs: 61_000 },
  };
}

/** The tenant of the kernel's own schedules: '' (what db.asSystem transactions see under RLS). */
export const SYSTEM_TENANT = '';
export const NOOP_JOB = 'kernel.noop';

/**
 * The kernel's own recurring work, as system schedules (one node runs each tick): every
 * capability's `systemJobs` (reservation expiry, key destruction, …), each a handler and a
 * schedule named after it. Also registers `kernel.noop` (does nothing; for probes and benchmarks).
 */
export async function installSystemJobs(handlers: JobHandlers, db: Database, log: Logger, systemJobs: readonly SystemJob[]): Promise<void> {
  handlers.register(NOOP_JOB, async () => undefined);
  for (const systemJob of systemJobs) {
    handlers.register(systemJob.name, (job) => systemJob.run(job));
    const seconds = Math.min(59, Math.max(1, Math.round(systemJob.everySeconds)));
    await db.inTenantTransaction(SYSTEM_TENANT, (tx) =>
      createSchedule(
        tx,
        {
          scheduleId: systemJob.name,
          cron: seconds === 1 ? '* * * * * *' : `*/${seconds} * * * * *`,
          timeZone: 'UTC',
          queue: 'kernel',
          jobType: systemJob.name,
          payloadJson: 'null',
          priority: 100,
          maxAttempts: 1,
          timeoutMs: 60_000,
          overlapPolicy: 'SKIP',
          catchupWindowSeconds: 60,
          paused: false,
        },
        { ifAbsent: true },
      ),
    );
  }
  log.debug({ system_jobs: systemJobs.map((j) => j.name) }, 'system schedules installed');
}
