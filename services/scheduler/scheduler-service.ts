import { z } from 'zod';
import {
  JobState,
  OverlapPolicy,
  TickKind,
  TickOutcome,
  type Job,
  type Schedule,
  type ScheduleTick,
} from '../../gen/proto/axis/kernel/scheduler/v1/job';
import type { SchedulerServiceImplementation } from '../../gen/proto/axis/kernel/scheduler/v1/scheduler_service';
import { Status } from 'nice-grpc-common';
import type { KernelCallContext } from '../platform/call-context';
import { coldRead } from '../platform/cold-read';
import type { PrismaTenantReads } from '../platform/database/prisma-tenant-client';
import type { Database } from '../platform/database/database';
import type { NotificationHub } from '../platform/database/notification-hub';
import { paginate } from '../platform/page-token';
import { protoEnum } from '../platform/proto-enum';
import { KernelError } from '../platform/kernel-error';
import { parseRequest } from '../platform/request-validation';
import { NAME_PATTERN } from '../platform/jobs';
import { JOB_DEFAULTS, insertJob, retryDelayMs, validateJobSpec, type JobFieldNames } from './job-api';
import { cancelJob, completeJob, failJob, findJob, heartbeat, leaseJobs, listJobs, releaseLeases, type JobRow, type JobStateName } from './job-store';
import { JOBS_CHANNEL } from './scheduler-runtime';
import {
  backfillSchedule,
  createSchedule,
  cronOf,
  findSchedule,
  listSchedules,
  listSchedulesWithPrisma,
  setPaused,
  triggerSchedule,
  type OverlapPolicy as OverlapName,
  type ScheduleRecord,
  type TickKind as TickKindName,
  type TickOutcome as TickOutcomeName,
} from './schedules';

const jobStates = protoEnum<JobStateName, JobState>({
  QUEUED: JobState.JOB_STATE_QUEUED,
  RUNNING: JobState.JOB_STATE_RUNNING,
  SUCCEEDED: JobState.JOB_STATE_SUCCEEDED,
  DEAD: JobState.JOB_STATE_DEAD,
  CANCELLED: JobState.JOB_STATE_CANCELLED,
});
const overlapPolicies = protoEnum<OverlapName, OverlapPolicy>({
  SKIP: OverlapPolicy.OVERLAP_POLICY_SKIP,
  BUFFER_ONE: OverlapPolicy.OVERLAP_POLICY_BUFFER_ONE,
  ALLOW_ALL: OverlapPolicy.OVERLAP_POLICY_ALLOW_ALL,
});
const tickKinds = protoEnum<TickKindName, TickKind>({ CRON: TickKind.TICK_KIND_CRON, TRIGGER: TickKind.TICK_KIND_TRIGGER, BACKFILL: TickKind.TICK_KIND_BACKFILL });
const tickOutcomes = protoEnum<TickOutcomeName, TickOutcome>({
  ENQUEUED: TickOutcome.TICK_OUTCOME_ENQUEUED,
  SKIPPED: TickOutcome.TICK_OUTCOME_SKIPPED,
  MISSED: TickOutcome.TICK_OUTCOME_MISSED,
});

/** What validateJobSpec calls the fields of EnqueueJob's `job` and CreateSchedule's `schedule`. */
const JOB_FIELDS: JobFieldNames = {
  queue: 'job.queue',
  type: 'job.job_type',
  payload: 'job.payload',
  runAt: 'job.run_time',
  priority: 'job.priority',
  maxAttempts: 'job.max_attempts',
  jobKey: 'job.job_key',
  timeoutMs: 'job.timeout',
  backoffBaseMs: 'job.backoff_base',
};
const SCHEDULE_JOB_FIELDS: JobFieldNames = {
  ...JOB_FIELDS,
  queue: 'schedule.queue',
  type: 'schedule.job_type',
  payload: 'schedule.payload',
  priority: 'schedule.priority',
  maxAttempts: 'schedule.max_attempts',
  timeoutMs: 'schedule.timeout',
};

const jobIdField = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a job id (UUID)');
const scheduleId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be 1–63 characters of [a-z0-9._-], starting with a letter or digit');
const name = z.string().regex(NAME_PATTERN, 'must be 1–100 characters of [a-z0-9._:-], starting with a letter or digit');
const leaseToken = z.number().int().min(1, 'must be a lease token from LeaseJobs');

/** google.protobuf.Duration → milliseconds within [min, max]. */
const durationMs = (min: number, max: number, describe: string) =>
  z
    .object({ seconds: z.number(), nanos: z.number() })
    .refine((d) => Number.isFinite(d.seconds) && Number.isInteger(d.nanos) && Math.abs(d.nanos) < 1e9, 'not a valid duration')
    .transform((d) => d.seconds * 1000 + Math.round(d.nanos / 1e6))
    .pipe(z.number().min(min, describe).max(max, describe));
/** google.protobuf.Duration → whole seconds (rounded up) within [min, max]. */
const durationSeconds = (min: number, max: number, describe: string) =>
  z
    .object({ seconds: z.number(), nanos: z.number() })
    .refine((d) => Number.isFinite(d.seconds) && Number.isInteger(d.nanos) && Math.abs(d.nanos) < 1e9, 'not a valid duration')
    .transform((d) => Math.ceil(d.seconds + d.nanos / 1e9))
    .pipe(z.number().min(min, describe).max(max, describe));
/** Milliseconds → google.protobuf.Duration. */
const durationOfMs = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });
const required = <T>(value: T | undefined): value is T => value !== undefined;

/** EnqueueJob: the job's settable fields; the others are output only and ignored. */
const enqueueSchema = z.object({
  job: z
    .object({
      queue: z.string().transform((q) => q || JOB_DEFAULTS.queue).pipe(name),
      jobType: name,
      payload: z.unknown(),
      runTime: z
        .custom<Date | undefined>((d) => d === undefined || (d instanceof Date && Number.isFinite(d.getTime())), {
          message: 'must be a valid time within one year of now',
          params: { reason: 'RUN_TIME_OUT_OF_RANGE' },
        })
        .optional(),
      priority: z.number().int().min(-1000, '-1000..1000').max(1000, '-1000..1000'),
      maxAttempts: z.number().int().min(0, '1–100 (0 means 25)').max(100, '1–100 (0 means 25)'),
      jobKey: z.string().max(255, 'at most 255 characters'),
      timeout: durationMs(10, 24 * 3600_000, '10 ms to 24 h').optional(),
      backoffBase: durationMs(1, 3600_000, '1 ms to 1 h').optional(),
    })
    .optional()
    .refine(required, 'required')
    .transform((j) => j!),
});

const createScheduleSchema = z.object({
  schedule: z
    .object({
      scheduleId,
      cron: z.string().min(1, 'required').max(200, 'at most 200 characters'),
      timeZone: z.string().min(1, 'required').max(64, 'at most 64 characters'),
      queue: z.string().transform((q) => q || JOB_DEFAULTS.queue).pipe(name),
      jobType: name,
      payload: z.unknown(),
      priority: z.number().int().min(-1000, '-1000..1000').max(1000, '-1000..1000'),
      maxAttempts: z.number().int().min(0, '1–100 (0 means 25)').max(100, '1–100 (0 means 25)'),
      timeout: durationMs(10, 24 * 3600_000, '10 ms to 24 h (unset means 5 min)').optional(),
      overlapPolicy: overlapPolicies.required(),
      catchupWindow: durationSeconds(0, 7 * 86_400, '0 to 7 days').optional(),
      paused: z.boolean(),
    })
    .optional()
    .refine(required, 'required')
    .transform((s) => s!),
});

const getJobSchema = z.object({ jobId: jobIdField });
const listJobsSchema = z.object({
  state: jobStates.filter(),
  pageSize: z.number(),
  pageToken: z.string().max(1000),
});
/** A ListJobs page token's position: the last job id listed (job ids are UUIDv7). */
const jobCursor = jobIdField;
const scheduleRef = z.object({ scheduleId });
const pauseSchema = z.object({ scheduleId, paused: z.boolean() });
const backfillSchema = z
  .object({
    scheduleId,
    startTime: z.date({ message: 'required' }).refine((d) => Number.isFinite(d.getTime()), 'invalid time'),
    endTime: z.date({ message: 'required' }).refine((d) => Number.isFinite(d.getTime()), 'invalid time'),
  })
  .refine((r) => r.startTime < r.endTime, {
    message: 'start_time must be before end_time',
    path: ['endTime'],
    params: { reason: 'RANGE_INVALID' },
  });
const leaseSchema = z.object({
  queue: name,
  jobTypes: z.array(name).max(100, 'at most 100 job types'),
  maxJobs: z.number().int().min(0, '1–100').max(100, '1–100').transform((n) => n || 1),
  leaseDuration: durationMs(1000, 600_000, '1 s to 10 min').optional(),
  wait: durationMs(0, 60_000, '0 to 60 s').optional(),
  workerId: z.string().max(200, 'at most 200 characters'),
});
const heartbeatSchema = z.object({ jobId: jobIdField, leaseToken, leaseDuration: durationMs(1000, 600_000, '1 s to 10 min').optional() });
const completeSchema = z.object({ jobId: jobIdField, leaseToken });
const failSchema = z.object({
  jobId: jobIdField,
  leaseToken,
  error: z.string().max(2000, 'at most 2000 characters'),
  retryDelay: durationMs(0, 3600_000, '0 to 1 h').optional(),
});

const DEFAULT_LEASE_MS = 30_000;

export function jobMessage(row: JobRow): Job {
  return {
    jobId: row.job_id,
    queue: row.queue,
    jobType: row.type,
    payload: row.payload,
    state: jobStates.toProto(row.state),
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    priority: row.priority,
    runTime: row.run_at,
    jobKey: row.job_key ?? '',
    scheduleId: row.schedule_id ?? '',
    traceId: row.trace_id,
    errors: row.errors.map((e) => ({ attempt: e.attempt, error: e.error, errorTime: new Date(e.time), retryTime: e.retry_at ? new Date(e.retry_at) : undefined })),
    createTime: row.create_time,
    startTime: row.start_time ?? undefined,
    finishTime: row.finish_time ?? undefined,
    leaseExpireTime: row.lease_expire_time ?? undefined,
    timeout: durationOfMs(row.timeout_ms),
    backoffBase: durationOfMs(row.backoff_base_ms),
  };
}

function scheduleMessage(s: ScheduleRecord): Schedule {
  return {
    scheduleId: s.scheduleId,
    cron: s.cron,
    timeZone: s.timeZone,
    queue: s.queue,
    jobType: s.jobType,
    payload: s.payload,
    priority: s.priority,
    maxAttempts: s.maxAttempts,
    timeout: durationOfMs(s.timeoutMs),
    overlapPolicy: overlapPolicies.toProto(s.overlapPolicy),
    catchupWindow: { seconds: s.catchupWindowSeconds, nanos: 0 },
    paused: s.paused,
    nextFireTime: s.nextFireTime,
    lastFireTime: s.lastFireTime,
    createTime: s.createTime,
    updateTime: s.updateTime,
  };
}

const tickMessage = (t: { time: Date; kind: TickKindName; outcome: TickOutcomeName; jobId?: string | null }): ScheduleTick => ({
  tickTime: t.time,
  kind: tickKinds.toProto(t.kind),
  outcome: tickOutcomes.toProto(t.outcome),
  jobId: t.jobId ?? '',
});

/** The scheduler (docs/capabilities/scheduler.md) over gRPC. `db` and `notifications` serve the long-poll LeaseJobs (outside the unit of work, see the proto). */
export function schedulerService(deps: { db: Database; notifications: NotificationHub; prismaReads?: PrismaTenantReads }): SchedulerServiceImplementation<KernelCallContext> {
  return {
    async enqueueJob(request, ctx) {
      const { job: input } = parseRequest(enqueueSchema, request);
      const spec = {
        queue: input.queue,
        type: input.jobType,
        payload: input.payload ?? null,
        runAt: input.runTime,
        priority: input.priority,
        maxAttempts: input.maxAttempts || undefined,
        jobKey: input.jobKey || undefined,
        timeoutMs: input.timeout,
        backoffBaseMs: input.backoffBase,
      };
      validateJobSpec(spec, { fields: JOB_FIELDS });
      const { job, deduplicated } = await ctx.unitOfWork.run(async (tx) => {
        const { jobId, deduplicated } = await insertJob(tx, spec, ctx.trace);
        return { job: await findJob(tx, jobId), deduplicated };
      });
      ctx.unitOfWork.describeChange(`jobs/${job.job_id}`, { job_type: job.type, queue: job.queue, deduplicated });
      return { job: jobMessage(job), deduplicated };
    },

    async getJob(request, ctx) {
      const input = parseRequest(getJobSchema, request);
      return { job: jobMessage(await ctx.unitOfWork.run((tx) => findJob(tx, input.jobId))) };
    },

    async listJobs(request, ctx) {
      const input = parseRequest(listJobsSchema, request);
      const { items, nextPageToken } = await paginate(ctx, request, {
        position: jobCursor,
        fetch: (after, limit) => ctx.unitOfWork.run((tx) => listJobs(tx, input.state, after, limit)),
        positionOf: (job) => job.job_id,
      });
      return { jobs: items.map(jobMessage), nextPageToken };
    },

    async cancelJob(request, ctx) {
      const input = parseRequest(getJobSchema, request);
      const job = await ctx.unitOfWork.run((tx) => cancelJob(tx, input.jobId));
      ctx.unitOfWork.describeChange(`jobs/${job.job_id}`, { state: 'CANCELLED' });
      return { job: jobMessage(job) };
    },

    async createSchedule(request, ctx) {
      const { schedule: s } = parseRequest(createScheduleSchema, request);
      cronOf(s.cron, s.timeZone);
      const valid = validateJobSpec(
        { queue: s.queue, type: s.jobType, payload: s.payload ?? null, maxAttempts: s.maxAttempts || undefined, timeoutMs: s.timeout, priority: s.priority },
        { fields: SCHEDULE_JOB_FIELDS },
      );
      const created = await ctx.unitOfWork.run((tx) =>
        createSchedule(tx, {
          scheduleId: s.scheduleId,
          cron: s.cron,
          timeZone: s.timeZone,
          queue: valid.queue,
          jobType: valid.type,
          payloadJson: valid.payloadJson,
          priority: valid.priority,
          maxAttempts: valid.maxAttempts,
          timeoutMs: valid.timeoutMs,
          overlapPolicy: s.overlapPolicy,
          catchupWindowSeconds: s.catchupWindow ?? 0,
          paused: s.paused,
        }),
      );
      ctx.unitOfWork.describeChange(`schedules/${s.scheduleId}`, { cron: s.cron, time_zone: s.timeZone, job_type: s.jobType, overlap_policy: s.overlapPolicy, paused: s.paused });
      return { schedule: scheduleMessage(created!) };
    },

    async getSchedule(request, ctx) {
      const input = parseRequest(scheduleRef, request);
      return ctx.unitOfWork.run(async (tx) => {
        const schedule = await findSchedule(tx, input.scheduleId);
        const ticks = await tx.query<{ tick_time: Date; kind: TickKindName; outcome: TickOutcomeName; job_id: string | null }>(
          'SELECT tick_time, kind, outcome, job_id FROM scheduler_schedule_tick WHERE tenant_id = $1 AND schedule_id = $2 ORDER BY tick_time DESC LIMIT 100',
          [tx.tenantId, input.scheduleId],
        );
        return { schedule: scheduleMessage(schedule), recentTicks: ticks.map((t) => tickMessage({ time: t.tick_time, kind: t.kind, outcome: t.outcome, jobId: t.job_id })) };
      });
    },

    async listSchedules(request, ctx) {
      const { items, nextPageToken } = await paginate(ctx, request, {
        position: scheduleId,
        fetch: (after, limit) =>
          coldRead(ctx, deps.prismaReads, {
            operation: 'SELECT scheduler_schedule',
            prisma: (tx) => listSchedulesWithPrisma(tx, after ?? '', limit),
            pg: (tx) => listSchedules(tx, after ?? '', limit),
          }),
        positionOf: (schedule) => schedule.scheduleId,
      });
      return { schedules: items.map(scheduleMessage), nextPageToken };
    },

    async pauseSchedule(request, ctx) {
      const input = parseRequest(pauseSchema, request);
      const schedule = await ctx.unitOfWork.run((tx) => setPaused(tx, input.scheduleId, input.paused));
      ctx.unitOfWork.describeChange(`schedules/${input.scheduleId}`, { paused: input.paused });
      return { schedule: scheduleMessage(schedule) };
    },

    async triggerSchedule(request, ctx) {
      const input = parseRequest(scheduleRef, request);
      const tick = await ctx.unitOfWork.run((tx) => triggerSchedule(tx, input.scheduleId, ctx.trace));
      ctx.unitOfWork.describeChange(`schedules/${input.scheduleId}`, { trigger: tick.time.toISOString(), outcome: tick.outcome, job_id: tick.jobId ?? null });
      return { tick: tickMessage(tick) };
    },

    async backfillSchedule(request, ctx) {
      const input = parseRequest(backfillSchema, request);
      const ticks = await ctx.unitOfWork.run((tx) => backfillSchedule(tx, input.scheduleId, input.startTime, input.endTime, ctx.trace));
      ctx.unitOfWork.describeChange(`schedules/${input.scheduleId}`, {
        backfill_start: input.startTime.toISOString(),
        backfill_end: input.endTime.toISOString(),
        fired: ticks.length,
      });
      return { ticks: ticks.map(tickMessage) };
    },

    async leaseJobs(request, ctx) {
      const input = parseRequest(leaseSchema, request);
      const lease = {
        queue: input.queue,
        types: input.jobTypes,
        maxJobs: input.maxJobs,
        leaseMs: input.leaseDuration ?? DEFAULT_LEASE_MS,
        workerId: `${ctx.principal.subject}${input.workerId ? `/${input.workerId}` : ''}`.slice(0, 300),
      };
      const deadline = Date.now() + (input.wait ?? 0);
      for (;;) {
        // A caller that left (its deadline passed, it cancelled) while the claim ran gets no
        // lease: before COMMIT the claim is rolled back, after it the leases are given back —
        // QUEUED again, no attempt spent. (A response lost after it was sent cannot be told
        // apart; that lease lapses and is rescued.)
        const rows = await deps.db.inTenantTransaction(
          ctx.tenantId,
          async (tx) => {
            const leased = await leaseJobs(tx, lease);
            if (leased.length > 0 && ctx.signal.aborted) throw callerLeft();
            return leased;
          },
          { signal: ctx.signal },
        );
        if (rows.length > 0 && ctx.signal.aborted) {
          await deps.db.inTenantTransaction(ctx.tenantId, (tx) => releaseLeases(tx, rows));
          throw callerLeft();
        }
        if (rows.length > 0 || Date.now() >= deadline || ctx.signal.aborted) {
          if (rows.length > 0) ctx.log.info({ jobs: rows.map((r) => r.job_id), worker: lease.workerId }, 'leased jobs to a remote worker');
          return { leases: rows.map((r) => ({ job: jobMessage(r), leaseToken: Number(r.lease_token), leaseExpireTime: r.lease_expire_time! })) };
        }
        await wakeUp(deps.notifications, Math.min(1000, deadline - Date.now()), ctx.signal);
      }
    },

    async heartbeat(request, ctx) {
      const input = parseRequest(heartbeatSchema, request);
      const expires = await ctx.unitOfWork.run((tx) => heartbeat(tx, input.jobId, input.leaseToken, input.leaseDuration ?? DEFAULT_LEASE_MS));
      ctx.unitOfWork.describeChange(`jobs/${input.jobId}`, { lease_token: input.leaseToken, lease_expire_time: expires.toISOString() });
      return { leaseExpireTime: expires };
    },

    async completeJob(request, ctx) {
      const input = parseRequest(completeSchema, request);
      const job = await ctx.unitOfWork.run((tx) => completeJob(tx, input.jobId, input.leaseToken));
      ctx.unitOfWork.describeChange(`jobs/${input.jobId}`, { state: 'SUCCEEDED', lease_token: input.leaseToken });
      return { job: jobMessage(job) };
    },

    async failJob(request, ctx) {
      const input = parseRequest(failSchema, request);
      const job = await ctx.unitOfWork.run(async (tx) => {
        const current = await findJob(tx, input.jobId);
        const delay = input.retryDelay ?? retryDelayMs(current.attempt, current.backoff_base_ms);
        return failJob(tx, input.jobId, input.leaseToken, input.error || 'failed (no message)', delay, ctx.trace.traceId);
      });
      ctx.unitOfWork.describeChange(`jobs/${input.jobId}`, { state: job.state, attempt: job.attempt, lease_token: input.leaseToken });
      if (job.state === 'DEAD') ctx.log.error({ job_id: job.job_id, attempts: job.attempt, job_trace_id: job.trace_id }, 'job dead-lettered after its last attempt');
      return { job: jobMessage(job) };
    },
  };
}

const callerLeft = () => new KernelError(Status.CANCELLED, 'CANCELLED', 'the caller left before its leases could be handed over; they were given back');

/** Resolves on a job notification, after `ms`, or when the call is cancelled. */
function wakeUp(notifications: NotificationHub, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      unsubscribe();
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    const unsubscribe = notifications.subscribe(JOBS_CHANNEL, done);
    signal.addEventListener('abort', done, { once: true });
  });
}
