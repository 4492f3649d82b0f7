import { z } from 'zod';
import {
  NumberStatus,
  ResetPolicy,
  type SequenceNumber,
  type Series,
} from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import type { SequenceServiceImplementation } from '../../gen/proto/axis/kernel/sequences/v1/sequence_service';
import type { KernelCallContext } from '../platform/call-context';
import { decodePageToken, encodePageToken, pageSize } from '../platform/page-token';
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
import { SeriesStore, type SeriesRecord } from './series-store';

const PATTERN_INVALID = { reason: 'PATTERN_INVALID' };
const ENUM_UNSPECIFIED = { reason: 'ENUM_UNSPECIFIED' };

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

const resetPolicyNames: Record<number, ResetPolicyName> = {
  [ResetPolicy.RESET_POLICY_NEVER]: 'NEVER',
  [ResetPolicy.RESET_POLICY_YEARLY]: 'YEARLY',
  [ResetPolicy.RESET_POLICY_MONTHLY]: 'MONTHLY',
};
const statusNames: Record<number, NumberStatusName> = {
  [NumberStatus.NUMBER_STATUS_RESERVED]: 'RESERVED',
  [NumberStatus.NUMBER_STATUS_ISSUED]: 'ISSUED',
  [NumberStatus.NUMBER_STATUS_VOIDED]: 'VOIDED',
};
const statusValues: Record<NumberStatusName, NumberStatus> = {
  RESERVED: NumberStatus.NUMBER_STATUS_RESERVED,
  ISSUED: NumberStatus.NUMBER_STATUS_ISSUED,
  VOIDED: NumberStatus.NUMBER_STATUS_VOIDED,
};

const createSeriesSchema = z.object({
  series: z
    .object({
      seriesId,
      displayName: z.string().max(200, 'at most 200 characters'),
      pattern: z.string(),
      resetPolicy: z.number().refine((p) => p in resetPolicyNames, { message: 'must be NEVER, YEARLY or MONTHLY', params: ENUM_UNSPECIFIED }),
      startValue: z.number().int().min(0, 'must be ≥ 0').max(1e15, 'must be ≤ 10^15').default(1),
      timeZone: z.string().refine(isKnownTimeZone, { message: 'unknown IANA time zone', params: { reason: 'TIME_ZONE_UNKNOWN' } }),
      defaultReservationTtl: durationSeconds.optional(),
    })
    .superRefine((s, ctx) => {
      try {
        const parts = parsePattern(s.pattern);
        if (s.resetPolicy in resetPolicyNames) checkPatternFitsPolicy(parts, resetPolicyNames[s.resetPolicy]);
      } catch (error) {
        if (!(error instanceof PatternError)) throw error;
        ctx.addIssue({ code: 'custom', path: ['pattern'], message: error.message, params: PATTERN_INVALID });
      }
    })
    .optional()
    .refine((s) => s !== undefined, 'required'),
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
  status: z.number().refine((s) => s === NumberStatus.NUMBER_STATUS_UNSPECIFIED || s in statusNames, 'unknown status'),
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
    resetPolicy: Number(Object.entries(resetPolicyNames).find(([, name]) => name === series.resetPolicy)?.[0]) as ResetPolicy,
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
    status: statusValues[n.status],
    subjectRef: n.subjectRef,
    documentDate: n.documentDate,
    issueTime: n.issueTime,
    reservationExpireTime: n.reservationExpireTime,
    voidReason: n.voidReason ?? '',
    voidTime: n.voidTime,
  };
}

/**
 * K-M10 over gRPC: each handler decodes, validates, runs the use case in the call's unit of
 * work, names the changed resource for the audit entry, and encodes.
 */
export function sequenceService(store = new SeriesStore()): SequenceServiceImplementation<KernelCallContext> {
  const allocation = numberAllocation(store);
  return {
    async createSeries(request, ctx) {
      const { series: input } = parseRequest(createSeriesSchema, request);
      const s = input!;
      const created = await ctx.unitOfWork.run((tx) =>
        store.insert(tx, {
          seriesId: s.seriesId,
          displayName: s.displayName,
          pattern: s.pattern,
          resetPolicy: resetPolicyNames[s.resetPolicy],
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
      const size = pageSize(request.pageSize);
      const after = decodePageToken(ctx, request, seriesId) ?? '';
      const page = await ctx.unitOfWork.run((tx) => store.list(tx, after, size + 1));
      const more = page.length > size;
      const items = page.slice(0, size);
      return {
        series: items.map(seriesMessage),
        nextPageToken: more ? encodePageToken(ctx, request, items[items.length - 1].seriesId) : '',
      };
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
      const size = pageSize(input.pageSize);
      const after = decodePageToken(ctx, request, numberCursorSchema);
      const page = await ctx.unitOfWork.run(async (tx) =>
        listNumbers(tx, await store.find(tx, input.seriesId), { period: input.period, status: statusNames[input.status] }, after, size + 1),
      );
      const more = page.length > size;
      const items = page.slice(0, size);
      const last = items[items.length - 1];
      return {
        numbers: items.map(numberMessage),
        nextPageToken: more ? encodePageToken(ctx, request, { period: last.period, value: last.value }) : '',
      };
    },

    async getGapReport(request, ctx) {
      const input = parseRequest(gapReportSchema, request);
      const periods = await ctx.unitOfWork.run(async (tx) => gapReport(tx, await store.find(tx, input.seriesId), input.period));
      return {
        periods,
        complete: periods.every((p) => p.missingValues.length === 0 && p.voidedWithoutReason.length === 0),
      };
    },
  };
}
