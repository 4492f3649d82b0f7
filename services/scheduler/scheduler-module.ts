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
 * The scheduler (docs/capabilities/scheduler.md) as the kernel serves it: the SchedulerService, and on start the node's scheduler runtime
 * (in-process workers for the registered handler types, cron, lease rescue, retention) with the
 * kernel's own recurring work installed as system schedules (one node runs each tick).
 */
export function schedulerModule(deps: KernelDependencies, options: SchedulerModuleOptions): CapabilityModule {
  let runtime: SchedulerRuntime | undefined;
  const { config } = deps;
  return {
    definition: SchedulerServiceDefinition,
    implementation: schedulerService({ db: deps.db, notifications: deps.notifications, prismaReads: deps.prismaReads }),
    scopes: { LeaseJobs: 'scheduler:work', Heartbeat: 'scheduler:work', CompleteJob: 'scheduler:work', FailJob: 'scheduler:work' },
    // A long-poll waits up to 60 s by design; only time beyond that is over budget.
    budgetsMs: { LeaseJobs: 61_000 },
    async start() {
      await installSystemJobs(deps.jobs, deps.db, deps.log, options.systemJobs());
      observeQueues(deps);
      if (options.runWorkers === false) return;
      runtime = new SchedulerRuntime({
        db: deps.db,
        log: deps.log,
        metrics: deps.metrics,
        telemetry: deps.telemetry,
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

/**
 * Queue depth and lag as gauges, per queue across tenants (one query per metrics collection, only
 * when metrics are exported): due jobs not yet claimed, and how long the oldest has been due. A
 * queue once seen keeps reporting (0 when empty) rather than vanishing from dashboards.
 */
function observeQueues(deps: KernelDependencies): void {
  const seen = new Set(['default', 'kernel']);
  deps.metrics.observeAll(
    { 'kernel.scheduler.queue.depth': { description: 'due jobs not yet claimed' }, 'kernel.scheduler.queue.lag': { unit: 'ms', description: 'how long the oldest due job has waited' } },
    async () => {
      const rows = await deps.db.systemCall<{ queue: string; ready: string; oldest_due_ms: number }>('SELECT * FROM scheduler_queue_stats()', []);
      const byQueue = new Map(rows.map((r) => [r.queue, r]));
      for (const queue of byQueue.keys()) seen.add(queue);
      return [...seen].flatMap((queue) => [
        { name: 'kernel.scheduler.queue.depth', value: Number(byQueue.get(queue)?.ready ?? 0), labels: { queue } },
        { name: 'kernel.scheduler.queue.lag', value: byQueue.get(queue)?.oldest_due_ms ?? 0, labels: { queue } },
      ]);
    },
  );
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
