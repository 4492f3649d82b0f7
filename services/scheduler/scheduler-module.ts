import { SchedulerServiceDefinition } from '../../gen/proto/axis/kernel/scheduler/v1/scheduler_service';
import type { Database } from '../platform/database/database';
import type { Logger } from '../platform/observability/logger';
import type { CapabilityModule, KernelDependencies, SystemJob } from '../platform/capability-module';
import type { JobHandlerRegistry } from '../platform/jobs';
import { SchedulerRuntime } from './scheduler-runtime';
import { schedulerService } from './scheduler-service';
import { createSchedule } from './schedules';

export interface SchedulerModuleOptions {
  /** Every capability's recurring system work, read when the node starts (all modules are built by then). */
  systemJobs(): readonly SystemJob[];
  /** Whether this node runs jobs (in-process workers, cron, lease rescue). Default true. */
  runWorkers?: boolean;
}

/**
 * K-M5 as the kernel serves it: the SchedulerService, and on start the node's scheduler runtime
 * (in-process workers for the registered handler types, cron, lease rescue, retention) with the
 * kernel's own recurring work installed as system schedules (one node runs each tick).
 */
export function schedulerModule(deps: KernelDependencies, options: SchedulerModuleOptions): CapabilityModule {
  let runtime: SchedulerRuntime | undefined;
  const { config } = deps;
  return {
    definition: SchedulerServiceDefinition,
    implementation: schedulerService({ db: deps.db, notifications: deps.notifications }),
    scopes: { LeaseJobs: 'scheduler:work', Heartbeat: 'scheduler:work', CompleteJob: 'scheduler:work', FailJob: 'scheduler:work' },
    // A long-poll waits up to 60 s by design; only time beyond that is over budget.
    budgetsMs: { LeaseJobs: 61_000 },
    async start() {
      await installSystemJobs(deps.jobs, deps.db, deps.log, options.systemJobs());
      if (options.runWorkers === false) return;
      runtime = new SchedulerRuntime({
        db: deps.db,
        log: deps.log,
        metrics: deps.metrics,
        notifications: deps.notifications,
        handlers: deps.jobs,
        concurrency: config.KERNEL_SCHEDULER_CONCURRENCY,
        prefetch: Math.max(config.KERNEL_SCHEDULER_CONCURRENCY, config.KERNEL_SCHEDULER_PREFETCH ?? Math.min(500, 8 * config.KERNEL_SCHEDULER_CONCURRENCY)),
        leaseMs: config.KERNEL_SCHEDULER_LEASE_MS,
        pollMs: config.KERNEL_SCHEDULER_POLL_MS,
        cronMs: config.KERNEL_SCHEDULER_CRON_MS,
        retentionSeconds: config.KERNEL_SCHEDULER_RETENTION_SECONDS,
      });
      runtime.start();
    },
    async stop(graceMs) {
      await runtime?.stop(graceMs);
    },
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
async function installSystemJobs(handlers: JobHandlerRegistry, db: Database, log: Logger, systemJobs: readonly SystemJob[]): Promise<void> {
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
