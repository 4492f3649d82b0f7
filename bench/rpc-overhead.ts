/**
 * RPC overhead benchmark: the kernel's database-backed read RPC GetSeries through the full
 * server chain (tracing, rich errors, JWT authentication, tenant + scope, read-only tenant
 * transaction on PostgreSQL, performance budget) next to a bare grpc-js unary echo
 * (bench/echo-server.ts) on the same machine in the same run, at 1 and 64 calls in flight.
 * Target: GetSeries through the typed client ≥ 0.6 × the echo (≥ 0.5 before the cost-of-a-call issue)'s throughput at 64 in flight.
 *
 * Three callers, each on its own channel (one HTTP/2 connection) to a server in its own process:
 *   - echo: plain grpc-js `Client.makeUnaryRequest` to `/bench.Echo/Echo`, identity serializers.
 *     Payload: the exact bytes of the encoded GetSeriesRequest the kernel callers send
 *     (seriesId "bench-01" → 10 bytes), so both request frames are the same size; the echo's
 *     response is those 10 bytes again (a GetSeriesResponse is larger, see `sizes` line).
 *   - kernel, typed client: `createSequenceClient` from clients/src (nice-grpc + kernel client
 *     middleware: auth, tenant, trace, deadline, retry, rich errors, protobuf (de)coding), which
 *     is what domain services use.
 *   - kernel, bare client: the echo's caller (identity serializers, the pre-encoded request, no
 *     response decoding) plus the `authorization` and `x-tenant-id` metadata: the difference to
 *     the typed client is client-library cost, the difference to the echo is server cost.
 *
 * With `--tracing`, a second kernel exports every span and metric over OTLP to a receiver in this
 * process (tests/support/otlp-receiver.ts, answering as a collector does; it only counts, to
 * leave this process's CPU to the load) and the
 * kernel rows run on both: the ratio tracing-on / tracing-off is the cost of tracing (target:
 * ≥ 0.9 of the throughput). Every kernel row also reports the kernel process's CPU per call.
 *
 *   npx tsx bench/rpc-overhead.ts [--seconds 5] [--profile DIR] [--tracing]
 *
 * `--profile DIR` CPU-profiles the kernel process: Node 20 refuses `--cpu-prof` in NODE_OPTIONS, so
 * the kernel gets `NODE_OPTIONS=--require DIR/cpu-profile.cjs`, a preload that starts the V8
 * profiler through `node:inspector` and writes `DIR/kernel-<pid>.cpuprofile` on exit (open it in
 * Chrome DevTools or speedscope; the tsx launcher process writes a near-empty one too).
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import { closeKernelClient, createSequenceClient } from '../clients/src';
import { ResetPolicy } from '../gen/proto/axis/kernel/sequences/v1/sequence';
import { GetSeriesRequest, GetSeriesResponse } from '../gen/proto/axis/kernel/sequences/v1/sequence_service';
import { mintDevelopmentToken } from '../services/platform/auth/token-verifier';
import { spawnKernel, type KernelProcess } from '../tests/support/kernel-process';
import { createTestDatabase, type TestDatabase } from '../tests/support/test-database';
import { OtlpReceiver } from '../tests/support/otlp-receiver';
import { bareUnary, kernelMetadata, spawnEcho, waitForReady, writeProfilerPreload, type EchoProcess, cleanUpOnSignal } from './grpc-bench-support';
import { fmt, machineLine, runLoad, type LoadResult } from './load';

const SERIES_ID = 'bench-01';
const GET_SERIES_PATH = '/axis.kernel.sequences.v1.SequenceService/GetSeries';

async function main() {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, profile: { type: 'string' }, tracing: { type: 'boolean', default: false } } });
  const seconds = Number(values.seconds);
  if (!(seconds > 0)) throw new Error(`--seconds must be a positive number, got ${values.seconds}`);
  const secret = 'bench-secret-'.padEnd(40, 'x');

  let db: TestDatabase | undefined;
  let kernel: KernelProcess | undefined;
  let traced: KernelProcess | undefined;
  let receiver: OtlpReceiver | undefined;
  let echo: EchoProcess | undefined;
  const cleanUp = async () => {
    await Promise.allSettled([kernel?.stop(), traced?.stop(), echo?.stop()]);
    await receiver?.stop();
    await db?.drop();
  };
  // Ctrl-C / SIGTERM mid-run: still stop the children and drop the database.
  const run = cleanUpOnSignal(cleanUp);

  try {
    db = await createTestDatabase('axis_bench');
    const kernelEnv: Record<string, string> = { DATABASE_URL: db.url, KERNEL_AUTH_SECRET: secret, LOG_LEVEL: 'warn' };
    if (values.profile) kernelEnv.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --require ${writeProfilerPreload(path.resolve(values.profile))}`.trim();
    // Started side by side; wait for both to settle so that a failure of one still stops the other.
    const [kernelStart, echoStart] = await Promise.allSettled([spawnKernel(kernelEnv), spawnEcho()]);
    if (kernelStart.status === 'fulfilled') kernel = kernelStart.value;
    if (echoStart.status === 'fulfilled') echo = echoStart.value;
    if (kernelStart.status === 'rejected') throw kernelStart.reason;
    if (echoStart.status === 'rejected') throw echoStart.reason;
    if (!kernel || !echo) throw new Error('unreachable: both servers started');
    if (values.tracing) {
      // Counts and answers without decoding: it shares this process's CPU with the load.
      receiver = await new OtlpReceiver({ decode: false }).start();
      // The SDK's default export intervals (spans every 1 s, metrics every 60 s → 5 s here).
      traced = await spawnKernel({ ...kernelEnv, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_METRIC_EXPORT_INTERVAL: '5000' });
    }

    const token = await mintDevelopmentToken({ secret, subject: 'bench', tenants: ['bench'], scope: 'sequences:read sequences:write' });
    const typed = createSequenceClient({ address: kernel.address, tenantId: 'bench', token });
    await typed.createSeries({ series: { seriesId: SERIES_ID, pattern: 'B-{SEQ:9}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });

    const request = Buffer.from(GetSeriesRequest.encode({ seriesId: SERIES_ID }).finish());
    const getSeriesMetadata = kernelMetadata(token, 'bench');
    const noMetadata = () => new Metadata();
    const echoClient = new Client(echo.address, credentials.createInsecure());
    const bareKernel = new Client(kernel.address, credentials.createInsecure());
    await Promise.all([waitForReady(echoClient), waitForReady(bareKernel)]);

    // Sanity: every caller gets the answer it should.
    const echoed = await bareUnary(echoClient, '/bench.Echo/Echo', request, noMetadata);
    if (!echoed.equals(request)) throw new Error('echo server returned different bytes');
    const bareResponse = await bareUnary(bareKernel, GET_SERIES_PATH, request, getSeriesMetadata);
    if (GetSeriesResponse.decode(bareResponse).series?.seriesId !== SERIES_ID) throw new Error('bare GetSeries returned the wrong series');
    if ((await typed.getSeries({ seriesId: SERIES_ID })).series?.seriesId !== SERIES_ID) throw new Error('typed GetSeries returned the wrong series');

    const tracedClient = traced ? createSequenceClient({ address: traced.address, tenantId: 'bench', token }) : undefined;
    const kernelPid = [kernel.child.pid!];
    const targets: Array<[string, () => Promise<unknown>, number[]?]> = [
      ['echo, bare grpc-js', () => bareUnary(echoClient, '/bench.Echo/Echo', request, noMetadata), [echo.pid]],
      ['GetSeries, typed client', () => typed.getSeries({ seriesId: SERIES_ID }), kernelPid],
      ['GetSeries, bare grpc-js client', () => bareUnary(bareKernel, GET_SERIES_PATH, request, getSeriesMetadata), kernelPid],
      // GetSeries is answered from the immutable-series cache (its lazy transaction never
      // starts); ListSeries reads PostgreSQL on every call — through Prisma Client since it became
      // a cold path (docs/prisma.md): a Prisma interactive transaction, four round trips.
      ['ListSeries, typed client (DB, Prisma)', () => typed.listSeries({ pageSize: 10 }), kernelPid],
    ];
    if (tracedClient && traced) {
      targets.push(
        ['GetSeries, typed, tracing on', () => tracedClient.getSeries({ seriesId: SERIES_ID }), [traced.child.pid!]],
        ['ListSeries, typed, tracing on (DB, Prisma)', () => tracedClient.listSeries({ pageSize: 10 }), [traced.child.pid!]],
      );
    }
    const results = new Map<string, LoadResult>();
    for (const concurrency of [1, 64]) {
      for (const [name, call, cpuPids] of targets) results.set(`${concurrency}:${name}`, await runLoad(call, concurrency, seconds * 1000, { cpuPids }));
    }

    echoClient.close();
    bareKernel.close();
    closeKernelClient(typed);
    if (tracedClient) closeKernelClient(tracedClient);

    const get = (concurrency: number, index: number) => results.get(`${concurrency}:${targets[index][0]}`)!;
    console.log(`rpc overhead benchmark — ${machineLine()}`);
    console.log(`  request ${request.length} B (encoded GetSeriesRequest, also the echo payload); GetSeriesResponse ${bareResponse.length} B, echo response ${echoed.length} B; ${seconds} s per run after 1 s warm-up`);
    for (const concurrency of [1, 64]) {
      console.log(`  ${concurrency} in flight:`);
      targets.forEach(([name], index) => {
        const r = get(concurrency, index);
        const cpu = r.cpuUsPerCall === undefined ? '' : `   server CPU ${fmt(r.cpuUsPerCall).padStart(4)} µs/call`;
        console.log(`    ${name.padEnd(34)} ${fmt(r.perSecond).padStart(7)} calls/s   p50 ${fmt(r.p50, 2).padStart(6)} ms   p99 ${fmt(r.p99, 2).padStart(6)} ms${cpu}`);
      });
    }
    for (const concurrency of [64, 1]) {
      const echoRun = get(concurrency, 0);
      const line = (index: number) => {
        const r = get(concurrency, index);
        return `${fmt(r.perSecond / echoRun.perSecond, 2)} (p50 ×${fmt(r.p50 / echoRun.p50, 1)}, p99 ×${fmt(r.p99 / echoRun.p99, 1)})`;
      };
      const target = concurrency === 64 ? ' (target ≥ 0.6)' : '';
      console.log(`  ratio kernel/echo throughput at ${concurrency} in flight: typed client ${line(1)}${target}; bare client ${line(2)}; database-backed ListSeries ${line(3)}`);
    }
    if (receiver) {
      for (const concurrency of [64, 1]) {
        const ratio = (on: number, off: number) => fmt(get(concurrency, on).perSecond / get(concurrency, off).perSecond, 2);
        console.log(`  ratio tracing on/off throughput at ${concurrency} in flight: GetSeries ${ratio(4, 1)}, ListSeries (DB) ${ratio(5, 3)} (target ≥ 0.90)`);
      }
      console.log(`  the receiver got ${fmt(receiver.bytes / 2 ** 20, 1)} MiB of OTLP protobuf`);
    }
  } finally {
    await run.finish();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
