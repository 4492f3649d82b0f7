import Redis from 'ioredis';
import { dayEndMs, type Decision, type DecisionInput, type Limiter, type LimitName } from './limiter';

/**
 * The GCRA decision of local-limiter.ts as ONE atomic Lua script: one round trip per call,
 * whatever the number of limits. The clock is Redis's (TIME), so every kernel node measures
 * against the same one. ioredis sends it with EVALSHA and falls back to EVAL when the server does
 * not know the script yet (after a restart or SCRIPT FLUSH).
 *
 * KEYS: the n GCRA keys, then the daily quota key (a hash {day, used}).
 * ARGV: n, cost, then interval and burst of each GCRA key, then the daily quota.
 * Answers {allowed (1/0), wait ms (string), index of the limiting key (1..n, n+1 = daily), used}.
 */
const DECIDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local wait = 0
local which = 0
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if tat < now then tat = now end
  local newTat = tat + cost * interval
  local allowAt = newTat - burst * interval
  if allowAt > now and allowAt - now > wait then
    wait = allowAt - now
    which = i
  end
  tats[i] = newTat
end
local quota = tonumber(ARGV[3 + 2 * n])
local day = math.floor(now / 86400000)
local dailyKey = KEYS[n + 1]
local used = 0
if tonumber(redis.call('HGET', dailyKey, 'day') or '-1') == day then
  used = tonumber(redis.call('HGET', dailyKey, 'used') or '0') or 0
end
if wait > 0 then
  return {0, string.format('%.3f', wait), which, used}
end
if used + cost > quota then
  return {0, string.format('%.3f', (day + 1) * 86400000 - now), n + 1, used}
end
for i = 1, n do
  redis.call('SET', KEYS[i], string.format('%.3f', tats[i]), 'PX', math.ceil(tats[i] - now) + 1000)
end
used = used + cost
redis.call('HSET', dailyKey, 'day', day, 'used', used)
redis.call('PEXPIRE', dailyKey, 2 * 86400000)
return {1, '0', 0, used}
`;

const DAILY_USED = `
local t = redis.call('TIME')
local day = math.floor(tonumber(t[1]) / 86400)
if tonumber(redis.call('HGET', KEYS[1], 'day') or '-1') == day then
  return tonumber(redis.call('HGET', KEYS[1], 'used') or '0') or 0
end
return 0
`;

/** Redis answered something that is not the script's answer (a proxy, another server, a bug). */
export class LimiterAnswerInvalid extends Error {
  override readonly name = 'LimiterAnswerInvalid';
}

type ScriptRedis = Redis & {
  trafficDecide(...args: Array<string | number>): Promise<unknown>;
  trafficDailyUsed(key: string): Promise<unknown>;
};

export interface RedisLimiterOptions {
  url: string;
  /** Every command fails past this (then the governor decides locally). */
  commandTimeoutMs: number;
  /** Prefix of every key this limiter writes (one per deployment; tests use one per run). */
  keyPrefix: string;
}

/** The cluster-wide limiter: state in Redis, one script call per decision. */
export class RedisLimiter implements Limiter {
  readonly backend = 'redis' as const;
  private readonly redis: ScriptRedis;

  constructor(private readonly options: RedisLimiterOptions) {
    const redis = new Redis(options.url, {
      lazyConnect: true,
      keyPrefix: options.keyPrefix,
      commandTimeout: options.commandTimeoutMs,
      connectTimeout: Math.max(1000, options.commandTimeoutMs),
      // Never queue a decision behind a reconnect: it fails at once and the governor decides locally.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      enableReadyCheck: false,
      retryStrategy: (attempt) => Math.min(100 * 2 ** attempt, 5000),
    });
    redis.defineCommand('trafficDecide', { lua: DECIDE });
    redis.defineCommand('trafficDailyUsed', { numberOfKeys: 1, lua: DAILY_USED });
    this.redis = redis as ScriptRedis;
  }

  /** Registers an error listener (ioredis emits connection errors as events). */
  onError(listener: (error: Error) => void): void {
    this.redis.on('error', listener);
  }

  /** Connects (bounded by the connect timeout); a failure leaves ioredis reconnecting in the background. */
  async connect(): Promise<void> {
    await this.redis.connect();
  }

  async decide(input: DecisionInput): Promise<Decision> {
    const n = input.checks.length;
    const args: Array<string | number> = [n + 1, ...input.checks.map((c) => c.key), input.dailyKey, n, input.cost];
    for (const check of input.checks) args.push(check.intervalMs, check.burst);
    args.push(input.dailyQuota);
    const answer = await this.redis.trafficDecide(...args);
    if (!Array.isArray(answer) || answer.length !== 4) throw new LimiterAnswerInvalid('the limiter script answered no 4-element array');
    const [allowed, waitText, which, used] = answer as unknown[];
    const waitMs = Number(waitText);
    if ((allowed !== 0 && allowed !== 1) || !Number.isFinite(waitMs) || waitMs < 0 || typeof which !== 'number' || typeof used !== 'number') {
      throw new LimiterAnswerInvalid('the limiter script answered values of the wrong kind');
    }
    if (allowed === 1) return { allowed: true, dailyUsed: used };
    const limit: LimitName | undefined = which === n + 1 ? 'daily' : input.checks[which - 1]?.limit;
    if (!limit) throw new LimiterAnswerInvalid('the limiter script named no limit');
    return { allowed: false, retryAfterMs: waitMs, limit, dailyUsed: used };
  }

  async dailyUsed(dailyKey: string): Promise<number> {
    const used = await this.redis.trafficDailyUsed(dailyKey);
    if (typeof used !== 'number') throw new LimiterAnswerInvalid('the daily count is not a number');
    return used;
  }

  /** One PING round trip (the benchmark's yardstick). */
  async ping(): Promise<void> {
    await this.redis.ping();
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

export { dayEndMs };
