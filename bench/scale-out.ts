/**
 * Scale-out benchmark (docs/architecture.md): what a SECOND kernel process over the same
 * PostgreSQL gives, and what it costs. In one run, on one database:
 *
 *   - one node, `concurrency` callers;
 *   - two nodes, the same callers split evenly between them (caller i → node i mod 2);
 *
 * for IssueNumber on ONE hot series (every number of every node serialises on the same counter
 * row: the hot-row contention a second node adds) and for Ed25519 Sign (no shared row but the
 * tenant's audit head). Each line prints calls/s, p50/p99 and the kernels' CPU per call (both
 * processes' CPU over the window ÷ calls). Then the proofs that scale-out kept the laws:
 * every number issued by either node is distinct and the series has no gap (numbers seen ==
 * highest value == gap report complete), and every answered Sign left its audit entry.
 *
 *   npm run bench:scale-out [-- --seconds 5 --concurrency 64]
 *
 * On this 2-core machine both kernels, PostgreSQL and the load generator share the cores: the
 * figure says what a second process buys when CPU is the limit, not what a second machine would.
 */
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import { closeKernelClient, createKeymasterClient, createSequenceClient } from '../clients/src';
import { Algorithm } from '../gen/proto/axis/kernel/keymaster/v1/key';
import { ResetPolicy } from '../gen/proto/axis/kernel/sequences/v1/sequence';
import { mintDevelopmentToken } from '../services/platform/auth/token-verifier';
import { spawnKernel, type KernelProcess } from '../tests/support/kernel-process';
import { createTestDatabase, type TestDatabase } from '../tests/support/test-database';
import { cleanUpOnSignal } from './grpc-bench-support';
import { cpuBreakdown, fmt, machineLine, runLoad, type LoadResult } from './load';

const SIGN_ACTION = 'axis.kernel.keymaster.v1.KeymasterService/Sign';

async function main() {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '64' } } });
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  if (!(seconds > 0) || !(Number.isInteger(concurrency) && concurrency >= 2)) throw new Error('--seconds > 0 and --concurrency ≥ 2 (an integer) are required');
  const secret = 'bench-secret-'.padEnd(40, 'x');
  let db: TestDatabase | undefined;
  const kernels: KernelProcess[] = [];
  const cleanUp = cleanUpOnSignal(async () => {
    await Promise.allSettled(kernels.map((k) => k.stop()));
    await db?.drop();
  });
  try {
    db = await createTestDatabase('axis_bench');
    const env = { DATABASE_URL: db.url, KERNEL_AUTH_SECRET: secret, LOG_LEVEL: 'warn', KERNEL_DB_POOL_SIZE: '20' };
    // One after the other: the first applies the migrations, the second finds them applied.
    kernels.push(await spawnKernel(env));
    kernels.push(await spawnKernel(env));
    const token = await mintDevelopmentToken({ secret, subject: 'bench', tenants: ['bench'], scope: 'sequences:read sequences:write keymaster:read keymaster:write keymaster:sign' });
    const sequences = kernels.map((k) => createSequenceClient({ address: k.address, tenantId: 'bench', token }));
    const keymaster = kernels.map((k) => createKeymasterClient({ address: k.address, tenantId: 'bench', token }));
    await sequences[0].createSeries({ series: { seriesId: 'hot', pattern: 'S-{SEQ:9}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    await keymaster[0].createKey({ key: { keyId: 'scale', algorithm: Algorithm.ALGORITHM_ED25519 } });

    // Every number any node answered (warm-up included) and every Sign answered.
    const numbers = new Set<number>();
    let issuedAnswers = 0;
    let signAnswers = 0;
    const message = Buffer.from('invoice 2026-000042 · scale-out bench'.padEnd(64, '.'));
    const issue = (nodes: number) => async (caller: number) => {
      const { number } = await sequences[caller % nodes].issueNumber({ seriesId: 'hot', subjectRef: 'bench' });
      issuedAnswers++;
      numbers.add(number!.value);
    };
    const sign = (nodes: number) => async (caller: number) => {
      await keymaster[caller % nodes].sign({ keyId: 'scale', input: { $case: 'message', value: message } });
      signAnswers++;
    };
    const pids = kernels.map((k) => k.child.pid!);
    const runs: Array<[string, LoadResult]> = [];
    for (const [name, work] of [
      ['IssueNumber, one hot series', issue],
      ['Sign, Ed25519', sign],
    ] as const) {
      runs.push([`${name} — one node`, await runLoad(work(1), concurrency, seconds * 1000, { cpuPids: pids })]);
      runs.push([`${name} — two nodes`, await runLoad(work(2), concurrency, seconds * 1000, { cpuPids: pids })]);
    }
    const report = (await sequences[0].getGapReport({ seriesId: 'hot' })).gapReport!;
    const sql = new Client({ connectionString: db.url });
    await sql.connect();
    const { rows } = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM kernel_audit_event WHERE action = $1`, [SIGN_ACTION]);
    await sql.end();
    for (const client of [...sequences, ...keymaster]) closeKernelClient(client);

    console.log(`scale-out benchmark — ${machineLine()}`);
    console.log(`  ${concurrency} callers (split evenly over the nodes in the two-node runs), ${seconds} s per run after 1 s warm-up; one PostgreSQL`);
    for (const [name, r] of runs) {
      console.log(
        `    ${name.padEnd(42)} ${fmt(r.perSecond).padStart(6)} calls/s   p50 ${fmt(r.p50, 1).padStart(6)} ms   p99 ${fmt(r.p99, 1).padStart(6)} ms   ` +
          `CPU ${cpuBreakdown(r, 'kernels')}`,
      );
    }
    const ratio = (i: number) => fmt(runs[i + 1][1].perSecond / runs[i][1].perSecond, 2);
    console.log(`  two nodes / one node: IssueNumber ${ratio(0)}, Sign ${ratio(2)}`);
    const highest = Math.max(0, ...numbers);
    const gapFree = numbers.size === issuedAnswers && highest === issuedAnswers && report.complete;
    console.log(`  numbers: ${numbers.size} distinct of ${issuedAnswers} answered, highest ${highest}, gap report complete: ${report.complete} → ${gapFree ? 'gap-free' : 'NOT GAP-FREE'}`);
    const audited = rows[0].n === signAnswers;
    console.log(`  Sign: ${signAnswers} answered, ${rows[0].n} audit entries → ${audited ? 'every signature audited' : 'AUDIT MISMATCH'}`);
    if (!gapFree || !audited) process.exitCode = 1;
  } finally {
    await cleanUp.finish();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
