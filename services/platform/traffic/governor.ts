import { Status } from 'nice-grpc-common';
import type { Database } from '../database/database';
import { KernelError } from '../kernel-error';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import { dayEndMs, type Decision, type DecisionInput, type LimitCheck, type Limiter, type LimitName } from './limiter';
import { LocalLimiter } from './local-limiter';
import { costOf, intervalMs, type TrafficPolicy } from './policy';
import { PolicyCache } from './policy-cache';
import { readPolicy } from './policy-store';
import { RedisLimiter } from './redis-limiter';

export interface GovernorOptions {
  defaults: TrafficPolicy;
  /** How long a cached policy is served before a background reload. */
  policyRefreshMs: number;
  /** Cluster-wide state; unset: this node's memory only. */
  redisUrl?: string;
  redisTimeoutMs: number;
  redisKeyPrefix: string;
  /** How long decisions stay local after Redis failed, before Redis is tried again. */
  redisRetryMs?: number;
}

/** What an admitted call holds until it ends: its place among the tenant's calls in flight. */
export interface Admission {
  release(): void;
}

const WARN_EVERY_MS = 10_000;
/** RetryInfo of a CONCURRENCY_LIMITED refusal: when a slot frees is unknowable; a short wait is the honest hint. */
const CONCURRENCY_RETRY_MS = 50;

const LIMIT_DESCRIPTIONS: Record<LimitName, string> = {
  tenant: 'the tenant rate limit',
  principal: 'the per-principal rate limit',
  method: 'the per-method rate limit',
  daily: 'the daily quota',
};

/**
 * The traffic governor of one node (docs/capabilities/traffic.md): for each call, the tenant's
 * cached policy (PolicyCache — never read per call), the in-flight cap (this node), and ONE
 * limiter decision over the tenant, principal and method GCRA limits and the daily quota.
 *
 * With REDIS_URL the decision is one Lua script in Redis (cluster-wide). When Redis fails — down,
 * slower than the command timeout, or answering garbage — the node FAILS OPEN TO ITS OWN LIMITER
 * with the same policy (limits kept, per node, never off), counts
 * traffic_limiter_fallbacks_total{reason}, logs a warning at most every 10 s, and tries Redis
 * again after `redisRetryMs`.
 */
export class TrafficGovernor {
  readonly policies: PolicyCache;
  private readonly local = new LocalLimiter();
  private readonly redis?: RedisLimiter;
  private readonly inFlight = new Map<string, number>();
  private redisDownUntil = 0;
  private lastWarning = 0;
  private suppressedWarnings = 0;
  private knownMethods: () => ReadonlySet<string> = () => new Set();

  constructor(
    private readonly options: GovernorOptions,
    db: Database,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.policies = new PolicyCache((tenantId) => db.inTenantTransaction(tenantId, (tx) => readPolicy(tx), { readOnly: true }), options.defaults, options.policyRefreshMs, log);
    if (options.redisUrl) {
      this.redis = new RedisLimiter({ url: options.redisUrl, commandTimeoutMs: options.redisTimeoutMs, keyPrefix: options.redisKeyPrefix });
      this.redis.onError((error) => this.fellBack('connection', error));
    }
  }

  get defaults(): TrafficPolicy {
    return this.options.defaults;
  }

  get backend(): 'redis' | 'local' {
    return this.redis && Date.now() >= this.redisDownUntil ? 'redis' : 'local';
  }

  /** The method actions this node serves (per-method costs must name one). */
  setKnownMethods(read: () => ReadonlySet<string>): void {
    this.knownMethods = read;
  }

  methods(): ReadonlySet<string> {
    return this.knownMethods();
  }

  /** Connects to Redis when configured; failing to, the node starts on its own limiter (and retries). */
  async start(): Promise<void> {
    if (!this.redis) return;
    try {
      await this.redis.connect();
    } catch (error) {
      this.fellBack('connection', error);
    }
  }

  async stop(): Promise<void> {
    await this.redis?.close();
  }

  /**
   * Admits a call or throws RESOURCE_EXHAUSTED (RetryInfo: the exact time until the next
   * conforming call; QuotaFailure: which limit). No database work: the policy is cached.
   */
  async admit(tenantId: string, principal: string, action: string, options: { countInFlight: boolean }): Promise<Admission> {
    const cached = this.policies.get(tenantId);
    const policy = cached instanceof Promise ? await cached : cached;
    if (options.countInFlight) {
      const current = this.inFlight.get(tenantId) ?? 0;
      if (current >= policy.maxInFlight) {
        this.metrics.increment('traffic_decisions_total', { decision: 'refused', limit: 'in_flight', backend: 'local' });
        throw new KernelError(Status.RESOURCE_EXHAUSTED, 'CONCURRENCY_LIMITED', `the tenant has ${current} calls in flight, its limit`, {
          retryDelayMs: CONCURRENCY_RETRY_MS,
          metadata: { limit: 'in_flight', max_in_flight: String(policy.maxInFlight) },
          quotaViolations: [{ subject: `tenants/${tenantId}`, description: `at most ${policy.maxInFlight} calls in flight per node` }],
        });
      }
    }
    const input = decisionInput(tenantId, principal, action, policy);
    const { decision, backend } = await this.decide(input);
    this.metrics.increment('traffic_decisions_total', { decision: decision.allowed ? 'admitted' : 'refused', limit: decision.allowed ? 'none' : decision.limit, backend });
    if (!decision.allowed) throw refusal(tenantId, principal, action, decision, policy);
    if (!options.countInFlight) return { release: () => undefined };
    this.inFlight.set(tenantId, (this.inFlight.get(tenantId) ?? 0) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const left = (this.inFlight.get(tenantId) ?? 1) - 1;
        if (left <= 0) this.inFlight.delete(tenantId);
        else this.inFlight.set(tenantId, left);
      },
    };
  }

  /** The tenant's calls in flight on this node and its daily count (Redis, or this node when local). */
  async usage(tenantId: string): Promise<{ inFlight: number; dailyUsed: number; dailyResetTime: Date; backend: 'redis' | 'local' }> {
    const key = dailyKey(tenantId);
    let dailyUsed: number;
    let backend: 'redis' | 'local' = 'local';
    if (this.redis && this.backend === 'redis') {
      try {
        dailyUsed = await this.redis.dailyUsed(stateKey(tenantId));
        backend = 'redis';
      } catch (error) {
        this.fellBack(reasonOf(error), error);
        dailyUsed = this.local.dailyUsed(key);
      }
    } else {
      dailyUsed = this.local.dailyUsed(key);
    }
    return { inFlight: this.inFlight.get(tenantId) ?? 0, dailyUsed, dailyResetTime: new Date(dayEndMs(Date.now())), backend };
  }

  /** One decision without the in-flight cap (the benchmark's unit). */
  async decide(input: DecisionInput): Promise<{ decision: Decision; backend: 'redis' | 'local' }> {
    if (this.redis && Date.now() >= this.redisDownUntil) {
      try {
        return { decision: await this.redis.decide(input), backend: 'redis' };
      } catch (error) {
        this.fellBack(reasonOf(error), error);
      }
    }
    return { decision: this.local.decide(input), backend: 'local' };
  }

  private fellBack(reason: string, error: unknown): void {
    this.redisDownUntil = Date.now() + (this.options.redisRetryMs ?? 1000);
    this.metrics.increment('traffic_limiter_fallbacks_total', { reason });
    const now = Date.now();
    if (now - this.lastWarning < WARN_EVERY_MS) {
      this.suppressedWarnings += 1;
      return;
    }
    this.log.warn(
      { err: error, reason, suppressed: this.suppressedWarnings },
      'the Redis limiter failed: deciding on this node with the same policy (limits per node until Redis answers again)',
    );
    this.lastWarning = now;
    this.suppressedWarnings = 0;
  }
}

function reasonOf(error: unknown): string {
  if (error instanceof Error) {
    if (error.name === 'LimiterAnswerInvalid' || /reply|parse|protocol/i.test(error.message)) return 'garbage';
    if (/timed? ?out/i.test(error.message)) return 'timeout';
  }
  return 'unavailable';
}

const dailyKey = (tenantId: string) => `d:${tenantId}`;
const stateKey = (tenantId: string) => `{${tenantId}}`;

/** The limits that apply to a call, keyed by what they count (tenant, principal, method). */
export function decisionInput(tenantId: string, principal: string, action: string, policy: TrafficPolicy): DecisionInput {
  // In process the keys are global (tenant-prefixed); in Redis they are fields of the tenant's hash.
  const checks: LimitCheck[] = [{ key: `t:${tenantId}`, intervalMs: intervalMs(policy.tenant), burst: policy.tenant.burst, limit: 'tenant' }];
  if (policy.principal) checks.push({ key: `p:${tenantId}:${principal}`, intervalMs: intervalMs(policy.principal), burst: policy.principal.burst, limit: 'principal' });
  if (policy.method) checks.push({ key: `m:${tenantId}:${action}`, intervalMs: intervalMs(policy.method), burst: policy.method.burst, limit: 'method' });
  return { stateKey: stateKey(tenantId), checks, cost: costOf(policy, action), dailyKey: dailyKey(tenantId), dailyQuota: policy.dailyQuota };
}

function refusal(tenantId: string, principal: string, action: string, decision: Decision & { allowed: false }, policy: TrafficPolicy): KernelError {
  const reason = decision.limit === 'daily' ? 'DAILY_QUOTA_EXHAUSTED' : 'RATE_LIMITED';
  const subject =
    decision.limit === 'principal' ? `tenants/${tenantId}/principals/${principal}` : decision.limit === 'method' ? `tenants/${tenantId}/methods/${action}` : `tenants/${tenantId}`;
  const rate = decision.limit === 'daily' ? undefined : policy[decision.limit];
  const description = rate
    ? `${LIMIT_DESCRIPTIONS[decision.limit]}: ${rate.requests} per ${rate.periodMs} ms, burst ${rate.burst}`
    : `${LIMIT_DESCRIPTIONS.daily}: ${policy.dailyQuota} per UTC day`;
  // Rounded up to the microsecond: a retry after the hinted delay conforms.
  const retryDelayMs = Math.ceil(decision.retryAfterMs * 1000) / 1000;
  return new KernelError(Status.RESOURCE_EXHAUSTED, reason, `refused by ${LIMIT_DESCRIPTIONS[decision.limit]}; retry in ${retryDelayMs} ms`, {
    retryDelayMs,
    metadata: { limit: decision.limit },
    quotaViolations: [{ subject, description }],
  });
}
