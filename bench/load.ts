import { performance } from 'node:perf_hooks';

/** Result of a closed-loop load run: throughput and latency percentiles in milliseconds. */
export interface LoadResult {
  calls: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
}

/**
 * Closed-loop load: `concurrency` callers each issue `call()` back to back for `durationMs`
 * (after `warmupMs` that is not counted). Every call is timed individually.
 */
export async function runLoad(call: (caller: number) => Promise<unknown>, concurrency: number, durationMs: number, warmupMs = 1000): Promise<LoadResult> {
  const warmupEnd = performance.now() + warmupMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, caller) => {
      while (performance.now() < warmupEnd) await call(caller);
    }),
  );
  const latencies: number[] = [];
  const start = performance.now();
  const end = start + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, caller) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await call(caller);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { calls: latencies.length, seconds, perSecond: latencies.length / seconds, p50: at(0.5), p99: at(0.99) };
}

export const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** One line describing the machine, for the README's record of measured figures. */
export function machineLine(): string {
  const os = require('node:os') as typeof import('node:os');
  return `${new Date().toISOString().slice(0, 10)} · ${os.cpus().length} × ${os.cpus()[0]?.model.trim()} · ${Math.round(os.totalmem() / 2 ** 30)} GiB · Node ${process.version}`;
}
