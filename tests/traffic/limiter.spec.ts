import { randomUUID } from 'node:crypto';
import { Status } from 'nice-grpc-common';
import { KernelError } from '../../services/platform/kernel-error';
import { createLogger } from '../../services/platform/observability/logger';
import { Metrics } from '../../services/platform/observability/metrics';
import { decisionInput, TrafficGovernor } from '../../services/platform/traffic/governor';
import { DAY_MS, type DecisionInput } from '../../services/platform/traffic/limiter';
import { LocalLimiter } from '../../services/platform/traffic/local-limiter';
import type { TrafficPolicy } from '../../services/platform/traffic/policy';
import { RedisLimiter } from '../../services/platform/traffic/redis-limiter';
import { trafficService } from '../../services/traffic/traffic-service';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const policy = (over: Partial<TrafficPolicy> = {}): TrafficPolicy => ({
  tenant: { requests: 10, periodMs: 1000, burst: 3 },
  methodCosts: {},
  maxInFlight: 100,
  dailyQuota: 1_000_000,
  ...over,
});

describe('GCRA, in process', () => {
  let t = 1_000_000;
  const limiter = () => new LocalLimiter(() => t);

  test('burst at once, then one per emission interval; the refusal names the exact wait', () => {
    const l = limiter();
    const input = decisionInput('t', 'p', 'svc/M', policy());
    for (let i = 0; i < 3; i++) expect(l.decide(input).allowed).toBe(true);
    const refused = l.decide(input);
    expect(refused).toMatchObject({ allowed: false, limit: 'tenant' });
    expect(refused.allowed === false && refused.retryAfterMs).toBeCloseTo(100, 6);
    t += 99.9;
    expect(l.decide(input).allowed).toBe(false);
    t += 0.1;
    expect(l.decide(input).allowed).toBe(true);
    expect(l.decide(input).allowed).toBe(false);
  });

  test('over any window of length d at most burst + rate·d: a steady flood admits the rate', () => {
    const l = limiter();
    const input = decisionInput('flood', 'p', 'svc/M', policy({ tenant: { requests: 100, periodMs: 1000, burst: 20 } }));
    const admitted: number[] = [];
    const start = t;
    for (let i = 0; i < 10_000; i++) {
      t = start + i; // 1000 calls/s offered for 10 s
      if (l.decide(input).allowed) admitted.push(t);
    }
    expect(admitted.length).toBe(20 + 1000 - 1);
    for (let i = 0; i < admitted.length; i++) {
      const inWindow = admitted.filter((x) => x >= admitted[i] && x < admitted[i] + 1000).length;
      expect(inWindow).toBeLessThanOrEqual(20 + 100);
    }
  });

  test('cost weights count against the burst; all limits take a call or none does', () => {
    const l = limiter();
    const p = policy({ tenant: { requests: 10, periodMs: 1000, burst: 10 }, principal: { requests: 10, periodMs: 1000, burst: 2 }, methodCosts: { 'svc/Heavy': 5 } });
    expect(l.decide(decisionInput('w', 'alice', 'svc/Heavy', p))).toMatchObject({ allowed: false, limit: 'principal' });
    // Refused by the principal limit: the tenant's state did not move.
    expect(l.decide(decisionInput('w', 'bob', 'svc/Light', p)).allowed).toBe(true);
    expect(l.decide(decisionInput('w', 'carol', 'svc/Light', p)).allowed).toBe(true);
    const heavy = policy({ tenant: { requests: 10, periodMs: 1000, burst: 10 }, methodCosts: { 'svc/Heavy': 5 } });
    expect(l.decide(decisionInput('w2', 'a', 'svc/Heavy', heavy)).allowed).toBe(true);
    expect(l.decide(decisionInput('w2', 'a', 'svc/Heavy', heavy)).allowed).toBe(true);
    const refused = l.decide(decisionInput('w2', 'a', 'svc/Heavy', heavy));
    expect(refused.allowed === false && refused.retryAfterMs).toBeCloseTo(500, 6);
  });

  test('the daily quota refuses until the next UTC midnight, then counts again', () => {
    t = 5 * DAY_MS + 1000;
    const l = limiter();
    const input = decisionInput('q', 'p', 'svc/M', policy({ tenant: { requests: 1000, periodMs: 1, burst: 1000 }, dailyQuota: 3 }));
    for (let i = 0; i < 3; i++) expect(l.decide(input).allowed).toBe(true);
    expect(l.decide(input)).toMatchObject({ allowed: false, limit: 'daily', retryAfterMs: DAY_MS - 1000, dailyUsed: 3 });
    t = 6 * DAY_MS;
    expect(l.decide(input)).toMatchObject({ allowed: true, dailyUsed: 1 });
  });
});

describe('GCRA in Redis (one Lua script per decision)', () => {
  let redis: RedisLimiter;
  beforeAll(async () => {
    redis = new RedisLimiter({ url: REDIS_URL, commandTimeoutMs: 1000, keyPrefix: `test:${randomUUID()}:` });
    await redis.connect();
  });
  afterAll(() => redis.close());

  test('the same arithmetic as in process: burst, refusal with the wait, cost, daily count', async () => {
    const input: DecisionInput = decisionInput('r', 'p', 'svc/M', policy({ tenant: { requests: 10, periodMs: 1000, burst: 3 }, dailyQuota: 4 }));
    for (let i = 0; i < 3; i++) expect((await redis.decide(input)).allowed).toBe(true);
    const refused = await redis.decide(input);
    expect(refused).toMatchObject({ allowed: false, limit: 'tenant' });
    expect(refused.allowed === false && refused.retryAfterMs).toBeGreaterThan(80);
    expect(refused.allowed === false && refused.retryAfterMs).toBeLessThanOrEqual(100);
    await new Promise((r) => setTimeout(r, 110));
    expect(await redis.decide(input)).toMatchObject({ allowed: true, dailyUsed: 4 });
    await new Promise((r) => setTimeout(r, 110));
    expect(await redis.decide(input)).toMatchObject({ allowed: false, limit: 'daily' });
    expect(await redis.dailyUsed(input.stateKey)).toBe(4);
  });
});

describe('the governor', () => {
  const governor = (p: TrafficPolicy, metrics = new Metrics()) => {
    const db = { inTenantTransaction: async () => undefined } as never;
    return new TrafficGovernor({ defaults: p, policyRefreshMs: 60_000, redisTimeoutMs: 50, redisKeyPrefix: 'x' }, db, metrics, createLogger('silent'));
  };

  test('caps the calls in flight per tenant (CONCURRENCY_LIMITED with RetryInfo and QuotaFailure) and frees a slot when a call ends', async () => {
    const g = governor(policy({ tenant: { requests: 1000, periodMs: 1, burst: 1000 }, maxInFlight: 2 }));
    const a = await g.admit('c', 'p', 'svc/M', { countInFlight: true });
    await g.admit('c', 'p', 'svc/M', { countInFlight: true });
    const refused = await g.admit('c', 'p', 'svc/M', { countInFlight: true }).catch((e: KernelError) => e);
    expect(refused).toBeInstanceOf(KernelError);
    expect(refused).toMatchObject({ code: Status.RESOURCE_EXHAUSTED, reason: 'CONCURRENCY_LIMITED', options: { retryDelayMs: expect.any(Number), quotaViolations: [expect.anything()] } });
    // Another tenant is not affected.
    await g.admit('other', 'p', 'svc/M', { countInFlight: true });
    a.release();
    a.release(); // twice is once
    await g.admit('c', 'p', 'svc/M', { countInFlight: true });
    expect((await g.usage('c')).inFlight).toBe(2);
  });

  test('SetPolicy refuses non-finite, fractional, zero, negative and absurd numbers, and unknown methods, before any database work', async () => {
    const g = governor(policy());
    g.setKnownMethods(() => new Set(['svc/M']));
    const service = trafficService(g);
    const ctx = { unitOfWork: { run: () => Promise.reject(new Error('no database work for a bad request')) } } as never;
    const good = { tenantLimit: { requests: 10, period: { seconds: 1, nanos: 0 }, burst: 5 }, methodCosts: {}, maxInFlight: 10, dailyQuota: 100 };
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ tenantLimit: { ...good.tenantLimit, requests: Number.NaN } }, 'policy.tenant_limit.requests'],
      [{ tenantLimit: { ...good.tenantLimit, requests: Number.POSITIVE_INFINITY } }, 'policy.tenant_limit.requests'],
      [{ tenantLimit: { ...good.tenantLimit, burst: 2.5 } }, 'policy.tenant_limit.burst'],
      [{ tenantLimit: { ...good.tenantLimit, period: { seconds: Number.NaN, nanos: 0 } } }, 'policy.tenant_limit.period'],
      [{ principalLimit: { requests: 0, period: { seconds: 1, nanos: 0 }, burst: 1 } }, 'policy.principal_limit.requests'],
      [{ methodCosts: { 'svc/M': Number.NaN } }, 'policy.method_costs'],
      [{ methodCosts: { 'svc/M': -1 } }, 'policy.method_costs'],
      [{ maxInFlight: Number.NaN }, 'policy.max_in_flight'],
      [{ dailyQuota: 1e13 }, 'policy.daily_quota'],
    ];
    for (const [change, field] of cases) {
      const error = await service.setPolicy({ policy: { ...good, ...change } } as never, ctx).catch((e: KernelError) => e);
      expect(error).toBeInstanceOf(KernelError);
      expect([field, (error as KernelError).code]).toEqual([field, Status.INVALID_ARGUMENT]);
      expect((error as KernelError).options.fieldViolations!.map((v) => v.field).join(' ')).toContain(field);
    }
    const unknown = await service.setPolicy({ policy: { ...good, methodCosts: { 'svc/Other': 2 } } } as never, ctx).catch((e: KernelError) => e);
    expect(unknown).toMatchObject({ code: Status.INVALID_ARGUMENT, reason: 'METHOD_UNKNOWN' });
  });
});
