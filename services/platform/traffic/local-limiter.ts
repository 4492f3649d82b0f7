import { performance } from 'node:perf_hooks';
import { dayEndMs, dayOf, type Decision, type DecisionInput, type Limiter, type LimitName } from './limiter';

const now = () => performance.timeOrigin + performance.now();

/**
 * GCRA (generic cell rate algorithm) in this process: per key, the theoretical arrival time (TAT)
 * of the next conforming cell. A call of cost c conforms when max(TAT, now) + c·T − burst·T ≤ now
 * (T the emission interval): never more than `burst` units at once, `requests` per `period` on
 * average, and the exact wait of a refused call is how far that bound lies in the future. No
 * windows, so no window edge admits a double burst. Memory: one number per active key; keys whose
 * TAT has passed (equivalent to a fresh key) are pruned every PRUNE_EVERY decisions.
 *
 * The same arithmetic runs in Redis (redis-limiter.ts) when the cluster shares the state.
 */
export class LocalLimiter implements Limiter {
  readonly backend = 'local' as const;
  private readonly tats = new Map<string, number>();
  private readonly daily = new Map<string, { day: number; used: number }>();
  private decisions = 0;
  private static readonly PRUNE_EVERY = 50_000;

  constructor(private readonly clock: () => number = now) {}

  decide(input: DecisionInput): Decision {
    const t = this.clock();
    if (++this.decisions % LocalLimiter.PRUNE_EVERY === 0) this.prune(t);
    let wait = 0;
    let limit: LimitName = 'tenant';
    const next: number[] = [];
    for (const check of input.checks) {
      const tat = Math.max(this.tats.get(check.key) ?? t, t);
      const newTat = tat + input.cost * check.intervalMs;
      const allowAt = newTat - check.burst * check.intervalMs;
      if (allowAt > t && allowAt - t > wait) {
        wait = allowAt - t;
        limit = check.limit;
      }
      next.push(newTat);
    }
    const day = dayOf(t);
    const entry = this.daily.get(input.dailyKey);
    const used = entry && entry.day === day ? entry.used : 0;
    if (wait > 0) return { allowed: false, retryAfterMs: wait, limit, dailyUsed: used };
    if (used + input.cost > input.dailyQuota) return { allowed: false, retryAfterMs: dayEndMs(t) - t, limit: 'daily', dailyUsed: used };
    input.checks.forEach((check, i) => this.tats.set(check.key, next[i]));
    this.daily.set(input.dailyKey, { day, used: used + input.cost });
    return { allowed: true, dailyUsed: used + input.cost };
  }

  dailyUsed(dailyKey: string): number {
    const entry = this.daily.get(dailyKey);
    return entry && entry.day === dayOf(this.clock()) ? entry.used : 0;
  }

  private prune(t: number): void {
    for (const [key, tat] of this.tats) if (tat <= t) this.tats.delete(key);
    const day = dayOf(t);
    for (const [key, entry] of this.daily) if (entry.day !== day) this.daily.delete(key);
  }
}
