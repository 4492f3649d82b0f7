/**
 * Keymaster benchmark (docs/capabilities/keymaster.md): Ed25519 signatures/s through the full gRPC stack — JWT, tenant,
 * idempotency key, the group committer, the signing-material read, the signature, and the
 * call's audit entry and idempotency record committed (durable) before the reply — next to a
 * bare grpc-js unary echo (bench/echo-server.ts, its own process) at the same concurrency in the
 * same run: the transport bound on this machine. Target: ≥ 0.5 × the echo. Also printed: raw
 * node:crypto Ed25519 signing in this process (no transport, no database).
 *
 *   npm run bench:keymaster [-- --seconds 5 --concurrency 64 --profile DIR]
 *
 * After the run it checks that every successful Sign left exactly one audit entry.
 */
import { sign as nodeSign, generateKeyPairSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client as GrpcClient, credentials, Metadata } from '@grpc/grpc-js';
import { Client } from 'pg';
import { closeKernelClient, createKeymasterClient } from '../clients/src';
import { Algorithm } from '../gen/proto/axis/kernel/keymaster/v1/key';
import { SignRequest, SignResponse } from '../gen/proto/axis/kernel/keymaster/v1/keymaster_service';
import { mintDevelopmentToken } from '../services/platform/auth/token-verifier';
import { spawnKernel, type KernelProcess } from '../tests/support/kernel-process';
import { createTestDatabase, type TestDatabase } from '../tests/support/test-database';
import { bareUnary, kernelMetadata, spawnEcho, waitForReady, writeProfilerPreload, type EchoProcess } from './grpc-bench-support';
import { cpuBreakdown, fmt, machineLine, runLoad, type LoadResult } from './load';

const SIGN_PATH = '/axis.kernel.keymaster.v1.KeymasterService/Sign';
const ALIAS = 'bench-ed25519';

function rawSigning(seconds: number): number {
  const { privateKey } = generateKeyPairSync('ed25519');
  const message = Buffer.from('x'.repeat(64));
  let n = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++) nodeSign(null, message, privateKey);
    n += 100;
  }
  return n / seconds;
}

async function main() {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '64' }, profile: { type: 'string' } } });
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const secret = 'bench-secret-'.padEnd(40, 'x');
  let db: TestDatabase | undefined;
  let kernel: KernelProcess | undefined;
  let echo: EchoProcess | undefined;
  try {
    db = await createTestDatabase('axis_bench');
    const kernelEnv: Record<string, string> = { DATABASE_URL: db.url, KERNEL_AUTH_SECRET: secret, LOG_LEVEL: 'warn' };
    // --profile DIR: CPU profile of the kernel process (see bench/rpc-overhead.ts).
    if (values.profile) kernelEnv.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --require ${writeProfilerPreload(path.resolve(values.profile))}`.trim();
    [kernel, echo] = await Promise.all([spawnKernel(kernelEnv), spawnEcho()]);
    const token = await mintDevelopmentToken({ secret, subject: 'bench', tenants: ['bench'], scope: 'keymaster:read keymaster:write keymaster:sign' });
    const typed = createKeymasterClient({ address: kernel.address, tenantId: 'bench', token });
    await typed.createKey({ key: { keyId: ALIAS, algorithm: Algorithm.ALGORITHM_ED25519 } });

    const message = Buffer.from('invoice 2026-000042 · total 1,234.56 EUR · bench'.padEnd(64, '.'));
    const request = Buffer.from(SignRequest.encode({ keyId: ALIAS, version: 0, input: { $case: 'message', value: message } }).finish());
    const echoClient = new GrpcClient(echo.address, credentials.createInsecure());
    const bareKernel = new GrpcClient(kernel.address, credentials.createInsecure());
    await Promise.all([waitForReady(echoClient), waitForReady(bareKernel)]);
    const signMetadata = kernelMetadata(token, 'bench', { idempotencyKey: true });
    const bare = SignResponse.decode(await bareUnary(bareKernel, SIGN_PATH, request, signMetadata));
    if (bare.signature?.value.length !== 64 || bare.signature.version !== 1) throw new Error('bare Sign returned no Ed25519 signature');

    const kernelPid = kernel.child.pid!;
    const targets: Array<[string, () => Promise<unknown>, number]> = [
      ['echo, bare grpc-js', () => bareUnary(echoClient, '/bench.Echo/Echo', request, () => new Metadata()), echo.pid],
      ['Sign, typed client', () => typed.sign({ keyId: ALIAS, input: { $case: 'message', value: message } }), kernelPid],
      ['Sign, bare grpc-js client', () => bareUnary(bareKernel, SIGN_PATH, request, signMetadata), kernelPid],
    ];
    const results: LoadResult[] = [];
    for (const [, call, pid] of targets) results.push(await runLoad(call, concurrency, seconds * 1000, { cpuPids: [pid] }));
    const raw = rawSigning(seconds);

    // Every Sign that answered left its audit entry (committed before the answer).
    const sql = new Client({ connectionString: db.url });
    await sql.connect();
    const { rows } = await sql.query(`SELECT count(*)::int AS n FROM kernel_audit_event WHERE action = 'axis.kernel.keymaster.v1.KeymasterService/Sign'`);
    await sql.end();
    echoClient.close();
    bareKernel.close();
    closeKernelClient(typed);

    console.log(`keymaster benchmark — ${machineLine()}`);
    console.log(`  Ed25519, ${message.length}-byte message, ${concurrency} in flight, ${seconds} s per run after 1 s warm-up`);
    targets.forEach(([name], i) => {
      const r = results[i];
      console.log(
        `    ${name.padEnd(28)} ${fmt(r.perSecond).padStart(7)} calls/s   p50 ${fmt(r.p50, 2).padStart(6)} ms   p99 ${fmt(r.p99, 2).padStart(6)} ms   ` +
          `server CPU ${fmt(r.cpuUsPerCall ?? Number.NaN).padStart(4)} µs/call`,
      );
    });
    console.log(`    ${'raw node:crypto Ed25519'.padEnd(28)} ${fmt(raw).padStart(7)} signatures/s (one thread, no transport, no database)`);
    const [echoRun, typedRun, bareRun] = results;
    console.log(
      `  ratio to echo: typed client ${fmt(typedRun.perSecond / echoRun.perSecond, 2)}, bare client ${fmt(bareRun.perSecond / echoRun.perSecond, 2)} (target ≥ 0.5); ` +
        `to raw signing: typed ${fmt(typedRun.perSecond / raw, 3)}, bare ${fmt(bareRun.perSecond / raw, 3)}`,
    );
    console.log(
      `  kernel CPU per Sign (bare client) ${fmt(bareRun.cpuUsPerCall ?? Number.NaN)} µs = ` +
        `${fmt((bareRun.cpuUsPerCall ?? Number.NaN) / (echoRun.cpuUsPerCall ?? Number.NaN), 1)} × the echo server's per call (target ≤ 3 ×)`,
    );
    console.log(`  CPU per call, echo: ${cpuBreakdown(echoRun, 'echo server')}`);
    console.log(`  CPU per call, Sign (bare client): ${cpuBreakdown(bareRun)}; typed client: ${cpuBreakdown(typedRun)}`);
    console.log(`  audit entries for Sign: ${rows[0].n} (≥ ${typedRun.calls + bareRun.calls} counted calls + warm-up)`);
  } finally {
    await Promise.allSettled([kernel?.stop(), echo?.stop()]);
    await db?.drop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
