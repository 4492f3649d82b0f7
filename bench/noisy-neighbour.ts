/**
 * Noisy-neighbour benchmark (docs/capabilities/traffic.md): a quiet tenant's latency alone and
 * while another tenant floods at 10 × its limit, on one kernel process, in one run. The quiet
 * tenant calls GetPolicy (one database read per call) at a steady rate; the noisy tenant (limit
 * 10/s, burst 5) sends 100 GetUsage/s from its own process (tests/support/traffic-flood.ts) in
 * every other block of time, so "alone" and "with the flood" are interleaved and share the
 * machine's background load. Prints p50/p99/max of both and the noisy tenant's admitted/refused.
 *
 *   npm run bench:noisy-neighbour [-- --blocks 12 --block-ms 2000 --quiet-rate 40 --flood-rate 100]
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { closeKernelClient, createTrafficClient } from '../clients/src';
import { mintDevelopmentToken } from '../services/platform/auth/token-verifier';
import { spawnKernel } from '../tests/support/kernel-process';
import { createTestDatabase } from '../tests/support/test-database';
import { fmt, machineLine, quantile } from './load';

const ROOT = path.resolve(__dirname, '..');

async function main() {
  const { values } = parseArgs({
    options: {
      blocks: { type: 'string', default: '12' },
      'block-ms': { type: 'string', default: '2000' },
      'quiet-rate': { type: 'string', default: '40' },
      'flood-rate': { type: 'string', default: '100' },
    },
  });
  const blocks = Number(values.blocks);
  const blockMs = Number(values['block-ms']);
  const quietRate = Number(values['quiet-rate']);
  const floodRate = Number(values['flood-rate']);
  const secret = 'bench-secret-'.padEnd(40, 'x');
  const db = await createTestDatabase('axis_bench');
  const kernel = await spawnKernel({ DATABASE_URL: db.url, KERNEL_AUTH_SECRET: secret, LOG_LEVEL: 'warn' });
  try {
    const token = (tenant: string) => mintDevelopmentToken({ secret, subject: 'bench', tenants: [tenant], scope: 'traffic:read traffic:write' });
    const quiet = createTrafficClient({ address: kernel.address, tenantId: 'quiet', token: await token('quiet'), maxAttempts: 1 });
    const noisyAdmin = createTrafficClient({ address: kernel.address, tenantId: 'noisy', token: await token('noisy'), maxAttempts: 1 });
    const limit = { requests: 10, period: { seconds: 1, nanos: 0 }, burst: 5 };
    await noisyAdmin.setPolicy({ policy: { tenantLimit: limit, maxInFlight: 10_000, dailyQuota: 1_000_000_000, methodCosts: {} } });
    closeKernelClient(noisyAdmin);
    for (let i = 0; i < 100; i++) await quiet.getPolicy({}); // warm-up

    const start = Date.now() + 3000; // the flooder's start-up happens before
    const flooder = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'tests/support/traffic-flood.ts'), kernel.address, 'noisy', await token('noisy'), String(floodRate), String(start), String(blockMs), String(blocks)],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let report = '';
    flooder.stdout!.on('data', (chunk: Buffer) => (report += chunk.toString('utf8')));
    const finished = new Promise<number | null>((resolve) => flooder.once('exit', resolve));
    await sleep(Math.max(0, start - Date.now()));

    const shots: Array<Promise<{ sentAt: number; ms: number }>> = [];
    const total = Math.round((quietRate * blockMs * blocks) / 1000);
    for (let i = 0; i < total; ) {
      while (i < total && start + (i * 1000) / quietRate <= Date.now()) {
        const sentAt = Date.now();
        const t0 = performance.now();
        shots.push(quiet.getPolicy({}).then(() => ({ sentAt, ms: performance.now() - t0 })));
        i += 1;
      }
      await sleep(1);
    }
    const done = await Promise.all(shots);
    if ((await finished) !== 0) throw new Error('the flooder failed');
    closeKernelClient(quiet);
    const { admitted, refused } = JSON.parse(report) as { admitted: number; refused: Record<string, number> };

    // Block of a call by its send time; 10 % at each block edge left out.
    const blockOf = (t: number) => (t - start) / blockMs;
    const inside = done.filter((s) => blockOf(s.sentAt) % 1 > 0.1 && blockOf(s.sentAt) % 1 < 0.9);
    const stats = (xs: number[]) => {
      const sorted = [...xs].sort((a, b) => a - b);
      return { n: sorted.length, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted[sorted.length - 1] };
    };
    const alone = stats(inside.filter((s) => Math.floor(blockOf(s.sentAt)) % 2 === 0).map((s) => s.ms));
    const flooded = stats(inside.filter((s) => Math.floor(blockOf(s.sentAt)) % 2 === 1).map((s) => s.ms));
    console.log(`noisy-neighbour benchmark — ${machineLine()}`);
    console.log(`  quiet tenant: GetPolicy at ${quietRate}/s; noisy tenant: ${floodRate} GetUsage/s against a limit of 10/s (burst 5), in every other ${blockMs} ms block`);
    const line = (name: string, s: ReturnType<typeof stats>) =>
      console.log(`    ${name.padEnd(22)} ${String(s.n).padStart(5)} calls   p50 ${fmt(s.p50, 2).padStart(6)} ms   p99 ${fmt(s.p99, 2).padStart(6)} ms   max ${fmt(s.max, 2).padStart(6)} ms`);
    line('quiet, alone', alone);
    line('quiet, with the flood', flooded);
    console.log(`  quiet p99 with / without the flood: ${fmt(flooded.p99 / alone.p99, 2)} ×; noisy tenant admitted ${admitted}, refused ${JSON.stringify(refused)}`);
  } finally {
    await kernel.stop();
    await db.drop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
