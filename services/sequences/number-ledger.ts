import type { StatementBatcher, TenantTransaction } from '../platform/database/database';
import { failedPrecondition, invalidArgument, notFound } from '../platform/kernel-error';
import { FIELD_INVALID } from '../platform/request-validation';
import { isoDate, localDate, parseIsoDate, periodOf, renderNumber } from './series-pattern';
import type { SeriesRecord, SeriesStore } from './series-store';

export type NumberStatusName = 'RESERVED' | 'ISSUED' | 'VOIDED';

/** One number with everything a response needs. */
export interface NumberRecord {
  seriesId: string;
  period: string;
  value: number;
  formatted: string;
  status: NumberStatusName;
  subjectRef: string;
  documentDate: string;
  issueTime: Date;
  reservationExpireTime?: Date;
  voidReason?: string;
  voidTime?: Date;
}

interface NumberRow {
  series_id: string;
  period: string;
  value: string;
  status: NumberStatusName;
  subject_ref: string;
  document_date: string;
  issue_time: Date;
  reservation_expire_time: Date | null;
  void_reason: string | null;
  void_time: Date | null;
}

const NUMBER_COLUMNS = `series_id, period, value, status, subject_ref, to_char(document_date, 'YYYY-MM-DD') AS document_date,
  issue_time, reservation_expire_time, void_reason, void_time`;

export const numberResource = (seriesId: string, period: string, value: number) =>
  `series/${seriesId}/periods/${period || '-'}/numbers/${value}`;

function toNumber(series: SeriesRecord, row: NumberRow): NumberRecord {
  const value = Number(row.value);
  return {
    seriesId: row.series_id,
    period: row.period,
    value,
    formatted: renderNumber(series.parts, value, parseIsoDate(row.document_date)),
    status: row.status,
    subjectRef: row.subject_ref,
    documentDate: row.document_date,
    issueTime: row.issue_time,
    reservationExpireTime: row.reservation_expire_time ?? undefined,
    voidReason: row.void_reason ?? undefined,
    voidTime: row.void_time ?? undefined,
  };
}

export interface AllocateRequest {
  seriesId: string;
  documentTime: Date;
  subjectRef: string;
  traceId: string;
  /** ReserveNumber: the number is RESERVED for this long (0: the series' default ttl). */
  reserve?: { ttlSeconds: number };
}

interface AllocationAsk {
  series: SeriesRecord;
  period: string;
  documentDate: string;
  request: AllocateRequest;
  reserveForSeconds?: number;
}

/**
 * Number allocation as a set-based statement (see StatementBatcher): takes the next value of the
 * document's period and records it. The counter row's lock orders concurrent callers: they
 * queue, none fails (no NOWAIT), and a rolled-back caller returns its value with its
 * transaction, so there is never a gap.
 *
 * The calls of a commit group that ask for numbers of one series are served together: the series
 * definition (immutable; cached once committed) is read once, and one statement per period
 * advances the counter by n and records the n numbers, in the order the calls asked. Series are
 * served in id order and periods in order, so groups on any nodes lock counter rows in one
 * global order and never deadlock on them.
 */
export function numberAllocation(store: SeriesStore): StatementBatcher<AllocateRequest, NumberRecord> {
  return {
    name: 'sequence number allocation',
    key: (request) => request.seriesId,
    async run(tx, requests) {
      let series: SeriesRecord;
      try {
        series = await store.find(tx, requests[0].seriesId);
      } catch (error) {
        return requests.map(() => error as Error);
      }
      const results: Array<NumberRecord | Error> = new Array(requests.length);
      const byPeriod = new Map<string, Array<AllocationAsk & { at: number }>>();
      requests.forEach((request, at) => {
        // A timestamp inside protobuf's range can still fall outside years 0001–9999 once seen in
        // the series' time zone (9999-12-31T23:00Z is year 10000 in UTC+14): it has no period.
        const date = localDate(request.documentTime, series.timeZone);
        if (date.year < 1 || date.year > 9999) {
          results[at] = invalidArgument(FIELD_INVALID, `the document date in ${series.timeZone} must fall within the years 0001–9999`, [
            { field: 'document_time', description: `in ${series.timeZone} it falls in year ${date.year}` },
          ]);
          return;
        }
        const period = periodOf(date, series.resetPolicy);
        const ask = { series, period, documentDate: isoDate(date), request, at, reserveForSeconds: request.reserve && (request.reserve.ttlSeconds || series.defaultReservationTtlSeconds) };
        const bucket = byPeriod.get(period);
        if (bucket) bucket.push(ask);
        else byPeriod.set(period, [ask]);
      });
      for (const period of [...byPeriod.keys()].sort()) {
        const asks = byPeriod.get(period)!;
        const numbers = await allocateMany(tx, asks);
        asks.forEach((ask, i) => (results[ask.at] = numbers[i]));
      }
      return results;
    },
  };
}

async function allocateMany(tx: TenantTransaction, asks: readonly AllocationAsk[]): Promise<NumberRecord[]> {
  const { series, period } = asks[0];
  const rows = await tx.query<NumberRow>(
    `WITH counter AS (
       INSERT INTO sequence_counter AS c (tenant_id, series_id, period, next_value)
       VALUES ($1, $2, $3, $4::bigint + $5::bigint)
       ON CONFLICT (tenant_id, series_id, period) DO UPDATE SET next_value = c.next_value + $5::bigint
       RETURNING c.next_value - $5::bigint AS first_value
     )
     INSERT INTO sequence_number (tenant_id, series_id, period, value, status, subject_ref, document_date, reservation_expire_time, trace_id)
     SELECT $1, $2, $3, counter.first_value + a.ord - 1, a.status, a.subject_ref, a.document_date::date,
            CASE WHEN a.ttl_seconds IS NULL THEN NULL ELSE now() + make_interval(secs => a.ttl_seconds) END, a.trace_id
       FROM counter,
            unnest($6::text[], $7::text[], $8::text[], $9::integer[], $10::text[])
              WITH ORDINALITY AS a(status, subject_ref, document_date, ttl_seconds, trace_id, ord)
     RETURNING ${NUMBER_COLUMNS}`,
    [
      tx.tenantId,
      series.seriesId,
      period,
      series.startValue,
      asks.length,
      asks.map((a) => (a.reserveForSeconds === undefined ? 'ISSUED' : 'RESERVED')),
      asks.map((a) => a.request.subjectRef),
      asks.map((a) => a.documentDate),
      asks.map((a) => a.reserveForSeconds ?? null),
      asks.map((a) => a.request.traceId),
    ],
  );
  // RETURNING has no guaranteed order; values are contiguous, so each ask's is first + its index.
  const first = Math.min(...rows.map((r) => Number(r.value)));
  const byIndex = new Array<NumberRecord>(asks.length);
  for (const row of rows) byIndex[Number(row.value) - first] = toNumber(series, row);
  return byIndex;
}

const numberNotFound = (series: SeriesRecord, period: string, value: number) =>
  notFound('NUMBER_NOT_FOUND', `number ${value} of period "${period}" does not exist`, {
    resource: numberResource(series.seriesId, period, value),
  });

async function lockNumber(tx: TenantTransaction, series: SeriesRecord, period: string, value: number) {
  const [row] = await tx.query<NumberRow & { expired: boolean }>(
    `SELECT ${NUMBER_COLUMNS}, reservation_expire_time <= now() AS expired
       FROM sequence_number WHERE tenant_id = $1 AND series_id = $2 AND period = $3 AND value = $4 FOR UPDATE`,
    [tx.tenantId, series.seriesId, period, value],
  );
  if (!row) throw numberNotFound(series, period, value);
  return row;
}

/** RESERVED → ISSUED, unless the reservation lapsed (the sweeper voids it). */
export async function commitReservation(tx: TenantTransaction, series: SeriesRecord, period: string, value: number, subjectRef: string): Promise<NumberRecord> {
  const current = await lockNumber(tx, series, period, value);
  const resource = numberResource(series.seriesId, period, value);
  if (current.status === 'RESERVED' && current.expired) {
    throw failedPrecondition('RESERVATION_EXPIRED', 'the reservation has expired; the number will be voided', { resource });
  }
  if (current.status !== 'RESERVED') {
    throw failedPrecondition('NUMBER_NOT_RESERVED', `the number is ${current.status}, not RESERVED`, { resource, status: current.status });
  }
  const [row] = await tx.query<NumberRow>(
    `UPDATE sequence_number SET status = 'ISSUED', issue_time = now(), reservation_expire_time = NULL,
            subject_ref = CASE WHEN $5 = '' THEN subject_ref ELSE $5 END
      WHERE tenant_id = $1 AND series_id = $2 AND period = $3 AND value = $4 AND status = 'RESERVED'
      RETURNING ${NUMBER_COLUMNS}`,
    [tx.tenantId, series.seriesId, period, value, subjectRef],
  );
  return toNumber(series, row);
}

/** ISSUED or RESERVED → VOIDED with a reason. The value is never handed out again. */
export async function voidNumber(tx: TenantTransaction, series: SeriesRecord, period: string, value: number, reason: string): Promise<NumberRecord> {
  const current = await lockNumber(tx, series, period, value);
  if (current.status === 'VOIDED') {
    throw failedPrecondition('NUMBER_ALREADY_VOIDED', 'the number is already voided', { resource: numberResource(series.seriesId, period, value) });
  }
  const [row] = await tx.query<NumberRow>(
    `UPDATE sequence_number SET status = 'VOIDED', void_reason = $5, void_time = now(), reservation_expire_time = NULL
      WHERE tenant_id = $1 AND series_id = $2 AND period = $3 AND value = $4 AND status <> 'VOIDED'
      RETURNING ${NUMBER_COLUMNS}`,
    [tx.tenantId, series.seriesId, period, value, reason],
  );
  return toNumber(series, row);
}

export interface NumberPageCursor {
  period: string;
  value: number;
}

export async function listNumbers(
  tx: TenantTransaction,
  series: SeriesRecord,
  filter: { period?: string; status?: NumberStatusName },
  after: NumberPageCursor | undefined,
  limit: number,
): Promise<NumberRecord[]> {
  const rows = await tx.query<NumberRow>(
    `SELECT ${NUMBER_COLUMNS} FROM sequence_number
      WHERE tenant_id = $1 AND series_id = $2
        AND ($3::text IS NULL OR period = $3) AND ($4::text IS NULL OR status = $4)
        AND ($5::text IS NULL OR (period, value) > ($5, $6::bigint))
      ORDER BY period, value LIMIT $7`,
    [tx.tenantId, series.seriesId, filter.period ?? null, filter.status ?? null, after?.period ?? null, after?.value ?? 0, limit],
  );
  return rows.map((row) => toNumber(series, row));
}

export interface PeriodGaps {
  period: string;
  firstValue: number;
  lastValue: number;
  issuedCount: number;
  voidedCount: number;
  reservedCount: number;
  missingValues: number[];
  voidedWithoutReason: number[];
}

const MAX_LISTED = 1000;

/**
 * Accounts for every value the counters ever handed out: for each period, every value from the
 * series' start to the counter's last must exist in exactly one state, and every void must
 * carry a reason. Built from the counters (not the numbers) so a missing tail is caught too.
 */
export async function gapReport(tx: TenantTransaction, series: SeriesRecord, period: string | undefined): Promise<PeriodGaps[]> {
  const rows = await tx.query<{
    period: string;
    last_value: string;
    issued: string;
    voided: string;
    reserved: string;
    missing: string[] | null;
    unexplained: string[] | null;
  }>(
    `SELECT c.period, c.next_value - 1 AS last_value,
            (SELECT count(*) FROM sequence_number n WHERE n.tenant_id = c.tenant_id AND n.series_id = c.series_id AND n.period = c.period AND n.status = 'ISSUED') AS issued,
            (SELECT count(*) FROM sequence_number n WHERE n.tenant_id = c.tenant_id AND n.series_id = c.series_id AND n.period = c.period AND n.status = 'VOIDED') AS voided,
            (SELECT count(*) FROM sequence_number n WHERE n.tenant_id = c.tenant_id AND n.series_id = c.series_id AND n.period = c.period AND n.status = 'RESERVED') AS reserved,
            ARRAY(SELECT g.v FROM generate_series($3::bigint, c.next_value - 1) AS g(v)
                   WHERE NOT EXISTS (SELECT 1 FROM sequence_number n WHERE n.tenant_id = c.tenant_id AND n.series_id = c.series_id AND n.period = c.period AND n.value = g.v)
                   ORDER BY g.v LIMIT ${MAX_LISTED}) AS missing,
            ARRAY(SELECT n.value FROM sequence_number n
                   WHERE n.tenant_id = c.tenant_id AND n.series_id = c.series_id AND n.period = c.period
                     AND n.status = 'VOIDED' AND coalesce(n.void_reason, '') = ''
                   ORDER BY n.value LIMIT ${MAX_LISTED}) AS unexplained
       FROM sequence_counter c
      WHERE c.tenant_id = $1 AND c.series_id = $2 AND ($4::text IS NULL OR c.period = $4)
      ORDER BY c.period`,
    [tx.tenantId, series.seriesId, series.startValue, period ?? null],
  );
  return rows.map((r) => ({
    period: r.period,
    firstValue: series.startValue,
    lastValue: Number(r.last_value),
    issuedCount: Number(r.issued),
    voidedCount: Number(r.voided),
    reservedCount: Number(r.reserved),
    missingValues: (r.missing ?? []).map(Number),
    voidedWithoutReason: (r.unexplained ?? []).map(Number),
  }));
}
