/**
 * Where PostgreSQL's time goes per mutating call: a kernel on a PostgreSQL instance of its own
 * with `pg_stat_statements` (planning tracked too), loaded with one mutating RPC through a bare
 * grpc-js client (fresh idempotency key per call), then each statement's execution and planning
 * time per RPC call, next to the call rate, p50 and the CPU breakdown (kernel, load generator,
 * PostgreSQL). This is the figure behind the README's per-statement breakdown and the "one
 * caller at a time" analysis; statements of background work (the audit integrator, the
 * scheduler's polls) are included, since they too are paid per call.
 *
 *   npm run bench:statements [-- --rpc sign|issue|append --concurrency 1,64 --seconds 4 --top 12]
 */
import { parseArgs } from 'node:util';
import { Client as GrpcClient, credentials } from '@grpc/grpc-js';
import { Client } from 'pg';
import { closeKernelClient, createKeymasterClient, createSequenceClient } from '../clients/src';
import { AppendEventsRequest } from '../gen/proto/axis/kernel/audit/v1/audit_service';
import { Algorithm } from '../gen/proto/axis/kernel/keymaster/v1/key';
import { SignRequest } from '../gen/proto/axis/kernel/keymaster/v1/keymaster_service';
import { ResetPolicy } from '../gen/proto/axis/kernel/sequences/v1/sequence';
import { IssueNumberRequest } from '../gen/proto/axis/kernel/sequences/v1/sequence_service';
import { mintDevelopmentToken } from '../services/platform/auth/token-verifier';
import { spawnKernel, type KernelProcess } from '../tests/support/kernel-process';
import { startOwnPostgres, type OwnPostgres } from '../tests/support/own-postgres';
import { bareUnary, cleanUpOnSignal, kernelMetadata, waitForReady } from './grpc-bench-support';
import { cpuBreakdown, fmt, machineLine, runLoad } from './load';

const RPCS = {
  sign: { path: '/axis.kernel.keymaster.v1.KeymasterService/Sign', name: 'Sign (Ed25519)' },
  issue: { path: '/axis.kernel.sequences.v1.SequenceService/IssueNumber', name: 'IssueNumber (one series)' },
  append: { path: '/axis.kernel.audit.v1.AuditService/AppendEvents', name: 'AppendEvents (one event)' },
} as const;

interface StatementRow {
  calls: string;
  exec_ms: number;
  plan_ms: number;
  query: string;
}

async function main() {
  const { values } = parseArgs({
    options: { rpc: { type: 'string', default: 'sign' }, concurrency: { type: 'string', default: '1,64' }, seconds: { type: 'string', default: '4' }, top: { type: 'string', default: '12' } },
  });
  const rpc = RPCS[values.rpc as keyof typeof RPCS];
  if (!rpc) throw new Error(`--rpc must be one of ${Object.keys(RPCS).join(', ')}`);
  const levels = values.concurrency.split(',').map(Number);
  if (levels.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('--concurrency takes positive integers, e.g. 1,64');
  const seconds = Number(values.seconds);
  const top = Number(values.top);
  const secret = 'bench-secret-'.padEnd(40, 'x');

  let pg: OwnPostgres | undefined;
  let kernel: KernelProcess | undefined;
  const run = cleanUpOnSignal(async () => {
    await kernel?.stop();
    await pg?.destroy();
  });
  try {
    pg = await startOwnPostgres({ shared_preload_libraries: 'pg_stat_statements', 'pg_stat_statements.track': 'all', 'pg_stat_statements.track_planning': 'on' });
    kernel = await spawnKernel({ DATABASE_URL: pg.url, KERNEL_AUTH_SECRET: secret, LOG_LEVEL: 'warn' });
    const token = await mintDevelopmentToken({ secret, subject: 'bench', tenants: ['bench'], scope: 'keymaster:read keymaster:write keymaster:sign sequences:read sequences:write audit:write audit:read' });
    const keymaster = createKeymasterClient({ address: kernel.address, tenantId: 'bench', token });
    const sequences = createSequenceClient({ address: kernel.address, tenantId: 'bench', token });
    await keymaster.createKey({ key: { keyId: 'bench', algorithm: Algorithm.ALGORITHM_ED25519 } });
    await sequences.createSeries({ series: { seriesId: 'hot', pattern: 'N-{SEQ:9}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    closeKernelClient(keymaster);
    closeKernelClient(sequences);
    const request = Buffer.from(
      values.rpc === 'sign'
        ? SignRequest.encode({ keyId: 'bench', version: 0, input: { $case: 'message', value: Buffer.alloc(64, 7) } }).finish()
        : values.rpc === 'issue'
          ? IssueNumberRequest.encode(IssueNumberRequest.fromPartial({ seriesId: 'hot', subjectRef: 'bench' })).finish()
          : AppendEventsRequest.encode(AppendEventsRequest.fromPartial({ events: [{ action: 'bench.Append', resource: 'bench/1' }] })).finish(),
    );
    const metadata = kernelMetadata(token, 'bench', { idempotencyKey: true });
    const client = new GrpcClient(kernel.address, credentials.createInsecure());
    await waitForReady(client);
    const sql = new Client({ connectionString: pg.url });
    await sql.connect();
    await sql.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');

    console.log(`statements benchmark — ${machineLine()}`);
    console.log(`  ${rpc.name} through a bare grpc-js client, ${seconds} s per level after 2 s warm-up; PostgreSQL ${(await sql.query('SHOW server_version')).rows[0].server_version} of its own`);
    for (const concurrency of levels) {
      // Warm-up outside the statistics, then the measured window only (2 s: the JIT settles).
      await runLoad(() => bareUnary(client, rpc.path, request, metadata), concurrency, 2000, { warmupMs: 0 });
      await sql.query('SELECT pg_stat_statements_reset()');
      const r = await runLoad(() => bareUnary(client, rpc.path, request, metadata), concurrency, seconds * 1000, { warmupMs: 0, cpuPids: [kernel.child.pid!] });
      const { rows } = await sql.query<StatementRow>(
        `SELECT calls::text, total_exec_time AS exec_ms, total_plan_time AS plan_ms, regexp_replace(query, '\\s+', ' ', 'g') AS query
           FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time + total_plan_time DESC`,
      );
      const perCall = (ms: number) => (ms * 1000) / r.calls;
      const exec = rows.reduce((s, x) => s + x.exec_ms, 0);
      const plan = rows.reduce((s, x) => s + x.plan_ms, 0);
      console.log(`  ${concurrency} in flight: ${fmt(r.perSecond)} calls/s, p50 ${fmt(r.p50, 2)} ms, p99 ${fmt(r.p99, 2)} ms`);
      console.log(`    CPU per call: ${cpuBreakdown(r)}`);
      console.log(`    PostgreSQL statements per call: execution ${fmt(perCall(exec), 1)} µs + planning ${fmt(perCall(plan), 1)} µs (the rest of its CPU: protocol, parsing, commit, background processes)`);
      console.log(`    ${'exec µs'.padStart(8)} ${'plan µs'.padStart(8)} ${'runs'.padStart(7)}  statement (per ${rpc.name.split(' ')[0]} call; top ${top})`);
      for (const row of rows.slice(0, top)) {
        console.log(`    ${fmt(perCall(row.exec_ms), 1).padStart(8)} ${fmt(perCall(row.plan_ms), 1).padStart(8)} ${row.calls.padStart(7)}  ${row.query.slice(0, 90)}`);
      }
    }
    await sql.end();
    client.close();
  } finally {
    await run.finish();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
