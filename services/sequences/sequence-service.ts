import { z } from 'zod';
import {
  NumberStatus,
  ResetPolicy,
  type SequenceNumber,
  type Series,
} from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import type { SequenceServiceImplementation } from '../../gen/proto/axis/kernel/sequences/v1/sequence_service';
import type { KernelCallContext } from '../platform/call-context';
import { coldRead } from '../platform/cold-read';
import type { PrismaTenantReads } from '../platform/database/prisma-tenant-client';
import { paginate } from '../platform/page-token';
import { protoEnum } from '../platform/proto-enum';
import { parseRequest } from '../platform/request-validation';
import {
  commitReservation,
  gapReport,
  listNumbers,
  numberAllocation,
  numberResource,
  voidNumber,
  type NumberRecord,
  type NumberStatusName,
} from './number-ledger';
import { checkPatternFitsPolicy, isKnownTimeZone, parsePattern, PatternError, type ResetPolicyName } from './series-pattern';
import { listSeriesWithPrisma, SeriesStore, type SeriesRecord } from './series-store';

const PATTERN_INVALID = { reason: 'PATTERN_INVALID' };

const seriesId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be 1–63 characters of [a-z0-9._-], starting with a letter or digit');
const period = z.string().regex(/^$|^\d{4}$|^\d{4}-\d{2}$/, 'must be "", YYYY or YYYY-MM');
const subjectRef = z.string().max(255, 'at most 255 characters');
const value = z.number().int().min(0, 'must be ≥ 0');
const MAX_TTL_SECONDS = 7 * 24 * 3600;
const durationSeconds = z
  .object({ seconds: z.number(), nanos: z.number() })
  .transform((d) => d.seconds + d.nanos / 1e9)
  .pipe(z.number().min(1, 'at least 1 s').max(MAX_TTL_SECONDS, 'at most 7 days'))
  .transform(Math.ceil);

const resetPolicies = protoEnum<ResetPolicyName, ResetPolicy>({
  NEVER: ResetPolicy.RESET_POLICY_NEVER,
  YEARLY: ResetPolicy.RESET_POLICY_YEARLY,
  MONTHLY: ResetPolicy.RESET_POLICY_MONTHLY,
});
const numberStatuses = protoEnum<NumberStatusName, NumberStatus>({
  RESERVED: NumberStatus.NUMBER_STATUS_RESERVED,
  ISSUED: NumberStatus.NUMBER_STATUS_ISSUED,
  VOIDED: NumberStatus.NUMBER_STATUS_VOIDED,
});

const createSeriesSchema = z.object({
  series: z
    .object({
      seriesId,
      displayName: z.string().max(200, 'at most 200 characters'),
      pattern: z.string(),
      resetPolicy: resetPolicies.required(),
      startValue: z.number().int().min(0, 'must be ≥ 0').max(1e15, 'must be ≤ 10^15').default(1),
      timeZone: z.string().refine(isKnownTimeZone, { message: 'unknown IANA time zone', params: { reason: 'TIME_ZONE_UNKNOWN' } }),
      defaultReservationTtl: durationSeconds.optional(),
    })
    .superRefine((s, ctx) => {
      try {
        const parts = parsePattern(s.pattern);
        // The policy is a name once it parsed; a refused one has no name and is reported already.
        if (resetPolicies.names.includes(s.resetPolicy)) checkPatternFitsPolicy(parts, s.resetPolicy);
      } catch (error) {
        if (!(error instanceof PatternError)) throw error;
        ctx.addIssue({ code: 'custom', path: ['pattern'], message: error.message, params: PATTERN_INVALID });
      }
    })
    .optional()
    .refine((s) => s !== undefined, 'required')
    .transform((s) => s!),
});

const issueSchema = z.object({ seriesId, documentTime: z.date().optional(), subjectRef });
const reserveSchema = issueSchema.extend({ ttl: durationSeconds.optional() });
const numberRefSchema = z.object({ seriesId, period, value });
const voidSchema = numberRefSchema.extend({
  reason: z
    .string()
    .transform((r) => r.trim())
    .pipe(
      z
        .string()
        .refine((r) => r.length > 0, { message: 'a reason is required', params: { reason: 'VOID_REASON_REQUIRED' } })
        .refine((r) => r.length <= 500, 'at most 500 characters'),
    ),
});
const listNumbersSchema = z.object({
  seriesId,
  period: period.optional().transform((p) => p || undefined),
  status: numberStatuses.filter(),
  pageSize: z.number(),
  pageToken: z.string().max(1000),
});
/** A ListNumbers page token's position; value within JS's safe integers (z.int()). */
const numberCursorSchema = z.strictObject({ period, value });
const getSeriesSchema = z.object({ seriesId });
const commitSchema = numberRefSchema.extend({ subjectRef });
const gapReportSchema = z.object({ seriesId, period: period.transform((p) => p || undefined) });

function seriesMessage(series: SeriesRecord): Series {
  return {
    seriesId: series.seriesId,
    displayName: series.displayName,
    pattern: series.pattern,
    resetPolicy: resetPolicies.toProto(series.resetPolicy),
    startValue: series.startValue,
    timeZone: series.timeZone,
    defaultReservationTtl: { seconds: series.defaultReservationTtlSeconds, nanos: 0 },
    createTime: series.createTime,
  };
}

function numberMessage(n: NumberRecord): SequenceNumber {
  return {
    seriesId: n.seriesId,
    period: n.period,
    value: n.value,
    formatted: n.formatted,
    status: numberStatuses.toProto(n.status),
    subjectRef: n.subjectRef,
    documentDate: n.documentDate,
    issueTime: n.issueTime,
    reservationExpireTime: n.reservationExpireTime,
    voidReason: n.voidReason ?? '',
    voidTime: n.voidTime,
  };
}

/**
 * Sequence governance (docs/capabilities/sequences.md) over gRPC: each handler decodes, validates,
 * runs the use case in the call's unit of work, names the changed resource for the audit entry,
 * and encodes. ListSeries, a cold path, reads through Prisma Client when `prismaReads` is given
 * (docs/prisma.md).
 */
export function sequenceService(store = new SeriesStore(), prismaReads?: PrismaTenantReads): SequenceServiceImplementation<KernelCallContext> {
  const allocation = numberAllocation(store);
  return {
    async createSeries(request, ctx) {
      const { series: s } = parseRequest(createSeriesSchema, request);
      const created = await ctx.unitOfWork.run((tx) =>
        store.insert(tx, {
          seriesId: s.seriesId,
          displayName: s.displayName,
          pattern: s.pattern,
          resetPolicy: s.resetPolicy,
          startValue: s.startValue,
          timeZone: s.timeZone,
          defaultReservationTtlSeconds: s.defaultReservationTtl ?? 900,
        }),
      );
      ctx.unitOfWork.describeChange(`series/${created.seriesId}`, { pattern: created.pattern, reset_policy: created.resetPolicy });
      return { series: seriesMessage(created) };
    },

    async getSeries(request, ctx) {
      const { seriesId: id } = parseRequest(getSeriesSchema, request);
      return { series: seriesMessage(await ctx.unitOfWork.run((tx) => store.find(tx, id))) };
    },

    async listSeries(request, ctx) {
      const { items, nextPageToken } = await paginate(ctx, request, {
        position: seriesId,
        fetch: (after, limit) =>
          coldRead(ctx, prismaReads, {
            operation: 'SELECT sequence_series',
            prisma: (tx) => listSeriesWithPrisma(tx, after ?? '', limit),
            pg: (tx) => store.list(tx, after ?? '', limit),
          }),
        positionOf: (series) => series.seriesId,
      });
      return { series: items.map(seriesMessage), nextPageToken };
    },

    async issueNumber(request, ctx) {
      const input = parseRequest(issueSchema, request);
      const number = await ctx.unitOfWork.run((tx) =>
        tx.batch(allocation, { seriesId: input.seriesId, documentTime: input.documentTime ?? new Date(), subjectRef: input.subjectRef, traceId: ctx.trace.traceId }),
      );
      ctx.unitOfWork.describeChange(numberResource(number.seriesId, number.period, number.value), { status: 'ISSUED' });
      return { number: numberMessage(number) };
    },

    async reserveNumber(request, ctx) {
      const input = parseRequest(reserveSchema, request);
      const number = await ctx.unitOfWork.run((tx) =>
        tx.batch(allocation, {
          seriesId: input.seriesId,
          documentTime: input.documentTime ?? new Date(),
          subjectRef: input.subjectRef,
          traceId: ctx.trace.traceId,
          reserve: { ttlSeconds: input.ttl ?? 0 },
        }),
      );
      ctx.unitOfWork.describeChange(numberResource(number.seriesId, number.period, number.value), { status: 'RESERVED' });
      return { number: numberMessage(number) };
    },

    async commitReservation(request, ctx) {
      const input = parseRequest(commitSchema, request);
      const number = await ctx.unitOfWork.run(async (tx) =>
        commitReservation(tx, await store.find(tx, input.seriesId), input.period, input.value, input.subjectRef),
      );
      ctx.unitOfWork.describeChange(numberResource(number.seriesId, number.period, number.value), { status: 'ISSUED' });
      return { number: numberMessage(number) };
    },

    async voidNumber(request, ctx) {
      const input = parseRequest(voidSchema, request);
      const number = await ctx.unitOfWork.run(async (tx) =>
        voidNumber(tx, await store.find(tx, input.seriesId), input.period, input.value, input.reason),
      );
      // The reason is the caller's free text: it stays in the number row, not the audit detail.
      ctx.unitOfWork.describeChange(numberResource(number.seriesId, number.period, number.value), { status: 'VOIDED' });
      return { number: numberMessage(number) };
    },

    async listNumbers(request, ctx) {
      const input = parseRequest(listNumbersSchema, request);
      const { items, nextPageToken } = await paginate(ctx, request, {
        position: numberCursorSchema,
        fetch: (after, limit) =>
          ctx.unitOfWork.run(async (tx) => listNumbers(tx, await store.find(tx, input.seriesId), { period: input.period, status: input.status }, after, limit)),
        positionOf: (number) => ({ period: number.period, value: number.value }),
      });
      return { numbers: items.map(numberMessage), nextPageToken };
    },

    async getGapReport(request, ctx) {
      const input = parseRequest(gapReportSchema, request);
      const periods = await ctx.unitOfWork.run(async (tx) => gapReport(tx, await store.find(tx, input.seriesId), input.period));
      return {
        gapReport: {
          seriesId: input.seriesId,
          periods,
          complete: periods.every((p) => p.missingValues.length === 0 && p.voidedWithoutReason.length === 0),
        },
      };
    },
  };
}
