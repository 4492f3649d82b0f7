/**
 * Traffic governor benchmark (docs/capabilities/traffic.md): the cost of ONE limiter decision (tenant + principal +
 * method GCRA limits and the daily quota, all-or-nothing), in process and through Redis, next to
 * a bare Redis PING round trip measured in the same run (the floor of any Redis decision).
 * Targets: in process ≤ 2 µs per decision (p50); Redis ≤ 1.2 × one PING round trip.
 *
 *   npm run bench:traffic [-- --seconds 3 --redis redis://127.0.0.1:6379]
 *
 * Decisions are sequential (one in flight): the figures are latencies, and calls/s is their
 * inverse. Inside Redis the script costs ~15–20 µs (INFO commandstats, usec_per_call of EVALSHA:
 * TIME, HMGET, HSET, PEXPIRE and the Lua around them) against ~1.5 µs for a trivial script, which
 * is what separates a decision from a PING on a fast loopback. Keys rotate over 1000 tenants so the limiter's maps and Redis's keyspace are not one key.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { decisionInput } from '../services/platform/traffic/governor';
import { LocalLimiter } from '../services/platform/traffic/local-limiter';
import type { TrafficPolicy } from '../services/platform/traffic/policy';
import { RedisLimiter } from '../services/platform/traffic/redis-limiter';
import { machineLine, quantile } from './load';

const POLICY: TrafficPolicy = {
  tenant: { requests: 1_000_000, periodMs: 1000, burst: 1_000_000 },
  principal: { requests: 1_000_000, periodMs: 1000, burst: 1_000_000 },
  method: { requests: 1_000_000, periodMs: 1000, burst: 1_000_000 },
  methodCosts: {},
  maxInFlight: 1000,
  dailyQuota: 1_000_000_000_000,
};
const inputs = Array.from({ length: 1000 }, (_, i) => decisionInput(`tenant-${i}`, 'principal', 'axis.kernel.x.v1.XService/Method', POLICY));


function summary(name: string, samplesUs: number[], seconds: number): string {
  const sorted = Float64Array.from(samplesUs).sort();
  return `${name.padEnd(28)} ${String(Math.round(samplesUs.length / seconds)).padStart(10)} calls/s       p50 ${quantile(sorted, 0.5).toFixed(2).padStart(8)} µs   p99 ${quantile(sorted, 0.99).toFixed(2).padStart(8)} µs`;
}

async function main() {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' } } });
  const seconds = Number(values.seconds);
  process.stdout.write(`bench:traffic — ${machineLine()}\n`);

  // In process: batches of 100 decisions timed together (one decision is below the timer's resolution).
  const local = new LocalLimiter();
  for (let i = 0; i < 200_000; i++) local.decide(inputs[i % 1000]); // warm-up (JIT)
  const localSamples: number[] = [];
  let n = 0;
  const end = performance.now() + seconds * 1000;
  let started = performance.now();
  while (performance.now() < end) {
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) local.decide(inputs[n++ % 1000]);
    localSamples.push(((performance.now() - t0) * 1000) / 100);
  }
  const localSeconds = (performance.now() - started) / 1000;
  const localSorted = Float64Array.from(localSamples).sort();
  process.stdout.write(
    `${'in process (per decision)'.padEnd(28)} ${String(Math.round(n / localSeconds)).padStart(10)} decisions/s   p50 ${quantile(localSorted, 0.5).toFixed(3).padStart(8)} µs   p99 ${quantile(localSorted, 0.99).toFixed(3).padStart(8)} µs   (batches of 100)\n`,
  );

  // Redis: one EVALSHA per decision vs one PING, interleaved so both see the same load.
  const redis = new RedisLimiter({ url: values.redis!, commandTimeoutMs: 1000, keyPrefix: `bench:${randomUUID()}:` });
  await redis.connect();
  try {
    for (let i = 0; i < 2000; i++) {
      await redis.decide(inputs[i % 1000]);
      await redis.ping();
    }
    const decide: number[] = [];
    const ping: number[] = [];
    started = performance.now();
    const redisEnd = started + seconds * 1000;
    let i = 0;
    while (performance.now() < redisEnd) {
      const t0 = performance.now();
      await redis.decide(inputs[i++ % 1000]);
      const t1 = performance.now();
      await redis.ping();
      const t2 = performance.now();
      decide.push((t1 - t0) * 1000);
      ping.push((t2 - t1) * 1000);
    }
    const elapsed = (performance.now() - started) / 1000;
    // Each loop spends part of its time on the PING: per-kind rates are 1 / mean latency.
    const rate = (xs: number[]) => xs.length / (xs.reduce((a, b) => a + b, 0) / 1e6);
    process.stdout.write(`${summary('Redis decision (EVALSHA)', decide, decide.reduce((a, b) => a + b, 0) / 1e6)}\n`);
    process.stdout.write(`${summary('Redis PING round trip', ping, ping.reduce((a, b) => a + b, 0) / 1e6)}\n`);
    const p50 = (xs: number[]) => quantile(Float64Array.from(xs).sort(), 0.5);
    process.stdout.write(
      `ratio decision / PING: p50 ${(p50(decide) / p50(ping)).toFixed(2)} ×, mean ${(rate(ping) / rate(decide)).toFixed(2)} × (target ≤ 1.2 ×); ${decide.length} pairs in ${elapsed.toFixed(1)} s\n`,
    );
  } finally {
    await redis.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
