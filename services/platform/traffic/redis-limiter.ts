import Redis from 'ioredis';
import { dayEndMs, type Decision, type DecisionInput, type Limiter, type LimitName } from './limiter';

/**
 * The GCRA decision of local-limiter.ts as ONE atomic Lua script: one round trip per call,
 * whatever the number of limits. The clock is Redis's (TIME), so every kernel node measures
 * against the same one. ioredis sends it with EVALSHA and falls back to EVAL when the server does
 * not know the script yet (after a restart or SCRIPT FLUSH).
 *
 * All of a tenant's state is ONE hash (KEYS[1]), so a decision is four commands in Redis (TIME,
 * HMGET, HSET, PEXPIRE) and a tenant lives in one cluster slot: a field per GCRA limit (its TAT,
 * ms), `day` and `used` for the daily quota. The hash expires a day after the tenant's last
 * admitted call. Fields of principals and methods whose TAT has passed are dropped when the hash
 * grows beyond 1000 fields (checked only when a decision added a field).
 *
 * ARGV: n, cost, the daily quota, then field, interval and burst of each GCRA limit.
 * Answers {allowed (1/0), wait ms (string), index of the limiting limit (1..n, n+1 = daily), used}.
 */
const DECIDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local quota = tonumber(ARGV[3])
local fields = {'day', 'used'}
for i = 1, n do fields[i + 2] = ARGV[1 + 3 * i] end
local values = redis.call('HMGET', KEYS[1], unpack(fields))
local wait = 0
local which = 0
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[2 + 3 * i])
  local burst = tonumber(ARGV[3 + 3 * i])
  local tat = tonumber(values[i + 2]) or now
  if tat < now then tat = now end
  local newTat = tat + cost * interval
  local allowAt = newTat - burst * interval
  if allowAt > now and allowAt - now > wait then
    wait = allowAt - now
    which = i
  end
  tats[i] = newTat
end
local day = math.floor(now / 86400000)
local used = 0
if tonumber(values[1]) == day then used = tonumber(values[2]) or 0 end
if wait > 0 then
  return {0, string.format('%.3f', wait), which, used}
end
if used + cost > quota then
  return {0, string.format('%.3f', (day + 1) * 86400000 - now), n + 1, used}
end
used = used + cost
local update = {'day', day, 'used', used}
for i = 1, n do
  update[#update + 1] = ARGV[1 + 3 * i]
  update[#update + 1] = string.format('%.3f', tats[i])
end
local added = redis.call('HSET', KEYS[1], unpack(update))
redis.call('PEXPIRE', KEYS[1], 86400000 + 60000)
if added > 0 and redis.call('HLEN', KEYS[1]) > 1000 then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local field = all[i]
    if field ~= 'day' and field ~= 'used' and (tonumber(all[i + 1]) or 0) < now then redis.call('HDEL', KEYS[1], field) end
  end
end
return {1, '0', 0, used}
`;

const DAILY_USED = `
local t = redis.call('TIME')
local day = math.floor(tonumber(t[1]) / 86400)
local values = redis.call('HMGET', KEYS[1], 'day', 'used')
if tonumber(values[1]) == day then return tonumber(values[2]) or 0 end
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
    redis.defineCommand('trafficDecide', { numberOfKeys: 1, lua: DECIDE });
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
    const args: Array<string | number> = [input.stateKey, n, input.cost, input.dailyQuota];
    for (const check of input.checks) args.push(check.key, check.intervalMs, check.burst);
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

  async dailyUsed(stateKey: string): Promise<number> {
    const used = await this.redis.trafficDailyUsed(stateKey);
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
