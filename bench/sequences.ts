/**
 * Sequence benchmark (docs/capabilities/sequences.md): numbers/s issued on ONE hot series by 64 concurrent callers through the full
 * gRPC stack (client middleware, kernel middleware chain, transaction, audit, idempotency
 * record), next to pgbench's single-row-update commit rate on the same PostgreSQL in the same
 * run (the physical bound: every issue serialises on the period's counter row). Target ≥ 0.5.
 *
 *   npm run bench:sequences [-- --seconds 10 --concurrency 64 --profile DIR]
 *
 * Also printed: the kernel's CPU per IssueNumber next to a bare grpc-js echo's CPU per call, in
 * the same run (target ≤ 3 ×).
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client as GrpcClient, credentials, Metadata } from '@grpc/grpc-js';
import { closeKernelClient, createSequenceClient } from '../clients/src';
import { ResetPolicy } from '../gen/proto/axis/kernel/sequences/v1/sequence';
import { IssueNumberRequest } from '../gen/proto/axis/kernel/sequences/v1/sequence_service';
import { mintDevelopmentToken } from '../services/platform/auth/token-verifier';
import { spawnKernel } from '../tests/support/kernel-process';
import { createTestDatabase } from '../tests/support/test-database';
import { bareUnary, spawnEcho, waitForReady, writeProfilerPreload } from './grpc-bench-support';
import { cpuBreakdown, fmt, machineLine, runLoad } from './load';
import { pgbenchSingleRowUpdate } from './pgbench';

async function main() {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '64' }, profile: { type: 'string' } } });
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const db = await createTestDatabase('axis_bench');
  const secret = 'bench-secret-'.padEnd(40, 'x');
  const kernelEnv: Record<string, string> = { DATABASE_URL: db.url, KERNEL_AUTH_SECRET: secret, LOG_LEVEL: 'warn', KERNEL_DB_POOL_SIZE: '20' };
  // --profile DIR: CPU profile of the kernel process (see bench/rpc-overhead.ts).
  if (values.profile) kernelEnv.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --require ${writeProfilerPreload(path.resolve(values.profile))}`.trim();
  const kernel = await spawnKernel(kernelEnv);
  // The echo is the reference for the kernel's CPU per call (issue: the cost of one call).
  const echo = await spawnEcho();
  try {
    const token = await mintDevelopmentToken({ secret, subject: 'bench', tenants: ['bench'], scope: 'sequences:read sequences:write' });
    const client = createSequenceClient({ address: kernel.address, tenantId: 'bench', token });
    await client.createSeries({ series: { seriesId: 'hot', pattern: 'B-{SEQ:9}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });

    const pgbench = await pgbenchSingleRowUpdate(db.url, concurrency, seconds);
    const issued = await runLoad(() => client.issueNumber({ seriesId: 'hot', subjectRef: 'bench' }), concurrency, seconds * 1000, { cpuPids: [kernel.child.pid!] });
    const echoClient = new GrpcClient(echo.address, credentials.createInsecure());
    await waitForReady(echoClient);
    const echoPayload = Buffer.from(IssueNumberRequest.encode(IssueNumberRequest.fromPartial({ seriesId: 'hot', subjectRef: 'bench' })).finish()); // the same request frame
    const echoed = await runLoad(() => bareUnary(echoClient, '/bench.Echo/Echo', echoPayload, () => new Metadata()), concurrency, seconds * 1000, { cpuPids: [echo.pid] });
    echoClient.close();
    const report = (await client.getGapReport({ seriesId: 'hot' })).gapReport!;
    closeKernelClient(client);

    console.log(`sequences benchmark — ${machineLine()}`);
    console.log(`  pgbench single-row UPDATE, ${concurrency} clients: ${fmt(pgbench)} commits/s`);
    console.log(`  IssueNumber on one series, ${concurrency} callers, gRPC: ${fmt(issued.perSecond)} numbers/s (p50 ${fmt(issued.p50, 1)} ms, p99 ${fmt(issued.p99, 1)} ms)`);
    console.log(`  ratio: ${fmt(issued.perSecond / pgbench, 2)} (target ≥ 1.0 since the cost-of-a-call issue; ≥ 0.5 before)`);
    console.log(
      `  kernel CPU per IssueNumber ${fmt(issued.cpuUsPerCall ?? Number.NaN)} µs; echo server ${fmt(echoed.cpuUsPerCall ?? Number.NaN)} µs per call ` +
        `(${fmt(echoed.perSecond)} calls/s): ${fmt((issued.cpuUsPerCall ?? Number.NaN) / (echoed.cpuUsPerCall ?? Number.NaN), 1)} × (target ≤ 3 ×)`,
    );
    console.log(`  CPU per call: IssueNumber ${cpuBreakdown(issued)}; echo ${cpuBreakdown(echoed, 'echo server')}`);
    console.log(`  gap report complete: ${report.complete} (${report.periods[0]?.lastValue} numbers)`);
  } finally {
    await Promise.allSettled([kernel.stop(), echo.stop()]);
    await db.drop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
