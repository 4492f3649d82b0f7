import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** Result of a closed-loop load run: throughput and latency percentiles in milliseconds. */
export interface LoadResult {
  calls: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  /** CPU time (user + system) the measured processes spent per call, in µs; when `cpuPids` were given. */
  cpuUsPerCall?: number;
  /** CPU time of this process (the load generator and its clients) per call, in µs. */
  clientCpuUsPerCall: number;
  /** CPU time of the PostgreSQL processes on the machine per call, in µs (Linux /proc; backends that exit mid-window are not counted). */
  postgresCpuUsPerCall?: number;
}

/** Options of a load run. */
export interface LoadOptions {
  /** Not counted: calls before the measured window. Default 1000 ms. */
  warmupMs?: number;
  /** Processes whose CPU time over the measured window is divided by the calls (Linux /proc). */
  cpuPids?: readonly number[];
}

/**
 * CPU time (user + system) a process has used so far, in ms, from /proc/<pid>/stat (Linux; clock
 * ticks of 10 ms, so measure over seconds). Undefined where /proc is not available.
 */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may contain spaces) — utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK). */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * CPU time (ms) used so far by each process whose command is `postgres` (the server and its
 * backends), by pid: compare two snapshots with {@link postgresCpuBetween}.
 */
export function postgresCpuMs(): Map<number, number> | undefined {
  try {
    const byPid = new Map<number, number>();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      } catch {
        continue; // exited meanwhile
      }
      if (!stat.includes(' (postgres) ')) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      byPid.set(Number(entry), ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND);
    }
    return byPid;
  } catch {
    return undefined;
  }
}

/**
 * PostgreSQL CPU (ms) between two snapshots: what every process alive at the end used since the
 * first (all of it for a backend started meanwhile). A backend that exited in between is not
 * counted (its CPU is no longer readable), so the figure is a lower bound, never negative.
 */
export function postgresCpuBetween(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, ms] of after) total += Math.max(0, ms - (before.get(pid) ?? 0));
  return total;
}

const cpuOf = (pids: readonly number[]) => {
  let total = 0;
  for (const pid of pids) {
    const ms = processCpuMs(pid);
    if (ms === undefined) return undefined;
    total += ms;
  }
  return total;
};

/**
 * Closed-loop load: `concurrency` callers each issue `call()` back to back for `durationMs`
 * (after `warmupMs` that is not counted). Every call is timed individually.
 */
export async function runLoad(call: (caller: number) => Promise<unknown>, concurrency: number, durationMs: number, options: number | LoadOptions = {}): Promise<LoadResult> {
  const { warmupMs = 1000, cpuPids = [] } = typeof options === 'number' ? { warmupMs: options } : options;
  const warmupEnd = performance.now() + warmupMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, caller) => {
      while (performance.now() < warmupEnd) await call(caller);
    }),
  );
  const latencies: number[] = [];
  const cpuBefore = cpuPids.length > 0 ? cpuOf(cpuPids) : undefined;
  const postgresBefore = postgresCpuMs();
  const clientBefore = process.cpuUsage();
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
  const cpuAfter = cpuBefore !== undefined ? cpuOf(cpuPids) : undefined;
  const client = process.cpuUsage(clientBefore);
  const postgresAfter = postgresBefore !== undefined ? postgresCpuMs() : undefined;
  const postgresMs = postgresBefore && postgresAfter ? postgresCpuBetween(postgresBefore, postgresAfter) : undefined;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => quantile(latencies, q) ?? 0;
  const cpuUsPerCall = cpuBefore !== undefined && cpuAfter !== undefined && latencies.length > 0 ? ((cpuAfter - cpuBefore) * 1000) / latencies.length : undefined;
  const calls = Math.max(1, latencies.length);
  return {
    calls: latencies.length,
    seconds,
    perSecond: latencies.length / seconds,
    p50: at(0.5),
    p99: at(0.99),
    cpuUsPerCall,
    clientCpuUsPerCall: (client.user + client.system) / calls,
    postgresCpuUsPerCall: postgresMs !== undefined ? (postgresMs * 1000) / calls : undefined,
  };
}

/** The q-quantile (0…1) of ascending `sorted` values: the value at rank ⌊q·n⌋ (the last for q = 1). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** One line describing the machine, for the README's record of measured figures. */
export function machineLine(): string {
  const os = require('node:os') as typeof import('node:os');
  return `${new Date().toISOString().slice(0, 10)} · ${os.cpus().length} × ${os.cpus()[0]?.model.trim()} · ${Math.round(os.totalmem() / 2 ** 30)} GiB · Node ${process.version}`;
}

/**
 * Where the machine's CPU went per call of a run: the measured server processes, this process
 * (the load generator and its clients) and PostgreSQL. On a machine whose cores all three share,
 * their sum bounds the calls per second.
 */
export function cpuBreakdown(r: LoadResult, server = 'kernel'): string {
  const part = (name: string, us: number | undefined) => (us === undefined ? [] : [`${name} ${fmt(us)}`]);
  return [...part(server, r.cpuUsPerCall), ...part('load generator', r.clientCpuUsPerCall), ...part('PostgreSQL', r.postgresCpuUsPerCall)].join(' + ') + ' µs/call';
}
