/**
 * Scheduler benchmark (docs/capabilities/scheduler.md): no-op jobs — enqueue/s, execute/s and enqueue→start latency (p50/p99) — for
 * the AXIS scheduler (in-process handlers, the fair comparison), graphile-worker in its fastest
 * documented configuration (local queue of 500, batched completion/failure with delay 0;
 * https://worker.graphile.org/docs/performance) and pg-boss (batch fetch), on the same
 * PostgreSQL in the same run, with the same concurrency. Each system gets its own fresh database.
 * AXIS remote gRPC workers (LeaseJobs/CompleteJob) are reported separately.
 *
 *   npm run bench:scheduler [-- --jobs 20000 --concurrency 24 --latency-jobs 400 --only axis,graphile,pgboss,remote]
 *
 * - enqueue/s: `concurrency` callers each enqueue one job per transaction, back to back, until
 *   `jobs` are queued (workers not running).
 * - execute/s: then the workers start; time until the handler has run `jobs` times.
 * - latency: workers idle; jobs enqueued one at a time every 5 ms; handler start minus the
 *   moment before the enqueue call (same process, same clock).
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { makeWorkerUtils, run as runGraphile, runMigrations } from 'graphile-worker';
import PgBoss from 'pg-boss';
import { Pool } from 'pg';
import { closeKernelClient, createSchedulerClient } from '../clients/src';
import { mintDevelopmentToken } from '../services/platform/auth/token-verifier';
import { loadConfig } from '../services/platform/config';
import { startKernel } from '../services/kernel/kernel';
import { createLogger } from '../services/platform/observability/logger';
import { enqueueJob } from '../services/scheduler/job-api';
import { createTestDatabase } from '../tests/support/test-database';
import { fmt, machineLine } from './load';

interface System {
  name: string;
  /** Enqueues one job carrying `sentAt`. */
  enqueue(sentAt: number): Promise<void>;
  /** Starts the workers; `onStart(sentAt)` is called when a handler starts. */
  startWorkers(onStart: (sentAt: number) => void): Promise<void>;
  stop(): Promise<void>;
}

interface Result {
  name: string;
  enqueuePerSecond: number;
  executePerSecond: number;
  p50: number;
  p99: number;
}

const now = () => performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function measure(system: System, jobs: number, concurrency: number, latencyJobs: number): Promise<Result> {
  // 1. enqueue/s, workers off.
  let queued = 0;
  const enqueueStart = now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (queued < jobs) {
        queued += 1;
        await system.enqueue(0);
      }
    }),
  );
  const enqueuePerSecond = jobs / ((now() - enqueueStart) / 1000);

  // 2. execute/s: drain the backlog.
  let started = 0;
  let latencies: number[] | undefined;
  let drained!: () => void;
  const done = new Promise<void>((resolve) => (drained = resolve));
  const executeStart = now();
  await system.startWorkers((sentAt) => {
    if (latencies) {
      if (sentAt > 0) latencies.push(now() - sentAt);
      return;
    }
    started += 1;
    if (started === jobs) drained();
  });
  await done;
  const executePerSecond = jobs / ((now() - executeStart) / 1000);

  // 3. latency: idle workers, one job every 5 ms.
  await sleep(1000);
  latencies = [];
  for (let i = 0; i < latencyJobs; i += 1) {
    await system.enqueue(now());
    await sleep(5);
  }
  const deadline = now() + 30_000;
  while (latencies.length < latencyJobs && now() < deadline) await sleep(50);
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies![Math.min(latencies!.length - 1, Math.floor(q * latencies!.length))] ?? Number.NaN;
  await system.stop();
  return { name: system.name, enqueuePerSecond, executePerSecond, p50: at(0.5), p99: at(0.99) };
}

async function axis(url: string, concurrency: number): Promise<System> {
  const config = loadConfig({
    DATABASE_URL: url,
    KERNEL_GRPC_ADDR: '127.0.0.1:0',
    KERNEL_AUTH_SECRET: randomBytes(32).toString('base64url'),
    KERNEL_SCHEDULER_CONCURRENCY: String(concurrency),
    // The same local queue as graphile-worker's documented fastest configuration.
    KERNEL_SCHEDULER_PREFETCH: '500',
    KERNEL_DB_POOL_SIZE: String(concurrency + 1),
    KERNEL_DATA_DIR: `/tmp/axis-bench-${process.pid}`,
    LOG_LEVEL: 'warn',
  });
  const kernel = await startKernel(config, { log: createLogger('warn') });
  return {
    name: 'AXIS scheduler (in-process handlers, local queue 500, batched completion)',
    enqueue: (sentAt) => kernel.db.inTenantTransaction('bench', (tx) => enqueueJob(tx, { type: 'bench.noop', payload: { sentAt } })).then(() => undefined),
    async startWorkers(onStart) {
      kernel.jobs.register('bench.noop', async (job) => onStart((job.payload as { sentAt: number }).sentAt));
    },
    stop: () => kernel.stop(),
  };
}

async function axisRemote(url: string, concurrency: number): Promise<System> {
  const secret = randomBytes(32).toString('base64url');
  const config = loadConfig({
    DATABASE_URL: url,
    KERNEL_GRPC_ADDR: '127.0.0.1:0',
    KERNEL_AUTH_SECRET: secret,
    KERNEL_DB_POOL_SIZE: String(concurrency + 1),
    KERNEL_DATA_DIR: `/tmp/axis-bench-${process.pid}`,
    LOG_LEVEL: 'warn',
  });
  const kernel = await startKernel(config, { log: createLogger('warn') });
  const token = await mintDevelopmentToken({ secret, subject: 'bench', tenants: ['bench'], scope: 'scheduler:read scheduler:write scheduler:work' });
  const client = createSchedulerClient({ address: kernel.address, tenantId: 'bench', token, deadlineMs: 60_000 });
  let running = true;
  const loops: Promise<void>[] = [];
  return {
    name: 'AXIS scheduler (remote gRPC workers: LeaseJobs long-poll + CompleteJob)',
    enqueue: (sentAt) => kernel.db.inTenantTransaction('bench', (tx) => enqueueJob(tx, { type: 'bench.noop', queue: 'remote', payload: { sentAt } })).then(() => undefined),
    async startWorkers(onStart) {
      // `concurrency` jobs in flight: workers × batch.
      const workers = Math.max(1, Math.round(concurrency / 8));
      for (let w = 0; w < workers; w += 1) {
        loops.push(
          (async () => {
            while (running) {
              const { leases } = await client.leaseJobs({ queue: 'remote', maxJobs: Math.ceil(concurrency / workers), wait: { seconds: 1, nanos: 0 } });
              await Promise.all(
                leases.map(async (lease) => {
                  onStart((lease.job!.payload as { sentAt: number }).sentAt);
                  await client.completeJob({ jobId: lease.job!.jobId, leaseToken: lease.leaseToken });
                }),
              );
            }
          })(),
        );
      }
    },
    async stop() {
      running = false;
      await Promise.all(loops);
      closeKernelClient(client);
      await kernel.stop();
    },
  };
}

async function graphile(url: string, concurrency: number): Promise<System> {
  // One pool we own (graphile-worker's documented pgPool option), so it is closed before the database is dropped.
  const pgPool = new Pool({ connectionString: url, max: concurrency + 1 });
  pgPool.on('error', () => undefined);
  pgPool.on('connect', (client) => client.on('error', () => undefined));
  await runMigrations({ pgPool, logger: quietGraphileLogger() });
  const utils = await makeWorkerUtils({ pgPool, logger: quietGraphileLogger() });
  let runner: Awaited<ReturnType<typeof runGraphile>> | undefined;
  return {
    name: 'graphile-worker (localQueue 500, batched complete/fail)',
    enqueue: (sentAt) => utils.addJob('noop', { sentAt }).then(() => undefined),
    async startWorkers(onStart) {
      runner = await runGraphile({
        pgPool,
        concurrency,
        noHandleSignals: true,
        pollInterval: 1000,
        logger: quietGraphileLogger(),
        taskList: { noop: async (payload) => onStart((payload as { sentAt: number }).sentAt) },
        preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
      });
    },
    async stop() {
      await runner?.stop();
      await utils.release();
      await pgPool.end();
    },
  };
}

function quietGraphileLogger() {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Logger } = require('graphile-worker') as typeof import('graphile-worker');
  return new Logger(() => (level: string, message: string) => {
    if (level === 'error') console.error(`graphile-worker: ${message}`);
  });
}

async function pgBoss(url: string, concurrency: number): Promise<System> {
  const boss = new PgBoss({ connectionString: url, max: concurrency + 1, supervise: false, schedule: false });
  boss.on('error', (error) => console.error('pg-boss:', error));
  await boss.start();
  await boss.createQueue('noop');
  return {
    name: 'pg-boss (batch fetch of 500 run `concurrency` at a time, polling 0.5 s: its minimum)',
    enqueue: (sentAt) => boss.send('noop', { sentAt }).then(() => undefined),
    async startWorkers(onStart) {
      // pg-boss fetches a batch per poll and completes it as a whole: the analogue of a local queue of 500.
      await boss.work<{ sentAt: number }>('noop', { batchSize: 500, pollingIntervalSeconds: 0.5 }, async (jobs) => {
        let next = 0;
        await Promise.all(
          Array.from({ length: Math.min(concurrency, jobs.length) }, async () => {
            while (next < jobs.length) {
              const job = jobs[next++];
              onStart(job.data.sentAt);
              await Promise.resolve();
            }
          }),
        );
      });
    },
    stop: () => boss.stop({ graceful: true, wait: true, timeout: 5000 }),
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      jobs: { type: 'string', default: '20000' },
      concurrency: { type: 'string', default: '24' },
      'latency-jobs': { type: 'string', default: '400' },
      only: { type: 'string', default: 'axis,graphile,pgboss,remote' },
    },
  });
  const jobs = Number(values.jobs);
  const concurrency = Number(values.concurrency);
  const latencyJobs = Number(values['latency-jobs']);
  const only = new Set(values.only!.split(','));
  const factories: Array<[string, (url: string, c: number) => Promise<System>]> = [
    ['axis', axis],
    ['graphile', graphile],
    ['pgboss', pgBoss],
    ['remote', axisRemote],
  ];
  const results: Result[] = [];
  for (const [key, factory] of factories) {
    if (!only.has(key)) continue;
    const db = await createTestDatabase('axis_bench_sched');
    try {
      const system = await factory(db.url, concurrency);
      const result = await measure(system, jobs, concurrency, latencyJobs);
      results.push(result);
      console.error(`${result.name}: done`);
    } finally {
      await db.drop();
    }
  }
  console.log(`scheduler benchmark — ${machineLine()}`);
  console.log(`  no-op jobs: ${fmt(jobs)} enqueued by ${concurrency} callers (one job per transaction), then executed with concurrency ${concurrency}; latency over ${latencyJobs} jobs, one every 5 ms`);
  console.log('  | system | enqueue/s | execute/s | enqueue→start p50 | p99 |');
  console.log('  | --- | ---: | ---: | ---: | ---: |');
  for (const r of results) {
    console.log(`  | ${r.name} | ${fmt(r.enqueuePerSecond)} | ${fmt(r.executePerSecond)} | ${fmt(r.p50, 1)} ms | ${fmt(r.p99, 1)} ms |`);
  }
  const mine = results.find((r) => r.name.startsWith('AXIS scheduler (in-process'));
  const others = results.filter((r) => !r.name.startsWith('AXIS'));
  if (mine && others.length > 0) {
    const best = others.reduce((a, b) => (b.executePerSecond > a.executePerSecond ? b : a));
    const bestLatency = Math.min(...others.map((o) => o.p50));
    console.log(`  execute/s ratio to the better of the two (${best.name.split(' ')[0]}): ${fmt(mine.executePerSecond / best.executePerSecond, 2)} (target ≥ 1.0)`);
    console.log(`  p50 latency: ${fmt(mine.p50, 1)} ms vs best ${fmt(bestLatency, 1)} ms (target: no worse)`);
  }
}

main()
  .then(() => process.exit(0))
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
