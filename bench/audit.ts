/**
 * Audit log benchmark (docs/capabilities/audit.md): AppendEvents throughput through the full gRPC stack — JWT, tenant,
 * idempotency key, the group committer (concurrent calls of one tenant may share one database
 * transaction, by design), the event row and the idempotency record committed (durable) before
 * the reply — next to a bare grpc-js unary echo (bench/echo-server.ts, its own process) at the
 * same concurrency in the same run: the transport bound on this machine. Each call appends
 * exactly one event (`ledger.JournalPosted`, resource `journals/<n>`) under its own
 * idempotency key, from the typed client (clients/src, nice-grpc + kernel middleware) and from a
 * bare grpc-js client (pre-encoded request, metadata set by hand, no response decoding beyond
 * the event id).
 *
 * Also measured: the lag from commit to proof availability. The kernel's integrator (every
 * KERNEL_AUDIT_SEQUENCER_MS after its previous pass) gives committed events their seqs and signs
 * a checkpoint over the new tree size; an event is provable once a signed checkpoint covers its
 * seq. During the AppendEvents runs a poller calls GetCheckpoint({}) every ~20 ms and records
 * (time the answer arrived, tree size). Afterwards the event id → seq map is read in bulk from
 * the database (as superuser), and the lag of an event is the first poll that saw a tree size ≥
 * its seq minus the time its AppendEvents answer arrived (floored at 0). The poll period bounds
 * the resolution: figures are high by up to one period plus one GetCheckpoint round trip.
 *
 * Order: echo; the kernel's warm-up (1 s typed, 1 s bare: JIT, connection pool, the tenant's
 * audit key); the typed run; the bare run (each with runLoad's 1 s warm-up). Printed per run
 * also: the CPU per append of the kernel process, of the PostgreSQL backends serving the bench
 * database and of this process (the callers), from /proc — on two shared cores the sum bounds
 * what the machine can do, and the kernel's share bounds one node (one JavaScript thread).
 *
 * Targets on this 2-core machine: ≥ 3,000 appends/s and p99 lag ≤ 1 s (reference: Tessera
 * ≈ 2,900 writes/s on a 12-core VM).
 *
 *   npm run bench:audit [-- --seconds 5 --concurrency 64 --sequencer-ms 200 --profile DIR]
 *
 * `--sequencer-ms` sets KERNEL_AUDIT_SEQUENCER_MS (default: the kernel's own default, 200 ms);
 * `--profile DIR` CPU-profiles the kernel process (see bench/rpc-overhead.ts).
 *
 * The integrator claims only events of transactions older than the oldest write transaction
 * still running anywhere on the PostgreSQL server (pg_snapshot_xmin is cluster-wide), so a long
 * write transaction in another database delays every proof; the run samples them and prints the
 * oldest seen, to tell such waits from the kernel's own.
 *
 * After the run it checks (exit code 1 when violated): every answered AppendEvents left exactly
 * one `ledger.JournalPosted` entry (warm-up calls included) with a seq, the tenant's seqs are
 * gap-free 1..N, and VerifyLog({}) returns ok with verified_size N. Events not all covered by a
 * signed checkpoint within 60 s of the load's end also fail the run (after the throughput
 * figures are printed).
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Client as GrpcClient, credentials, Metadata } from '@grpc/grpc-js';
import { Client } from 'pg';
import { closeKernelClient, createKernelClient, type KernelClient } from '../clients/src';
import { AuditOutcome } from '../gen/proto/axis/kernel/audit/v1/audit';
import { AppendEventsRequest, AppendEventsResponse, AuditServiceDefinition } from '../gen/proto/axis/kernel/audit/v1/audit_service';
import { mintDevelopmentToken } from '../services/platform/auth/token-verifier';
import { spawnKernel, type KernelProcess } from '../tests/support/kernel-process';
import { createTestDatabase, type TestDatabase } from '../tests/support/test-database';
import { bareUnary, kernelMetadata, spawnEcho, waitForReady, writeProfilerPreload, type EchoProcess, cleanUpOnSignal } from './grpc-bench-support';
import { fmt, machineLine, processCpuMs, runLoad, type LoadResult } from './load';

const APPEND_PATH = '/axis.kernel.audit.v1.AuditService/AppendEvents';
const TENANT = 'bench';
const ACTION = 'ledger.JournalPosted';
/** GetCheckpoint poll period; also the resolution of the lag figures. */
const POLL_MS = 20;
/** pg_stat_activity sample period (write transactions of other databases). */
const SAMPLE_MS = 100;
/** Warm-up of each run (runLoad's) and of the kernel, not counted in the throughput (its calls are checked like the others). */
const WARMUP_MS = 1000;
const COVER_TIMEOUT_MS = 60_000;
const TARGET_APPENDS_PER_SECOND = 3000;
const TARGET_P99_LAG_MS = 1000;

type AuditClient = KernelClient<typeof AuditServiceDefinition>;
/** Which load an append belongs to (the kernel's warm-up is neither run). */
type Phase = 'kernel warm-up' | 'typed' | 'bare';

/** One answered AppendEvents: when its answer arrived, its event id, and whether it was counted (not a warm-up). */
interface Appended {
  at: number;
  eventId: string;
  counted: boolean;
}

/** The AppendEvents request of call n: one event, resource and amount vary per call. */
const appendRequest = (n: number): AppendEventsRequest => ({
  events: [{ action: ACTION, resource: `journals/${n}`, outcome: AuditOutcome.AUDIT_OUTCOME_OK, detail: { amount_minor: n } }],
});

/** Quantile q of sorted values (the convention of bench/load.ts). */
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
const last = (sorted: number[]) => sorted[sorted.length - 1] ?? 0;

/**
 * Polls GetCheckpoint({}) every POLL_MS (or as soon as the previous answer came, when that took
 * longer) until stopped, recording (answer time, tree size). NOT_FOUND (no checkpoint yet) is
 * tree size 0; sizes are kept monotonic (running max) for the binary search. Any other error
 * ends polling and is thrown by check() and stop().
 */
class CheckpointPoller {
  readonly times: number[] = [];
  readonly sizes: number[] = [];
  private failure: unknown;
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(private readonly client: AuditClient) {
    this.done = this.loop().catch((error: unknown) => {
      this.failure = error;
    });
  }

  get latestSize(): number {
    return this.sizes[this.sizes.length - 1] ?? 0;
  }

  check(): void {
    if (this.failure) throw this.failure;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    this.check();
  }

  /** Time of the first poll that saw a tree size ≥ seq, or undefined. */
  firstCovering(seq: number): number | undefined {
    let lo = 0;
    let hi = this.sizes.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.sizes[mid] >= seq) hi = mid;
      else lo = mid + 1;
    }
    return lo < this.sizes.length ? this.times[lo] : undefined;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const started = performance.now();
      let size = 0;
      // A log without a signed checkpoint yet answers the size-0 checkpoint.
      size = (await this.client.getCheckpoint({}, { deadline: 10_000 })).checkpoint?.treeSize ?? 0;
      this.times.push(performance.now());
      this.sizes.push(Math.max(size, this.latestSize));
      await sleep(Math.max(0, POLL_MS - (performance.now() - started)));
    }
  }
}

/**
 * Samples, every SAMPLE_MS until stopped, the age of the oldest write transaction (one holding an
 * xid) running in another database of the server: while it runs, the integrator can claim no
 * event committed after it started. Sampling errors end sampling quietly (a diagnostic only).
 */
class OtherWritersSampler {
  readonly agesMs: number[] = [];
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(private readonly sql: Client) {
    this.done = this.loop().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const { rows } = await this.sql.query<{ ms: number }>(
        `SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)::float8 * 1000 AS ms
           FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()`,
      );
      this.agesMs.push(rows[0].ms);
      await sleep(SAMPLE_MS);
    }
  }
}

/** The kernel's last error lines (it logs at warn; over-budget warnings would drown them). */
function kernelErrors(kernel: KernelProcess): string {
  const errors = kernel.output.filter((line) => line.includes('"level":"error"'));
  const lines = errors.length > 0 ? errors.slice(-3) : kernel.output.slice(-5);
  return lines.map((line) => (line.length > 1200 ? `${line.slice(0, 1200)}…` : line)).join('\n');
}

/** CPU of the kernel process and of the PostgreSQL backends serving the bench database (a backend first seen later counts from 0). */
interface CpuSnapshot {
  kernelMs: number;
  backendsMs: Map<number, number>;
}

async function cpuSnapshot(kernelPid: number, sql: Client, exclude: number[]): Promise<CpuSnapshot> {
  const { rows } = await sql.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND NOT (pid = ANY($1::int[]))', [exclude]);
  const backendsMs = new Map<number, number>();
  for (const { pid } of rows) {
    const ms = processCpuMs(pid);
    if (ms !== undefined) backendsMs.set(pid, ms);
  }
  return { kernelMs: processCpuMs(kernelPid) ?? Number.NaN, backendsMs };
}

/** CPU spent between two snapshots: kernel and database backends, in ms. */
function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): { kernelMs: number; databaseMs: number } {
  let databaseMs = 0;
  for (const [pid, ms] of after.backendsMs) databaseMs += ms - (before.backendsMs.get(pid) ?? 0);
  return { kernelMs: after.kernelMs - before.kernelMs, databaseMs };
}

async function main() {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      concurrency: { type: 'string', default: '64' },
      'sequencer-ms': { type: 'string' },
      profile: { type: 'string' },
    },
  });
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  if (!(seconds > 0)) throw new Error(`--seconds must be a positive number, got ${values.seconds}`);
  if (!(Number.isInteger(concurrency) && concurrency > 0)) throw new Error(`--concurrency must be a positive integer, got ${values.concurrency}`);
  const secret = 'bench-secret-'.padEnd(40, 'x');

  let db: TestDatabase | undefined;
  let kernel: KernelProcess | undefined;
  let echo: EchoProcess | undefined;
  let sql: Client | undefined;
  let sampler: Client | undefined;
  const cleanUp = async () => {
    await Promise.allSettled([sql?.end(), sampler?.end()]);
    await Promise.allSettled([kernel?.stop(), echo?.stop()]);
    await db?.drop();
  };
  // Ctrl-C / SIGTERM mid-run: still stop the children and drop the database.
  const run = cleanUpOnSignal(cleanUp);

  const problems: string[] = [];
  try {
    db = await createTestDatabase('axis_bench');
    const kernelEnv: Record<string, string> = { DATABASE_URL: db.url, KERNEL_AUTH_SECRET: secret, LOG_LEVEL: 'warn' };
    if (values['sequencer-ms']) kernelEnv.KERNEL_AUDIT_SEQUENCER_MS = values['sequencer-ms'];
    // --profile DIR: CPU profile of the kernel process (see bench/rpc-overhead.ts).
    if (values.profile) kernelEnv.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --require ${writeProfilerPreload(path.resolve(values.profile))}`.trim();
    // Started side by side; wait for both to settle so that a failure of one still stops the other.
    const [kernelStart, echoStart] = await Promise.allSettled([spawnKernel(kernelEnv), spawnEcho()]);
    if (kernelStart.status === 'fulfilled') kernel = kernelStart.value;
    if (echoStart.status === 'fulfilled') echo = echoStart.value;
    if (kernelStart.status === 'rejected') throw kernelStart.reason;
    if (echoStart.status === 'rejected') throw echoStart.reason;
    if (!kernel || !echo) throw new Error('unreachable: both servers started');
    const sequencer = values['sequencer-ms'] ? `${values['sequencer-ms']} ms (--sequencer-ms)` : '200 ms (the kernel default)';

    const token = await mintDevelopmentToken({ secret, subject: 'bench', tenants: [TENANT], scope: 'audit:read audit:write' });
    const typed: AuditClient = createKernelClient(AuditServiceDefinition, { address: kernel.address, tenantId: TENANT, token });
    // The poller has its own channel (connection): its calls do not queue behind the load's streams.
    const pollClient: AuditClient = createKernelClient(AuditServiceDefinition, { address: kernel.address, tenantId: TENANT, token });
    const echoClient = new GrpcClient(echo.address, credentials.createInsecure());
    const bareKernel = new GrpcClient(kernel.address, credentials.createInsecure());
    await Promise.all([waitForReady(echoClient), waitForReady(bareKernel)]);
    // Superuser connections: one for the checks (RLS does not apply), one for the sampler.
    sql = new Client({ connectionString: db.url });
    sampler = new Client({ connectionString: db.url });
    // A connection lost mid-run fails its next query; without a listener it would crash the process first.
    for (const c of [sql, sampler]) c.on('error', () => undefined);
    await Promise.all([sql.connect(), sampler.connect()]);
    const appendMetadata = kernelMetadata(token, TENANT, { idempotencyKey: true });

    // Every answered append, by phase; n numbers the calls (resource journals/<n>).
    let n = 0;
    const appended: Record<Phase, Appended[]> = { 'kernel warm-up': [], typed: [], bare: [] };
    let warmupEnd = 0;
    const record = (phase: Phase, started: number, eventIds: string[]) => {
      if (eventIds.length !== 1) throw new Error(`AppendEvents of one event returned ${eventIds.length} event ids`);
      appended[phase].push({ at: performance.now(), eventId: eventIds[0], counted: phase !== 'kernel warm-up' && started >= warmupEnd });
    };
    const appendTyped = (phase: Phase) => async () => {
      const started = performance.now();
      const response = await typed.appendEvents(appendRequest(++n));
      record(phase, started, response.eventIds);
    };
    const appendBare = (phase: Phase) => async () => {
      const started = performance.now();
      const request = Buffer.from(AppendEventsRequest.encode(appendRequest(++n)).finish());
      const response = AppendEventsResponse.decode(await bareUnary(bareKernel, APPEND_PATH, request, appendMetadata));
      record(phase, started, response.eventIds);
    };
    // The echo gets an encoded AppendEventsRequest of the same shape as the kernel callers'.
    const echoPayload = Buffer.from(AppendEventsRequest.encode(appendRequest(100_000)).finish());

    const loadBefore = loadavg()[0];
    const echoRun = await runLoad(() => bareUnary(echoClient, '/bench.Echo/Echo', echoPayload, () => new Metadata()), concurrency, seconds * 1000, { warmupMs: WARMUP_MS, cpuPids: [echo.pid] });
    const poller = new CheckpointPoller(pollClient);
    const otherWriters = new OtherWritersSampler(sampler);
    const loadStartWall = Date.now();
    // The kernel's own warm-up (JIT, connection pool, the tenant's audit key), before any CPU is
    // counted: both callers for a second each. Its events are checked like the others.
    await runLoad(appendTyped('kernel warm-up'), concurrency, WARMUP_MS, 0);
    await runLoad(appendBare('kernel warm-up'), concurrency, WARMUP_MS, 0);
    // CPU per append: kernel process, database backends of the bench database, this process (the callers).
    const kernelPid = kernel.child.pid!;
    const ownBackends = await Promise.all([sql, sampler].map(async (c) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid));
    const cpu0 = await cpuSnapshot(kernelPid, sql, ownBackends);
    const client0 = process.cpuUsage();
    warmupEnd = performance.now() + WARMUP_MS;
    const typedRun = await runLoad(appendTyped('typed'), concurrency, seconds * 1000, WARMUP_MS);
    const cpu1 = await cpuSnapshot(kernelPid, sql, ownBackends);
    const client1 = process.cpuUsage();
    warmupEnd = performance.now() + WARMUP_MS;
    const bareRun = await runLoad(appendBare('bare'), concurrency, seconds * 1000, WARMUP_MS);
    const loadEnd = performance.now();
    const loadEndWall = Date.now();
    const cpu2 = await cpuSnapshot(kernelPid, sql, ownBackends);
    const client2 = process.cpuUsage();
    const clientMs = (a: NodeJS.CpuUsage, b: NodeJS.CpuUsage) => (b.user - a.user + b.system - a.system) / 1000;

    // Throughput first: it stands even when the proofs below never come.
    console.log(`audit benchmark — ${machineLine()}`);
    console.log(`  run at ${new Date().toISOString()}, load average before it ${fmt(loadBefore, 2)}, after it ${fmt(loadavg()[0], 2)} (1 min)`);
    console.log(
      `  AppendEvents, one event per call, own idempotency key, ${concurrency} in flight, ${seconds} s per run after ${WARMUP_MS / 1000} s warm-up; ` +
        `integrator (KERNEL_AUDIT_SEQUENCER_MS) every ${sequencer}`,
    );
    const line = (name: string, r: LoadResult, unit: string) =>
      console.log(`    ${name.padEnd(34)} ${fmt(r.perSecond).padStart(7)} ${unit.padEnd(9)} p50 ${fmt(r.p50, 2).padStart(7)} ms   p99 ${fmt(r.p99, 2).padStart(7)} ms`);
    line('echo, bare grpc-js', echoRun, 'calls/s');
    line('AppendEvents, typed client', typedRun, 'appends/s');
    line('AppendEvents, bare grpc-js client', bareRun, 'appends/s');
    console.log(`  ratio to echo: typed client ${fmt(typedRun.perSecond / echoRun.perSecond, 2)}, bare client ${fmt(bareRun.perSecond / echoRun.perSecond, 2)} (target ≥ 0.5)`);
    // Warm-up calls included: the CPU was measured over them too.
    const cpuLine = (name: string, cpu: { kernelMs: number; databaseMs: number }, callersMs: number, calls: number) =>
      console.log(
        `    ${name.padEnd(34)} kernel ${fmt(cpu.kernelMs / calls, 3)} ms, database backends ${fmt(cpu.databaseMs / calls, 3)} ms, ` +
          `callers (this process) ${fmt(callersMs / calls, 3)} ms`,
      );
    console.log('  CPU per append (warm-up included; the kernel is one JavaScript thread, so 1 / its CPU per call bounds one node):');
    cpuLine('typed run', cpuBetween(cpu0, cpu1), clientMs(client0, client1), appended.typed.length);
    cpuLine('bare run', cpuBetween(cpu1, cpu2), clientMs(client1, client2), appended.bare.length);
    const kernelUs = (cpuBetween(cpu1, cpu2).kernelMs * 1000) / appended.bare.length;
    console.log(
      `  kernel CPU per append ${fmt(kernelUs)} µs vs the echo server's ${fmt(echoRun.cpuUsPerCall ?? Number.NaN)} µs per call: ` +
        `${fmt(kernelUs / (echoRun.cpuUsPerCall ?? Number.NaN), 1)} × (target ≤ 3 ×)`,
    );
    const overBudget = kernel.output.filter((l) => l.includes('rpc over its latency budget')).length;
    if (overBudget > 0) console.log(`  kernel: ${fmt(overBudget)} calls logged over their latency budget`);

    // Wait until every event of the tenant has its seq and a signed checkpoint covers them all.
    let logSize = 0;
    for (;;) {
      const [row] = (
        await sql.query<{ events: number; sequenced: number; max_seq: string | null }>(
          `SELECT (SELECT count(*)::int FROM kernel_audit_event WHERE tenant_id = $1) AS events, count(*)::int AS sequenced, max(seq)::text AS max_seq
             FROM kernel_audit_sequence WHERE tenant_id = $1`,
          [TENANT],
        )
      ).rows;
      const sequencedSize = Number(row.max_seq ?? 0);
      if (row.events === row.sequenced && poller.latestSize >= sequencedSize) {
        logSize = sequencedSize;
        break;
      }
      poller.check();
      if (performance.now() - loadEnd > COVER_TIMEOUT_MS) {
        throw new Error(
          `${COVER_TIMEOUT_MS / 1000} s after the load, ${fmt(row.sequenced)} of ${fmt(row.events)} events are sequenced (largest seq ${row.max_seq ?? 'none'}) ` +
            `and GetCheckpoint({}) reports tree size ${fmt(poller.latestSize)}`,
        );
      }
      await sleep(50);
    }
    const coveredAfterMs = performance.now() - loadEnd;
    await Promise.all([poller.stop(), otherWriters.stop()]);

    // Lags: event id → seq in bulk, then the first poll that covered the seq.
    const seqOf = new Map<string, number>();
    for (const row of (await sql.query<{ event_id: string; seq: string }>('SELECT event_id::text, seq::text FROM kernel_audit_sequence WHERE tenant_id = $1', [TENANT])).rows) {
      seqOf.set(row.event_id, Number(row.seq));
    }
    const allCalls = [...appended['kernel warm-up'], ...appended.typed, ...appended.bare];
    const lagsOf = (calls: Appended[]) => {
      const lags: number[] = [];
      for (const call of calls) {
        const seq = seqOf.get(call.eventId);
        const covered = seq === undefined ? undefined : poller.firstCovering(seq);
        if (covered === undefined) problems.push(`event ${call.eventId} (seq ${seq ?? 'none'}) was never seen covered by a checkpoint`);
        else lags.push(Math.max(0, covered - call.at));
      }
      return lags.sort((a, b) => a - b);
    };
    const lagTyped = lagsOf(appended.typed.filter((c) => c.counted));
    const lagBare = lagsOf(appended.bare.filter((c) => c.counted));
    const lagAll = [...lagTyped, ...lagBare].sort((a, b) => a - b);
    lagsOf(allCalls.filter((c) => !c.counted)); // warm-up calls: covered too (their lags are not reported)

    // Checks: one entry per answered call, gap-free seqs 1..N, a log that verifies at size N.
    const distinctIds = new Set(allCalls.map((c) => c.eventId)).size;
    if (distinctIds !== allCalls.length) problems.push(`${allCalls.length} answered calls returned only ${distinctIds} distinct event ids`);
    const [entries] = (await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM kernel_audit_event WHERE tenant_id = $1 AND action = $2', [TENANT, ACTION])).rows;
    if (entries.n !== allCalls.length) problems.push(`${entries.n} ${ACTION} entries for ${allCalls.length} answered AppendEvents calls`);
    const [seqs] = (
      await sql.query<{ n: number; distinct_seqs: number; distinct_events: number; min: string | null; max: string | null }>(
        `SELECT count(*)::int AS n, count(DISTINCT seq)::int AS distinct_seqs, count(DISTINCT event_id)::int AS distinct_events, min(seq)::text AS min, max(seq)::text AS max
           FROM kernel_audit_sequence WHERE tenant_id = $1`,
        [TENANT],
      )
    ).rows;
    const gapFree = seqs.n === logSize && seqs.distinct_seqs === logSize && seqs.distinct_events === logSize && Number(seqs.min) === 1 && Number(seqs.max) === logSize;
    if (!gapFree) problems.push(`seqs are not gap-free 1..${logSize}: ${seqs.n} rows, ${seqs.distinct_seqs} distinct seqs, ${seqs.distinct_events} distinct events, min ${seqs.min}, max ${seqs.max}`);
    // How the integrator batched: one checkpoint per pass that added entries.
    const checkpoints = (
      // Qualified: a bare `ORDER BY tree_size` would sort the text output column ("999" after "1000").
      await sql.query<{ tree_size: string; create_time: Date }>(
        'SELECT c.tree_size::text, c.create_time FROM kernel_audit_checkpoint c WHERE c.tenant_id = $1 ORDER BY c.tree_size',
        [TENANT],
      )
    ).rows.map((r) => ({ size: Number(r.tree_size), time: r.create_time.getTime() }));

    const verifyStart = performance.now();
    const verified = await typed.verifyLog({}, { deadline: 300_000 });
    const verifyMs = performance.now() - verifyStart;
    if (!verified.ok || verified.verifiedSize !== logSize) {
      problems.push(`VerifyLog: ok ${verified.ok}, verified_size ${verified.verifiedSize} (log size ${logSize}), problem ${JSON.stringify(verified.problem)}`);
    }

    echoClient.close();
    bareKernel.close();
    closeKernelClient(typed);
    closeKernelClient(pollClient);

    const lagLine = (name: string, lags: number[]) =>
      console.log(
        `    ${name.padEnd(34)} p50 ${fmt(quantile(lags, 0.5)).padStart(5)} ms   p99 ${fmt(quantile(lags, 0.99)).padStart(5)} ms   max ${fmt(last(lags)).padStart(5)} ms   (${fmt(lags.length)} events)`,
      );
    console.log(`  lag from commit (the AppendEvents answer) to a signed checkpoint covering the event, GetCheckpoint({}) polled every ${POLL_MS} ms (high by up to a poll interval):`);
    lagLine('typed run', lagTyped);
    lagLine('bare run', lagBare);
    lagLine('both runs', lagAll);
    const pollGaps = poller.times.slice(1).map((t, i) => t - poller.times[i]).sort((a, b) => a - b);
    console.log(`    polls: ${fmt(poller.times.length)}, interval p50 ${fmt(quantile(pollGaps, 0.5))} ms, p99 ${fmt(quantile(pollGaps, 0.99))} ms, max ${fmt(last(pollGaps))} ms (a poll waits behind the load too)`);
    const batchSizes = checkpoints.map((c, i) => c.size - (checkpoints[i - 1]?.size ?? 0)).sort((a, b) => a - b);
    const duringLoad = checkpoints.filter((c) => c.time >= loadStartWall && c.time <= loadEndWall);
    const intervals = duringLoad.slice(1).map((c, i) => c.time - duringLoad[i].time).sort((a, b) => a - b);
    console.log(
      `  integrator: ${fmt(checkpoints.length)} checkpoints, entries per checkpoint p50 ${fmt(quantile(batchSizes, 0.5))}, max ${fmt(last(batchSizes))}; ` +
        `interval between checkpoints during the load p50 ${fmt(quantile(intervals, 0.5))} ms, max ${fmt(last(intervals))} ms; all covered ${fmt(coveredAfterMs)} ms after the load`,
    );
    console.log(`  oldest write transaction seen running in another database of the server during the load: ${fmt(last([...otherWriters.agesMs].sort((a, b) => a - b)))} ms`);
    console.log(
      `  checks: ${fmt(entries.n)} ${ACTION} entries for ${fmt(allCalls.length)} answered calls (warm-up included); log size ${fmt(logSize)}, seqs gap-free ${gapFree}; ` +
        `VerifyLog ok ${verified.ok}, verified_size ${fmt(verified.verifiedSize)}, ${fmt(verified.checkpointsVerified)} checkpoints, ${fmt(verifyMs)} ms`,
    );
    const verdict = (met: boolean) => (met ? 'MET' : 'MISSED');
    const p99Lag = quantile(lagAll, 0.99);
    console.log(
      `  target ≥ ${fmt(TARGET_APPENDS_PER_SECOND)} appends/s (reference: Tessera ≈ 2,900 writes/s on a 12-core VM): ` +
        `typed ${fmt(typedRun.perSecond)} → ${verdict(typedRun.perSecond >= TARGET_APPENDS_PER_SECOND)}, bare ${fmt(bareRun.perSecond)} → ${verdict(bareRun.perSecond >= TARGET_APPENDS_PER_SECOND)}`,
    );
    console.log(`  target p99 lag ≤ ${fmt(TARGET_P99_LAG_MS)} ms: ${fmt(p99Lag)} ms → ${verdict(p99Lag <= TARGET_P99_LAG_MS)}`);
  } catch (error) {
    if (kernel) console.error(`the kernel's last error lines:\n${kernelErrors(kernel)}`);
    throw error;
  } finally {
    await run.finish();
  }
  if (problems.length > 0) {
    for (const problem of problems.slice(0, 20)) console.error(`CHECK FAILED: ${problem}`);
    if (problems.length > 20) console.error(`… and ${problems.length - 20} more`);
    process.exit(1);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
