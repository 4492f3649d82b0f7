import type { TenantTransaction } from '../platform/database/database';
import type { PrismaTenantTransaction } from '../platform/database/prisma-tenant-client';
import { sqlState } from '../platform/database/postgres-errors';
import { alreadyExists, notFound } from '../platform/kernel-error';
import { parsePattern, type PatternPart, type ResetPolicyName } from './series-pattern';

/** A series as stored, with its pattern parsed once. Series are immutable after creation. */
export interface SeriesRecord {
  tenantId: string;
  seriesId: string;
  displayName: string;
  pattern: string;
  parts: PatternPart[];
  resetPolicy: ResetPolicyName;
  startValue: number;
  timeZone: string;
  defaultReservationTtlSeconds: number;
  createTime: Date;
}

interface SeriesRow {
  tenant_id: string;
  series_id: string;
  display_name: string;
  pattern: string;
  reset_policy: ResetPolicyName;
  start_value: string;
  time_zone: string;
  default_reservation_ttl_seconds: number;
  create_time: Date;
}

const toRecord = (row: SeriesRow): SeriesRecord => ({
  tenantId: row.tenant_id,
  seriesId: row.series_id,
  displayName: row.display_name,
  pattern: row.pattern,
  parts: parsePattern(row.pattern),
  resetPolicy: row.reset_policy,
  startValue: Number(row.start_value),
  timeZone: row.time_zone,
  defaultReservationTtlSeconds: row.default_reservation_ttl_seconds,
  createTime: row.create_time,
});

const CACHE_LIMIT = 10_000;

export const seriesNotFound = (seriesId: string) =>
  notFound('SERIES_NOT_FOUND', `series ${seriesId} does not exist`, { resource: `series/${seriesId}` });

/**
 * Reads and writes series. Immutable series definitions are cached per (tenant, series) for
 * the life of one kernel instance; an entry only exists after the series was read inside that
 * tenant's own RLS-scoped transaction and that transaction committed, so the cache can neither
 * reveal one tenant's series to another nor remember a series that was rolled back.
 */
export class SeriesStore {
  private readonly cache = new Map<string, SeriesRecord>();

  async insert(tx: TenantTransaction, series: Omit<SeriesRecord, 'tenantId' | 'parts' | 'createTime'>): Promise<SeriesRecord> {
    try {
      const [row] = await tx.query<SeriesRow>(
        `INSERT INTO sequence_series (tenant_id, series_id, display_name, pattern, reset_policy, start_value, time_zone, default_reservation_ttl_seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *`,
        [tx.tenantId, series.seriesId, series.displayName, series.pattern, series.resetPolicy, series.startValue, series.timeZone, series.defaultReservationTtlSeconds],
      );
      return toRecord(row);
    } catch (error) {
      if (sqlState(error) === '23505') throw alreadyExists('SERIES_EXISTS', `series ${series.seriesId} already exists`, { resource: `series/${series.seriesId}` });
      throw error;
    }
  }

  async find(tx: TenantTransaction, seriesId: string): Promise<SeriesRecord> {
    const key = `${tx.tenantId}\u0000${seriesId}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const [row] = await tx.query<SeriesRow>('SELECT * FROM sequence_series WHERE tenant_id = $1 AND series_id = $2', [tx.tenantId, seriesId]);
    if (!row) throw seriesNotFound(seriesId);
    const record = toRecord(row);
    // Cached only once the reading transaction committed: a series created in a transaction
    // that then rolls back must not live on in memory.
    tx.onCommit(() => {
      if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value as string);
      this.cache.set(key, record);
    });
    return record;
  }

  async list(tx: TenantTransaction, after: string, limit: number): Promise<SeriesRecord[]> {
    const rows = await tx.query<SeriesRow>(
      'SELECT * FROM sequence_series WHERE tenant_id = $1 AND series_id > $2 ORDER BY series_id LIMIT $3',
      [tx.tenantId, after, limit],
    );
    return rows.map(toRecord);
  }
}

/**
 * ListSeries's page through Prisma Client (a cold read path, docs/prisma.md): the same rows in
 * the same order as {@link SeriesStore.list}, mapped by the same function.
 */
export async function listSeriesWithPrisma(tx: PrismaTenantTransaction, after: string, limit: number): Promise<SeriesRecord[]> {
  const rows = await tx.db.sequenceSeries.findMany({ where: { tenantId: tx.tenantId, seriesId: { gt: after } }, orderBy: { seriesId: 'asc' }, take: limit });
  return rows.map((r) =>
    toRecord({
      tenant_id: r.tenantId,
      series_id: r.seriesId,
      display_name: r.displayName,
      pattern: r.pattern,
      reset_policy: r.resetPolicy as ResetPolicyName,
      start_value: r.startValue.toString(),
      time_zone: r.timeZone,
      default_reservation_ttl_seconds: r.defaultReservationTtlSeconds,
      create_time: r.createTime,
    }),
  );
}
