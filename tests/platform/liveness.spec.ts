import { Status } from 'nice-grpc-common';
import { Client } from 'pg';
import { closeKernelClient, createSequenceClient, isKernelError, type SequenceClient } from '../../clients/src';
import { ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { Database } from '../../services/platform/database/database';
import { KernelError } from '../../services/platform/kernel-error';
import { MutationCommitter } from '../../services/platform/unit-of-work/mutation-committer';
import { refusal } from '../support/refusal';
import { startTestKernel, TEST_BACKEND, type TestKernel } from '../support/test-kernel';

/**
 * Nothing on the request path waits without bound: every lock wait and statement has a timeout,
 * waiting for a connection is bounded and fair between tenants, a call whose caller has gone is
 * not started, a tenant's queue is bounded, a handler that never returns is abandoned. Row locks
 * here are held by a `psql`-like session of the test, as an operator or a stuck job would.
 *
 * (The embedded database is one session: a lock held by another "session" is not possible there.)
 */
const describeOnPostgres = TEST_BACKEND === 'embedded' ? describe.skip : describe;

const LOCK_TIMEOUT_MS = 400;

const outcome = (call: Promise<unknown>) =>
  call.then(
    () => 'OK',
    (error: unknown) => (isKernelError(error) ? `${Status[error.code]} ${error.reason}` : String(error)),
  );

/** Resolves with which of the calls settled while `holding` is still pending (the lock still held). */
async function settledWhileHeld(calls: Array<Promise<string>>, holdMs: number): Promise<Array<string | 'pending'>> {
  const results: Array<string | 'pending'> = calls.map(() => 'pending');
  calls.forEach((c, i) => void c.then((r) => (results[i] = r)));
  await new Promise((r) => setTimeout(r, holdMs));
  return [...results];
}

describeOnPostgres('liveness under held locks', () => {
  let kernel: TestKernel;
  let su: Client;
  const clients: SequenceClient[] = [];

  const client = async (tenant: string, options: { deadlineMs?: number } = {}) => {
    const c = createSequenceClient({ address: kernel.address, tenantId: tenant, maxAttempts: 1, token: await kernel.token({ tenants: [tenant] }), ...options });
    clients.push(c);
    return c;
  };
  const series = (c: SequenceClient, id: string) => c.createSeries({ series: { seriesId: id, pattern: 'L{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
  /** Holds the counter row of (tenant, series) in the test's own transaction. */
  const holdCounter = async (tenant: string, seriesId: string) => {
    await su.query('BEGIN');
    const { rowCount } = await su.query('SELECT 1 FROM sequence_counter WHERE tenant_id = $1 AND series_id = $2 FOR UPDATE', [tenant, seriesId]);
    expect(rowCount).toBe(1);
  };

  beforeAll(async () => {
    kernel = await startTestKernel({
      env: { KERNEL_DB_LOCK_TIMEOUT_MS: String(LOCK_TIMEOUT_MS), KERNEL_DB_POOL_SIZE: '4', KERNEL_DB_CONNECTIONS_PER_TENANT: '2', KERNEL_COMMIT_QUEUE_PER_TENANT: '4' },
    });
    su = new Client({ connectionString: kernel.databaseUrl });
    await su.connect();
  });
  afterAll(async () => {
    clients.forEach(closeKernelClient);
    await su?.end();
    await kernel?.stop();
  });

  test('a call blocked on a row lock fails after the lock timeout (ABORTED, RetryInfo); its group-mate commits; another tenant is not delayed', async () => {
    const a = await client('live-a');
    const b = await client('live-b');
    await series(a, 'held');
    await series(a, 'free');
    await series(b, 'other');
    await a.issueNumber({ seriesId: 'held' });
    await holdCounter('live-a', 'held');
    try {
      const stuck = a.issueNumber({ seriesId: 'held' });
      await new Promise((r) => setTimeout(r, 50));
      const calls = [outcome(stuck), outcome(a.issueNumber({ seriesId: 'free' })), outcome(b.issueNumber({ seriesId: 'other' })), outcome(b.listSeries({}))];
      // The other tenant is answered while the lock is still held, well inside one lock timeout.
      expect((await settledWhileHeld(calls, LOCK_TIMEOUT_MS / 2)).slice(2)).toEqual(['OK', 'OK']);
      // The blocked call gives up and its unrelated group-mate commits, still under the held lock.
      expect(await settledWhileHeld(calls, 6 * LOCK_TIMEOUT_MS)).toEqual(['ABORTED TRANSACTION_CONFLICT', 'OK', 'OK', 'OK']);
      expect((await refusal(stuck)).retryDelayMs).toBeGreaterThan(0);
    } finally {
      await su.query('ROLLBACK');
    }
    // Nothing half-written: the refused call took no number.
    const report = (await a.getGapReport({ seriesId: 'held' })).gapReport!;
    expect(report).toMatchObject({ complete: true, periods: [{ lastValue: 1, issuedCount: 1 }] });
  });

  test('more stuck tenants than connections: another tenant waits at most about one lock timeout, never for the lock holder', async () => {
    const stuck = ['live-s1', 'live-s2', 'live-s3', 'live-s4', 'live-s5'];
    const stuckClients = await Promise.all(stuck.map((t) => client(t)));
    for (const c of stuckClients) {
      await series(c, 'held');
      await c.issueNumber({ seriesId: 'held' });
    }
    const quiet = await client('live-quiet');
    await series(quiet, 'q');
    await su.query('BEGIN');
    await su.query(`SELECT 1 FROM sequence_counter WHERE tenant_id = ANY($1) FOR UPDATE`, [stuck]);
    try {
      const blocked = stuckClients.map((c) => outcome(c.issueNumber({ seriesId: 'held' })));
      await new Promise((r) => setTimeout(r, 50));
      const quietCalls = [outcome(quiet.listSeries({})), outcome(quiet.issueNumber({ seriesId: 'q' }))];
      // Four connections, five stuck tenants: the quiet tenant gets a connection as soon as a stuck
      // call hits its lock timeout — while the locks are still held.
      expect(await settledWhileHeld(quietCalls, 4 * LOCK_TIMEOUT_MS)).toEqual(['OK', 'OK']);
      expect(new Set(await Promise.all(blocked))).toEqual(new Set(['ABORTED TRANSACTION_CONFLICT']));
    } finally {
      await su.query('ROLLBACK');
    }
  });

  test('a call whose deadline passed while it waited behind a held group is never executed', async () => {
    const a = await client('live-deadline');
    const impatient = await client('live-deadline', { deadlineMs: 150 });
    await series(a, 'held');
    await series(a, 'victim');
    await a.issueNumber({ seriesId: 'held' });
    await holdCounter('live-deadline', 'held');
    let victim: string;
    try {
      const filler = outcome(a.issueNumber({ seriesId: 'held' }));
      await new Promise((r) => setTimeout(r, 50));
      victim = await outcome(impatient.issueNumber({ seriesId: 'victim' }));
      expect(victim).toMatch(/^DEADLINE_EXCEEDED|^CANCELLED/);
      await filler;
    } finally {
      await su.query('ROLLBACK');
    }
    await new Promise((r) => setTimeout(r, 300));
    expect((await a.listNumbers({ seriesId: 'victim' })).numbers).toEqual([]);
    const { rows } = await su.query(`SELECT count(*)::int AS n FROM kernel_audit_event WHERE tenant_id = 'live-deadline' AND resource LIKE 'series/victim/%'`);
    expect(rows[0].n).toBe(0);
  });

  test("a tenant's queue on a node is bounded: beyond it RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure", async () => {
    const a = await client('live-queue');
    await series(a, 'held');
    await series(a, 'q');
    await a.issueNumber({ seriesId: 'held' });
    await holdCounter('live-queue', 'held');
    let answers: string[];
    const refused: unknown[] = [];
    try {
      const filler = outcome(a.issueNumber({ seriesId: 'held' }));
      await new Promise((r) => setTimeout(r, 50));
      const calls = Array.from({ length: 8 }, () =>
        a.issueNumber({ seriesId: 'q' }).catch((error: unknown) => {
          refused.push(error);
          throw error;
        }),
      );
      await new Promise((r) => setTimeout(r, 100));
      await su.query('ROLLBACK');
      answers = await Promise.all(calls.map(outcome));
      await filler;
    } catch (error) {
      await su.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
    expect(answers.filter((x) => x === 'OK')).toHaveLength(4);
    expect(answers.filter((x) => x === 'RESOURCE_EXHAUSTED COMMIT_QUEUE_FULL')).toHaveLength(4);
    const error = refused.find((e) => isKernelError(e) && e.reason === 'COMMIT_QUEUE_FULL');
    expect(isKernelError(error) && error.retryDelayMs).toBeGreaterThan(0);
    expect(isKernelError(error) && error.quotaViolations?.[0]?.subject).toBe('tenant:live-queue');
  });
});

describe('bounded waits inside the kernel', () => {
  let kernel: TestKernel;

  beforeAll(async () => {
    kernel = await startTestKernel();
  });
  afterAll(async () => {
    await kernel?.stop();
  });

  test('a handler that never returns is abandoned after the call timeout (DEADLINE_EXCEEDED); its group-mates commit', async () => {
    const committer = new MutationCommitter(kernel.kernel.db, { callTimeoutMs: 300, maxQueuedPerTenant: 100 });
    const entry = (resource: string) => ({ tenantId: 'hang', principal: 't', action: 'test.Hang', resource, outcome: 'OK' as const, traceId: 'trace' });
    const mutation = (resource: string, execute: Parameters<MutationCommitter['submit']>[0]['execute']) => ({
      tenantId: 'hang',
      method: '/test.Hang/Do',
      idempotencyKey: resource,
      requestHash: Buffer.from(resource),
      retentionHours: 1,
      decode: (b: Buffer) => b.toString(),
      execute,
    });
    const first = committer.submit(mutation('first', async () => ({ response: 'first', responseBytes: Buffer.from('first'), audit: [entry('first')] })));
    const hanging = committer.submit(
      mutation('hanging', async (tx) => {
        await tx.query('SELECT 1');
        return new Promise(() => undefined); // never settles
      }),
    );
    const after = committer.submit(mutation('after', async (tx) => {
      await tx.query('SELECT 1');
      return { response: 'after', responseBytes: Buffer.from('after'), audit: [entry('after')] };
    }));
    await expect(first).resolves.toMatchObject({ response: 'first' });
    const error = await hanging.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KernelError);
    expect(error).toMatchObject({ code: Status.DEADLINE_EXCEEDED, reason: 'CALL_TIMEOUT' });
    await expect(after).resolves.toMatchObject({ response: 'after' });
    const rows = await kernel.kernel.db.inTenantTransaction('hang', (tx) => tx.query<{ resource: string }>("SELECT resource FROM kernel_audit_event WHERE action = 'test.Hang' ORDER BY event_id"));
    expect(rows.map((r) => r.resource)).toEqual(['first', 'after']);
  });

  // Holding transactions open side by side needs more than the embedded database's one session.
  (TEST_BACKEND === 'embedded' ? test.skip : test)('waiting for a connection is bounded (UNAVAILABLE DATABASE_BUSY with RetryInfo) and fair: a tenant over its share waits, another does not', async () => {
    const db = new Database({ connectionString: kernel.databaseUrl }, { poolSize: 3, connectionsPerTenant: 2, statementTimeoutMs: 5000, lockTimeoutMs: 1000, acquireTimeoutMs: 300 });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const hold = (tenant: string) =>
      db.inTenantTransaction(tenant, async (tx) => {
        await tx.query('SELECT 1');
        await held;
      });
    try {
      const holders = [hold('busy'), hold('busy')];
      await new Promise((r) => setTimeout(r, 50));
      // Over its share: waits, then gives up with a retryable UNAVAILABLE.
      const third = await db.inTenantTransaction('busy', (tx) => tx.query('SELECT 1')).catch((e: unknown) => e);
      expect(third).toMatchObject({ code: Status.UNAVAILABLE, reason: 'DATABASE_BUSY' });
      expect((third as KernelError).options.retryDelayMs).toBeGreaterThan(0);
      // Another tenant gets the last connection at once.
      await expect(db.inTenantTransaction('calm', (tx) => tx.query<{ one: number }>('SELECT 1 AS one'))).resolves.toEqual([{ one: 1 }]);
      // A cancelled waiter leaves the queue at once.
      const other = [hold('calm-1')];
      await new Promise((r) => setTimeout(r, 50));
      const controller = new AbortController();
      const waiting = db.inTenantTransaction('calm-2', (tx) => tx.query('SELECT 1'), { signal: controller.signal }).catch((e: unknown) => e);
      controller.abort();
      expect(await waiting).toMatchObject({ code: Status.CANCELLED });
      release();
      await Promise.all([...holders, ...other]);
    } finally {
      release();
      await db.close();
    }
  });
});
