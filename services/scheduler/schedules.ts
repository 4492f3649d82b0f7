import type { TenantTransaction } from '../platform/database/database';
import type { PrismaTenantTransaction } from '../platform/database/prisma-tenant-client';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '../platform/kernel-error';
import { newSpanId, newTraceId, type TraceContext } from '../platform/trace-context';
import { CronError, parseCron, type CronSchedule } from './cron';
import { insertJob, uuidv7 } from './job-api';

export type OverlapPolicy = 'SKIP' | 'BUFFER_ONE' | 'ALLOW_ALL';
export type TickKind = 'CRON' | 'TRIGGER' | 'BACKFILL';
export type TickOutcome = 'ENQUEUED' | 'SKIPPED' | 'MISSED';

export interface ScheduleRecord {
  tenantId: string;
  scheduleId: string;
  cron: string;
  timeZone: string;
  queue: string;
  jobType: string;
  payload: unknown;
  priority: number;
  maxAttempts: number;
  timeoutMs: number;
  overlapPolicy: OverlapPolicy;
  catchupWindowSeconds: number;
  paused: boolean;
  nextFireTime: Date;
  lastFireTime?: Date;
  createTime: Date;
  updateTime: Date;
}

interface ScheduleRow {
  tenant_id: string;
  schedule_id: string;
  cron: string;
  time_zone: string;
  queue: string;
  job_type: string;
  payload: unknown;
  priority: number;
  max_attempts: number;
  timeout_ms: number;
  overlap_policy: OverlapPolicy;
  catchup_window_seconds: number;
  paused: boolean;
  next_fire_time: Date;
  last_fire_time: Date | null;
  create_time: Date;
  update_time: Date;
}

const toRecord = (r: ScheduleRow): ScheduleRecord => ({
  tenantId: r.tenant_id,
  scheduleId: r.schedule_id,
  cron: r.cron,
  timeZone: r.time_zone,
  queue: r.queue,
  jobType: r.job_type,
  payload: r.payload,
  priority: r.priority,
  maxAttempts: r.max_attempts,
  timeoutMs: r.timeout_ms,
  overlapPolicy: r.overlap_policy,
  catchupWindowSeconds: r.catchup_window_seconds,
  paused: r.paused,
  nextFireTime: r.next_fire_time,
  lastFireTime: r.last_fire_time ?? undefined,
  createTime: r.create_time,
  updateTime: r.update_time,
});

/** Parses the schedule's cron; a bad one is INVALID_ARGUMENT CRON_INVALID / TIME_ZONE_UNKNOWN. */
export function cronOf(cron: string, timeZone: string): CronSchedule {
  try {
    return parseCron(cron, timeZone);
  } catch (error) {
    if (!(error instanceof CronError)) throw error;
    const zone = /time zone/.test(error.message);
    throw invalidArgument(zone ? 'TIME_ZONE_UNKNOWN' : 'CRON_INVALID', error.message, [
      { field: zone ? 'schedule.time_zone' : 'schedule.cron', description: error.message },
    ]);
  }
}

export interface NewSchedule {
  scheduleId: string;
  cron: string;
  timeZone: string;
  queue: string;
  jobType: string;
  payloadJson: string;
  priority: number;
  maxAttempts: number;
  timeoutMs: number;
  overlapPolicy: OverlapPolicy;
  catchupWindowSeconds: number;
  paused: boolean;
}

/** Creates a schedule (ALREADY_EXISTS SCHEDULE_EXISTS); with `ifAbsent` an existing one is kept silently. */
export async function createSchedule(tx: TenantTransaction, s: NewSchedule, options: { ifAbsent?: boolean } = {}): Promise<ScheduleRecord | undefined> {
  const cron = cronOf(s.cron, s.timeZone);
  const rows = await tx.query<ScheduleRow>(
    `INSERT INTO scheduler_schedule (tenant_id, schedule_id, cron, time_zone, queue, job_type, payload, priority, max_attempts, timeout_ms,
                                     overlap_policy, catchup_window_seconds, paused, next_fire_time)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
     ON CONFLICT (tenant_id, schedule_id) DO NOTHING RETURNING *`,
    [
      tx.tenantId, s.scheduleId, s.cron, s.timeZone, s.queue, s.jobType, s.payloadJson, s.priority, s.maxAttempts, s.timeoutMs,
      s.overlapPolicy, s.catchupWindowSeconds, s.paused, cron.next(new Date()),
    ],
  );
  if (rows.length === 0) {
    if (options.ifAbsent) return undefined;
    throw alreadyExists('SCHEDULE_EXISTS', `schedule ${s.scheduleId} already exists`, { resource: `schedules/${s.scheduleId}` });
  }
  return toRecord(rows[0]);
}


export async function findSchedule(tx: TenantTransaction, scheduleId: string, lock = false): Promise<ScheduleRecord> {
  const [row] = await tx.query<ScheduleRow>(
    `SELECT * FROM scheduler_schedule WHERE tenant_id = $1 AND schedule_id = $2${lock ? ' FOR UPDATE' : ''}`,
    [tx.tenantId, scheduleId],
  );
  if (!row) throw notFound('SCHEDULE_NOT_FOUND', `schedule ${scheduleId} does not exist`, { resource: `schedules/${scheduleId}` });
  return toRecord(row);
}

export async function listSchedules(tx: TenantTransaction, after: string, limit: number): Promise<ScheduleRecord[]> {
  const rows = await tx.query<ScheduleRow>(
    'SELECT * FROM scheduler_schedule WHERE tenant_id = $1 AND schedule_id > $2 ORDER BY schedule_id LIMIT $3',
    [tx.tenantId, after, limit],
  );
  return rows.map(toRecord);
}

/**
 * ListSchedules's page through Prisma Client (a cold read path, docs/prisma.md): the same rows in
 * the same order as {@link listSchedules}, mapped by the same function.
 */
export async function listSchedulesWithPrisma(tx: PrismaTenantTransaction, after: string, limit: number): Promise<ScheduleRecord[]> {
  const rows = await tx.db.schedulerSchedule.findMany({ where: { tenantId: tx.tenantId, scheduleId: { gt: after } }, orderBy: { scheduleId: 'asc' }, take: limit });
  return rows.map((r) =>
    toRecord({
      tenant_id: r.tenantId,
      schedule_id: r.scheduleId,
      cron: r.cron,
      time_zone: r.timeZone,
      queue: r.queue,
      job_type: r.jobType,
      payload: r.payload,
      priority: r.priority,
      max_attempts: r.maxAttempts,
      timeout_ms: r.timeoutMs,
      overlap_policy: r.overlapPolicy as OverlapPolicy,
      catchup_window_seconds: r.catchupWindowSeconds,
      paused: r.paused,
      next_fire_time: r.nextFireTime,
      last_fire_time: r.lastFireTime,
      create_time: r.createTime,
      update_time: r.updateTime,
    }),
  );
}

/** Pauses or resumes; a resumed schedule continues from now (ticks while paused are not caught up). */
export async function setPaused(tx: TenantTransaction, scheduleId: string, paused: boolean): Promise<ScheduleRecord> {
  const s = await findSchedule(tx, scheduleId, true);
  const next = paused ? s.nextFireTime : cronOf(s.cron, s.timeZone).next(new Date());
  const [row] = await tx.query<ScheduleRow>(
    `UPDATE scheduler_schedule SET paused = $3, next_fire_time = $4, update_time = now()
     WHERE tenant_id = $1 AND schedule_id = $2 RETURNING *`,
    [tx.tenantId, scheduleId, paused, next],
  );
  return toRecord(row);
}

interface Tick {
  time: Date;
  kind: TickKind;
  outcome: TickOutcome;
  jobId?: string;
}

/**
 * Records ticks and enqueues their jobs. The tick rows' primary key is the exactly-once guard:
 * a tick already recorded (by another node, a trigger or an earlier backfill) is left alone and
 * enqueues nothing. Overlap policy per tick (for CRON and TRIGGER; BACKFILL always enqueues):
 * SKIP fires only when no job of the schedule is queued or running; BUFFER_ONE fires when no
 * job of it is waiting to start (at most one buffered behind a running one); ALLOW_ALL always.
 */
async function recordTicks(tx: TenantTransaction, s: ScheduleRecord, ticks: Array<{ time: Date; kind: TickKind; missed?: boolean }>, trace?: TraceContext): Promise<Tick[]> {
  if (ticks.length === 0) return [];
  const [active] = await tx.query<{ queued: number; running: number }>(
    `SELECT count(*) FILTER (WHERE state = 'QUEUED')::int AS queued, count(*) FILTER (WHERE state = 'RUNNING')::int AS running
     FROM scheduler_job WHERE tenant_id = $1 AND schedule_id = $2 AND state IN ('QUEUED', 'RUNNING')`,
    [tx.tenantId, s.scheduleId],
  );
  let { queued, running } = active;
  const planned: Tick[] = ticks.map((t) => {
    if (t.missed) return { time: t.time, kind: t.kind, outcome: 'MISSED' as const };
    const fire =
      t.kind === 'BACKFILL' || s.overlapPolicy === 'ALLOW_ALL' || (s.overlapPolicy === 'SKIP' ? queued + running === 0 : queued === 0);
    if (!fire) return { time: t.time, kind: t.kind, outcome: 'SKIPPED' as const };
    queued += 1;
    return { time: t.time, kind: t.kind, outcome: 'ENQUEUED' as const, jobId: uuidv7() };
  });
  const inserted = await tx.query<{ tick_time: Date }>(
    `INSERT INTO scheduler_schedule_tick (tenant_id, schedule_id, tick_time, kind, outcome, job_id)
     SELECT $1, $2, t.tick_time, t.kind, t.outcome, t.job_id
     FROM unnest($3::timestamptz[], $4::text[], $5::text[], $6::text[]) AS t(tick_time, kind, outcome, job_id)
     ON CONFLICT (tenant_id, schedule_id, tick_time) DO NOTHING
     RETURNING tick_time`,
    [tx.tenantId, s.scheduleId, planned.map((p) => p.time.toISOString()), planned.map((p) => p.kind), planned.map((p) => p.outcome), planned.map((p) => p.jobId ?? null)],
  );
  const fresh = new Set(inserted.map((r) => new Date(r.tick_time).getTime()));
  const done = planned.filter((p) => fresh.has(p.time.getTime()));
  for (const tick of done) {
    if (tick.outcome !== 'ENQUEUED') continue;
    await insertJob(
      tx,
      {
        jobId: tick.jobId,
        queue: s.queue,
        type: s.jobType,
        payload: s.payload,
        priority: s.priority,
        maxAttempts: s.maxAttempts,
        timeoutMs: s.timeoutMs,
        scheduleId: s.scheduleId,
        tickTime: tick.time,
      },
      trace ?? { traceId: newTraceId(), spanId: newSpanId(), sampled: true, restarted: true },
    );
  }
  return done;
}

/** Most missed ticks recorded in one pass; beyond that the schedule jumps ahead (bounded work). */
const MAX_TICKS_PER_PASS = 1000;

/**
 * Fires a due schedule, if this transaction can lock it (another node holding it ⇒ nothing to do):
 * every tick from next_fire_time up to now is recorded once — ticks older than the catch-up
 * window as MISSED, the others per the overlap policy — and next_fire_time moves past now.
 */
export async function fireDueSchedule(tx: TenantTransaction, scheduleId: string): Promise<Tick[]> {
  const [row] = await tx.query<ScheduleRow & { db_now: Date }>(
    `SELECT s.*, now() AS db_now FROM scheduler_schedule s
     WHERE tenant_id = $1 AND schedule_id = $2 AND NOT paused AND next_fire_time <= now() FOR UPDATE SKIP LOCKED`,
    [tx.tenantId, scheduleId],
  );
  if (!row) return [];
  const s = toRecord(row);
  const now = row.db_now;
  const cron = parseCron(s.cron, s.timeZone);
  const horizon = now.getTime() - s.catchupWindowSeconds * 1000;
  const ticks: Array<{ time: Date; kind: TickKind; missed?: boolean }> = [];
  let t = s.nextFireTime;
  while (t.getTime() <= now.getTime() && ticks.length < MAX_TICKS_PER_PASS) {
    ticks.push({ time: t, kind: 'CRON', missed: t.getTime() < horizon });
    t = cron.next(t);
  }
  if (t.getTime() <= now.getTime()) {
    // Too many missed ticks: skip to the catch-up window (the rest are neither fired nor recorded).
    t = cron.next(new Date(Math.max(t.getTime(), horizon) - 1));
    while (t.getTime() <= now.getTime() && ticks.length < MAX_TICKS_PER_PASS * 2) {
      ticks.push({ time: t, kind: 'CRON' });
      t = cron.next(t);
    }
  }
  const done = await recordTicks(tx, s, ticks);
  const fired = done.filter((d) => d.outcome === 'ENQUEUED');
  await tx.query(
    `UPDATE scheduler_schedule SET next_fire_time = $3, last_fire_time = coalesce($4, last_fire_time)
     WHERE tenant_id = $1 AND schedule_id = $2`,
    [tx.tenantId, scheduleId, t, fired.length > 0 ? fired[fired.length - 1].time : null],
  );
  return done;
}

/**
 * Fires the schedule now (kind TRIGGER, overlap policy applies); paused schedules can be triggered.
 * A tick's instant is kept to the millisecond (what a JavaScript Date holds) and is unique per
 * schedule: a trigger in the same millisecond as the schedule's latest tick — two triggers in one
 * commit group — takes the next millisecond instead of failing. The schedule row is locked first,
 * so the latest tick cannot move meanwhile.
 */
export async function triggerSchedule(tx: TenantTransaction, scheduleId: string, trace: TraceContext): Promise<Tick> {
  const s = await findSchedule(tx, scheduleId, true);
  const [{ now }] = await tx.query<{ now: Date }>(
    `SELECT greatest(date_trunc('milliseconds', clock_timestamp()),
                     (SELECT max(t.tick_time) + interval '1 millisecond' FROM scheduler_schedule_tick t WHERE t.tenant_id = $1 AND t.schedule_id = $2)) AS now`,
    [tx.tenantId, scheduleId],
  );
  const [tick] = await recordTicks(tx, s, [{ time: now, kind: 'TRIGGER' }], trace);
  if (!tick) throw failedPrecondition('TICK_EXISTS', 'a tick at this instant already exists; retry', { resource: `schedules/${scheduleId}` });
  return tick;
}

/** Fires the schedule's cron ticks in (start, end] that were never fired (at most 1000); returns them. */
export async function backfillSchedule(tx: TenantTransaction, scheduleId: string, start: Date, end: Date, trace: TraceContext): Promise<Tick[]> {
  const s = await findSchedule(tx, scheduleId, true);
  // Only the past: a backfilled future tick would fire now, and the real tick would then find
  // its slot taken and never fire at its time. The database's clock is the one ticks use.
  const [{ now }] = await tx.query<{ now: Date }>('SELECT now() AS now');
  if (end.getTime() > now.getTime()) {
    throw invalidArgument('BACKFILL_IN_FUTURE', 'end_time must not be later than now: only past ticks can be backfilled', [
      { field: 'end_time', description: `at most now (${now.toISOString()})` },
    ]);
  }
  const cron = parseCron(s.cron, s.timeZone);
  const times = cron.between(start, end, MAX_TICKS_PER_PASS + 1);
  if (times.length > MAX_TICKS_PER_PASS) {
    throw invalidArgument('BACKFILL_TOO_LARGE', `the range holds more than ${MAX_TICKS_PER_PASS} ticks`, [
      { field: 'end_time', description: `at most ${MAX_TICKS_PER_PASS} ticks per backfill` },
    ]);
  }
  return recordTicks(tx, s, times.map((time) => ({ time, kind: 'BACKFILL' as const })), trace);
}
