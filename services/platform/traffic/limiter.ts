/**
 * One limiter decision: every GCRA limit that applies to the call (tenant, principal, method)
 * and the daily quota, decided together — either all of them take the call's cost, or none does.
 */
export interface LimitCheck {
  /** The limit's state: a key in process, a field of the tenant's hash in Redis. */
  key: string;
  /** Emission interval of one cost unit, ms. */
  intervalMs: number;
  /** Cost units admitted at once. */
  burst: number;
  /** Which limit this is, named in QuotaFailure and the metrics. */
  limit: 'tenant' | 'principal' | 'method';
}

export interface DecisionInput {
  /** The tenant's state as a whole (Redis keeps all of a tenant's limits in one hash under it). */
  stateKey: string;
  checks: readonly LimitCheck[];
  cost: number;
  dailyKey: string;
  dailyQuota: number;
}

export type LimitName = LimitCheck['limit'] | 'daily';

export type Decision =
  | { allowed: true; dailyUsed: number }
  | { allowed: false; /** Exact ms until a call of this cost conforms to every limit. */ retryAfterMs: number; limit: LimitName; dailyUsed: number };

export interface Limiter {
  readonly backend: 'local' | 'redis';
  decide(input: DecisionInput): Promise<Decision> | Decision;
  dailyUsed(dailyKey: string): Promise<number> | number;
}

export const DAY_MS = 86_400_000;

/** The UTC day number of an instant (ms since the epoch) and when it ends. */
export const dayOf = (nowMs: number) => Math.floor(nowMs / DAY_MS);
export const dayEndMs = (nowMs: number) => (dayOf(nowMs) + 1) * DAY_MS;
