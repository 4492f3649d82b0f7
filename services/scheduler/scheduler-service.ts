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
import type { Database } from '../platform/database/database';
import type { NotificationHub } from '../platform/database/notification-hub';
import { decodePageToken, encodePageToken, pageSize } from '../platform/page-token';
import { KernelError } from '../platform/kernel-error';
import { parseRequest } from '../platform/request-validation';
import { NAME_PATTERN } from '../platform/jobs';
import { JOB_DEFAULTS, insertJob, retryDelayMs, validateJobSpec } from './job-api';
import { cancelJob, completeJob, failJob, findJob, heartbeat, leaseJobs, listJobs, releaseLeases, type JobRow, type JobStateName } from './job-store';
import { JOBS_CHANNEL } from './scheduler-runtime';
import {
  backfillSchedule,
  createSchedule,
  cronOf,
  findSchedule,
  listSchedules,
  setPaused,
  triggerSchedule,
  type OverlapPolicy as OverlapName,
  type ScheduleRecord,
  type TickKind as TickKindName,
  type TickOutcome as TickOutcomeName,
} from './schedules';

const STATE_VALUES: Record<JobStateName, JobState> = {
  QUEUED: JobState.JOB_STATE_QUEUED,
  RUNNING: JobState.JOB_STATE_RUNNING,
  SUCCEEDED: JobState.JOB_STATE_SUCCEEDED,
  DEAD: JobState.JOB_STATE_DEAD,
  CANCELLED: JobState.JOB_STATE_CANCELLED,
};
const STATE_NAMES = Object.fromEntries(Object.entries(STATE_VALUES).map(([k, v]) => [v, k])) as Record<number, JobStateName>;
const OVERLAP_NAMES: Record<number, OverlapName> = {
  [OverlapPolicy.OVERLAP_POLICY_SKIP]: 'SKIP',
  [OverlapPolicy.OVERLAP_POLICY_BUFFER_ONE]: 'BUFFER_ONE',
  [OverlapPolicy.OVERLAP_POLICY_ALLOW_ALL]: 'ALLOW_ALL',
};
const OVERLAP_VALUES = Object.fromEntries(Object.entries(OVERLAP_NAMES).map(([k, v]) => [v, Number(k)])) as Record<OverlapName, OverlapPolicy>;
const KIND_VALUES: Record<TickKindName, TickKind> = { CRON: TickKind.TICK_KIND_CRON, TRIGGER: TickKind.TICK_KIND_TRIGGER, BACKFILL: TickKind.TICK_KIND_BACKFILL };
const OUTCOME_VALUES: Record<TickOutcomeName, TickOutcome> = {
  ENQUEUED: TickOutcome.TICK_OUTCOME_ENQUEUED,
  SKIPPED: TickOutcome.TICK_OUTCOME_SKIPPED,
  MISSED: TickOutcome.TICK_OUTCOME_MISSED,
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

const enqueueSchema = z.object({
  queue: z.string().transform((q) => q || JOB_DEFAULTS.queue).pipe(name),
  type: name,
  payload: z.unknown(),
  runAt: z
    .custom<Date | undefined>((d) => d === undefined || (d instanceof Date && Number.isFinite(d.getTime())), {
      message: 'must be a valid time within one year of now',
      params: { reason: 'RUN_AT_OUT_OF_RANGE' },
    })
    .optional(),
  priority: z.number().int().min(-1000, '-1000..1000').max(1000, '-1000..1000'),
  maxAttempts: z.number().int().min(0, '1–100 (0 means 25)').max(100, '1–100 (0 means 25)'),
  jobKey: z.string().max(255, 'at most 255 characters'),
  timeout: durationMs(10, 24 * 3600_000, '10 ms to 24 h').optional(),
  backoffBase: durationMs(1, 3600_000, '1 ms to 1 h').optional(),
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
      timeoutMs: z.number().int().min(0, '10 ms to 24 h (0 means 5 min)').max(24 * 3600_000, '10 ms to 24 h (0 means 5 min)'),
      overlapPolicy: z.number().refine((p) => p in OVERLAP_NAMES, { message: 'must be SKIP, BUFFER_ONE or ALLOW_ALL', params: { reason: 'ENUM_UNSPECIFIED' } }),
      catchupWindowSeconds: z.number().int().min(0, '0 to 7 days').max(7 * 86_400, '0 to 7 days'),
      paused: z.boolean(),
    })
    .optional()
    .refine((s) => s !== undefined, 'required'),
});

const getJobSchema = z.object({ jobId: jobIdField });
const listJobsSchema = z.object({
  state: z.number().refine((s) => s === JobState.JOB_STATE_UNSPECIFIED || s in STATE_NAMES, 'unknown state'),
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
  types: z.array(name).max(100, 'at most 100 types'),
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
    type: row.type,
    payload: row.payload,
    state: STATE_VALUES[row.state],
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    priority: row.priority,
    runAt: row.run_at,
    jobKey: row.job_key ?? '',
    scheduleId: row.schedule_id ?? '',
    traceId: row.trace_id,
    errors: row.errors.map((e) => ({ attempt: e.attempt, error: e.error, time: new Date(e.time), retryTime: e.retry_at ? new Date(e.retry_at) : undefined })),
    createTime: row.create_time,
    startTime: row.start_time ?? undefined,
    finishTime: row.finish_time ?? undefined,
    leaseExpireTime: row.lease_expire_time ?? undefined,
    timeoutMs: row.timeout_ms,
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
    timeoutMs: s.timeoutMs,
    overlapPolicy: OVERLAP_VALUES[s.overlapPolicy],
    catchupWindowSeconds: s.catchupWindowSeconds,
    paused: s.paused,
    nextFireTime: s.nextFireTime,
    lastFireTime: s.lastFireTime,
    createTime: s.createTime,
    updateTime: s.updateTime,
  };
}

const tickMessage = (t: { time: Date; kind: TickKindName; outcome: TickOutcomeName; jobId?: string | null }): ScheduleTick => ({
  tickTime: t.time,
  kind: KIND_VALUES[t.kind],
  outcome: OUTCOME_VALUES[t.outcome],
  jobId: t.jobId ?? '',
});

/** K-M5 over gRPC. `db` and `notifications` serve the long-poll LeaseJobs (outside the unit of work, see the proto). */
export function schedulerService(deps: { db: Database; notifications: NotificationHub }): SchedulerServiceImplementation<KernelCallContext> {
  return {
    async enqueueJob(request, ctx) {
      const input = parseRequest(enqueueSchema, request);
      const spec = {
        queue: input.queue,
        type: input.type,
        payload: input.payload ?? null,
        runAt: input.runAt,
        priority: input.priority,
        maxAttempts: input.maxAttempts || undefined,
        jobKey: input.jobKey || undefined,
        timeoutMs: input.timeout,
        backoffBaseMs: input.backoffBase,
      };
      validateJobSpec(spec);
      const { job, deduplicated } = await ctx.unitOfWork.run(async (tx) => {
        const { jobId, deduplicated } = await insertJob(tx, spec, ctx.trace);
        return { job: await findJob(tx, jobId), deduplicated };
      });
      ctx.unitOfWork.describeChange(`jobs/${job.job_id}`, { type: job.type, queue: job.queue, deduplicated });
      return { job: jobMessage(job), deduplicated };
    },

    async getJob(request, ctx) {
      const input = parseRequest(getJobSchema, request);
      return { job: jobMessage(await ctx.unitOfWork.run((tx) => findJob(tx, input.jobId))) };
    },

    async listJobs(request, ctx) {
      const input = parseRequest(listJobsSchema, request);
      const size = pageSize(input.pageSize);
      const after = decodePageToken(ctx, request, jobCursor);
      const rows = await ctx.unitOfWork.run((tx) => listJobs(tx, STATE_NAMES[input.state], after, size + 1));
      const items = rows.slice(0, size);
      const last = items[items.length - 1];
      return {
        jobs: items.map(jobMessage),
        nextPageToken: rows.length > size ? encodePageToken(ctx, request, last.job_id) : '',
      };
    },

    async cancelJob(request, ctx) {
      const input = parseRequest(getJobSchema, request);
      const job = await ctx.unitOfWork.run((tx) => cancelJob(tx, input.jobId));
      ctx.unitOfWork.describeChange(`jobs/${job.job_id}`, { state: 'CANCELLED' });
      return { job: jobMessage(job) };
    },

    async createSchedule(request, ctx) {
      const { schedule } = parseRequest(createScheduleSchema, request);
      const s = schedule!;
      cronOf(s.cron, s.timeZone);
      const valid = validateJobSpec({ queue: s.queue, type: s.jobType, payload: s.payload ?? null, maxAttempts: s.maxAttempts || undefined, timeoutMs: s.timeoutMs || undefined, priority: s.priority });
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
          overlapPolicy: OVERLAP_NAMES[s.overlapPolicy],
          catchupWindowSeconds: s.catchupWindowSeconds,
          paused: s.paused,
        }),
      );
      ctx.unitOfWork.describeChange(`schedules/${s.scheduleId}`, { cron: s.cron, time_zone: s.timeZone, job_type: s.jobType, overlap_policy: OVERLAP_NAMES[s.overlapPolicy], paused: s.paused });
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
      const size = pageSize(request.pageSize);
      const after = decodePageToken(ctx, request, scheduleId) ?? '';
      const rows = await ctx.unitOfWork.run((tx) => listSchedules(tx, after, size + 1));
      const items = rows.slice(0, size);
      return {
        schedules: items.map(scheduleMessage),
        nextPageToken: rows.length > size ? encodePageToken(ctx, request, items[items.length - 1].scheduleId) : '',
      };
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
        types: input.types,
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
