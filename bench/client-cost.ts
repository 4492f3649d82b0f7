/**
 * What the typed client costs its caller: this process's CPU per call for the same read RPC
 * (GetSeries, answered from the kernel's cache) through three clients of one kernel — a bare
 * grpc-js client (pre-encoded request, identity serializers), nice-grpc without middleware, and
 * the kernel's typed client (clients/src: nice-grpc plus the kernel middleware chain) — in
 * alternating rounds. The differences are the cost of nice-grpc and of the chain; on a machine
 * whose cores the caller shares with the kernel, they bound the typed client's throughput.
 *
 *   npm run bench:client-cost [-- --rounds 3 --seconds 3 --concurrency 64]
 */
import { parseArgs } from 'node:util';
import { Client, credentials } from '@grpc/grpc-js';
import { createChannel, createClient, Metadata } from 'nice-grpc';
import { closeKernelClient, createSequenceClient } from '../clients/src';
import { ResetPolicy } from '../gen/proto/axis/kernel/sequences/v1/sequence';
import { GetSeriesRequest, SequenceServiceDefinition } from '../gen/proto/axis/kernel/sequences/v1/sequence_service';
import { mintDevelopmentToken } from '../services/platform/auth/token-verifier';
import { spawnKernel, type KernelProcess } from '../tests/support/kernel-process';
import { createTestDatabase, type TestDatabase } from '../tests/support/test-database';
import { bareUnary, cleanUpOnSignal, kernelMetadata, waitForReady } from './grpc-bench-support';
import { fmt, machineLine, runLoad } from './load';

const GET_SERIES = '/axis.kernel.sequences.v1.SequenceService/GetSeries';

async function main() {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '3' }, concurrency: { type: 'string', default: '64' } } });
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const secret = 'bench-secret-'.padEnd(40, 'x');
  let db: TestDatabase | undefined;
  let kernel: KernelProcess | undefined;
  const run = cleanUpOnSignal(async () => {
    await kernel?.stop();
    await db?.drop();
  });
  try {
    db = await createTestDatabase('axis_bench');
    kernel = await spawnKernel({ DATABASE_URL: db.url, KERNEL_AUTH_SECRET: secret, LOG_LEVEL: 'warn' });
    const token = await mintDevelopmentToken({ secret, subject: 'bench', tenants: ['bench'], scope: 'sequences:read sequences:write' });
    const typed = createSequenceClient({ address: kernel.address, tenantId: 'bench', token });
    await typed.createSeries({ series: { seriesId: 'bench', pattern: 'B-{SEQ:9}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    const bare = new Client(kernel.address, credentials.createInsecure());
    await waitForReady(bare);
    const channel = createChannel(kernel.address);
    const plain = createClient(SequenceServiceDefinition, channel);
    const request = Buffer.from(GetSeriesRequest.encode({ seriesId: 'bench' }).finish());
    const bareMetadata = kernelMetadata(token, 'bench');
    const plainMetadata = Metadata({ authorization: `Bearer ${token}`, 'x-tenant-id': 'bench' });
    const callers: Array<[string, () => Promise<unknown>]> = [
      ['bare grpc-js', () => bareUnary(bare, GET_SERIES, request, bareMetadata)],
      ['nice-grpc, no middleware', () => plain.getSeries({ seriesId: 'bench' }, { metadata: plainMetadata })],
      ['typed client (clients/src)', () => typed.getSeries({ seriesId: 'bench' })],
    ];
    const cpu = callers.map(() => [] as number[]);
    const rate = callers.map(() => [] as number[]);
    for (let round = 0; round < rounds; round++) {
      for (const [i, [, call]] of callers.entries()) {
        const result = await runLoad(call, concurrency, seconds * 1000);
        cpu[i].push(result.clientCpuUsPerCall);
        rate[i].push(result.perSecond);
      }
    }
    console.log(`client cost benchmark — ${machineLine()}`);
    console.log(`  GetSeries (cached read), ${concurrency} in flight, ${seconds} s per run after 1 s warm-up, ${rounds} alternating rounds; this process's CPU per call`);
    callers.forEach(([name], i) => {
      console.log(`    ${name.padEnd(28)} ${cpu[i].map((us) => fmt(us).padStart(4)).join(' / ')} µs per call   (${rate[i].map((r) => fmt(r)).join(' / ')} calls/s)`);
    });
    bare.close();
    channel.close();
    closeKernelClient(typed);
  } finally {
    await run.finish();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
