/**
 * Sequence benchmark (docs/capabilities/sequences.md): numbers/s issued on ONE hot series by 64 concurrent callers through the full
 * gRPC stack (client middleware, kernel middleware chain, transaction, audit, idempotency
 * record), next to pgbench's single-row-update commit rate on the same PostgreSQL in the same
 * run (the physical bound: every issue serialises on the period's counter row). Target ≥ 0.5.
 *
 *   npm run bench:sequences [-- --seconds 10]
 */
import { parseArgs } from 'node:util';
import { closeKernelClient, createSequenceClient } from '../clients/src';
import { ResetPolicy } from '../gen/proto/axis/kernel/sequences/v1/sequence';
import { mintDevelopmentToken } from '../services/platform/auth/token-verifier';
import { spawnKernel } from '../tests/support/kernel-process';
import { createTestDatabase } from '../tests/support/test-database';
import { fmt, machineLine, runLoad } from './load';
import { pgbenchSingleRowUpdate } from './pgbench';

async function main() {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '64' } } });
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const db = await createTestDatabase('axis_bench');
  const secret = 'bench-secret-'.padEnd(40, 'x');
  const kernel = await spawnKernel({ DATABASE_URL: db.url, KERNEL_AUTH_SECRET: secret, LOG_LEVEL: 'warn', KERNEL_DB_POOL_SIZE: '20' });
  try {
    const token = await mintDevelopmentToken({ secret, subject: 'bench', tenants: ['bench'], scope: 'sequences:read sequences:write' });
    const client = createSequenceClient({ address: kernel.address, tenantId: 'bench', token });
    await client.createSeries({ series: { seriesId: 'hot', pattern: 'B-{SEQ:9}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });

    const pgbench = await pgbenchSingleRowUpdate(db.url, concurrency, seconds);
    const issued = await runLoad(() => client.issueNumber({ seriesId: 'hot', subjectRef: 'bench' }), concurrency, seconds * 1000);
    const report = (await client.getGapReport({ seriesId: 'hot' })).gapReport!;
    closeKernelClient(client);

    console.log(`sequences benchmark — ${machineLine()}`);
    console.log(`  pgbench single-row UPDATE, ${concurrency} clients: ${fmt(pgbench)} commits/s`);
    console.log(`  IssueNumber on one series, ${concurrency} callers, gRPC: ${fmt(issued.perSecond)} numbers/s (p50 ${fmt(issued.p50, 1)} ms, p99 ${fmt(issued.p99, 1)} ms)`);
    console.log(`  ratio: ${fmt(issued.perSecond / pgbench, 2)} (target ≥ 0.5)`);
    console.log(`  gap report complete: ${report.complete} (${report.periods[0]?.lastValue} numbers)`);
  } finally {
    await kernel.stop();
    await db.drop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
