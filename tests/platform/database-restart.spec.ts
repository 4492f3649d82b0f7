import { randomBytes } from 'node:crypto';
import { Status } from 'nice-grpc-common';
import { Client } from 'pg';
import { closeKernelClient, createSequenceClient, isKernelError, type SequenceClient } from '../../clients/src';
import { ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { mintDevelopmentToken } from '../../services/platform/auth/token-verifier';
import { spawnKernel, type KernelProcess } from '../support/kernel-process';
import { startOwnPostgres, type OwnPostgres } from '../support/own-postgres';
import { TEST_BACKEND } from '../support/test-kernel';
import { waitFor } from '../support/wait-for';

/**
 * The database going away under load does not take the kernel down: a restarted PostgreSQL (the
 * test's own) and terminated backends fail only the calls in flight — UNAVAILABLE with RetryInfo
 * (or ABORTED for an idempotency key still held by a call that died with its connection) — the
 * node keeps serving once the database is back, without a restart, and nothing acknowledged is
 * lost: every number a caller was given exists, once, with no gap.
 */
(TEST_BACKEND === 'embedded' ? describe.skip : describe)('database restart under load', () => {
  let pg: OwnPostgres;
  let node: KernelProcess;
  const secret = randomBytes(32).toString('base64url');
  const clients: SequenceClient[] = [];

  beforeAll(async () => {
    pg = await startOwnPostgres();
    node = await spawnKernel({ DATABASE_URL: pg.url, KERNEL_AUTH_SECRET: secret, KERNEL_SCHEDULER_POLL_MS: '200' });
  }, 120_000);
  afterAll(async () => {
    clients.forEach(closeKernelClient);
    await node?.stop();
    await pg?.destroy();
  });

  async function client(): Promise<SequenceClient> {
    const token = await mintDevelopmentToken({ secret, subject: 'restart', tenants: ['restart'], scope: 'sequences:read sequences:write' });
    const c = createSequenceClient({ address: node.address, tenantId: 'restart', maxAttempts: 1, deadlineMs: 10_000, token });
    clients.push(c);
    return c;
  }

  /** Callers issuing numbers until `until` resolves; returns acknowledged values and refusals seen. */
  async function underLoad(c: SequenceClient, callers: number, disrupt: () => Promise<void>) {
    const acknowledged: number[] = [];
    const refusals: string[] = [];
    let stop = false;
    const loops = Array.from({ length: callers }, async () => {
      while (!stop) {
        try {
          const { number } = await c.issueNumber({ seriesId: 'load' });
          acknowledged.push(number!.value);
        } catch (error) {
          if (!isKernelError(error)) throw error;
          refusals.push(`${Status[error.code]} ${error.reason} ${error.retryDelayMs !== undefined ? 'retry' : 'final'}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    });
    await new Promise((r) => setTimeout(r, 500));
    await disrupt();
    // Serving again: a call after the disruption succeeds (the node retries nothing for us).
    await waitFor(async () => (await c.issueNumber({ seriesId: 'load' }).then(() => true, () => false)), 30_000, 200);
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(loops);
    return { acknowledged, refusals };
  }

  async function expectNothingLost(c: SequenceClient, acknowledged: number[]): Promise<void> {
    expect(new Set(acknowledged).size).toBe(acknowledged.length);
    const report = (await c.getGapReport({ seriesId: 'load' })).gapReport!;
    expect(report.complete).toBe(true);
    const issued = new Set<number>();
    for (let token = ''; ; ) {
      const page = await c.listNumbers({ seriesId: 'load', pageSize: 1000, pageToken: token });
      page.numbers.forEach((n) => issued.add(n.value));
      if (!page.nextPageToken) break;
      token = page.nextPageToken;
    }
    for (const value of acknowledged) expect(issued.has(value)).toBe(true);
  }

  test('PostgreSQL restarted while 16 callers issue numbers: in-flight calls fail retryably, the node serves on, nothing acknowledged is lost', async () => {
    const c = await client();
    await c.createSeries({ series: { seriesId: 'load', pattern: 'L{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    const { acknowledged, refusals } = await underLoad(c, 16, async () => {
      await pg.stop('fast'); // terminates every backend of the kernel mid-transaction
      await new Promise((r) => setTimeout(r, 1000));
      await pg.start();
    });
    expect(node.child.exitCode).toBeNull();
    expect(acknowledged.length).toBeGreaterThan(50);
    expect(refusals.length).toBeGreaterThan(0);
    for (const refusal of new Set(refusals)) expect(refusal).toMatch(/^(UNAVAILABLE (DATABASE_UNAVAILABLE|DATABASE_BUSY)|ABORTED IDEMPOTENCY_KEY_IN_USE) retry$/);
    await expectNothingLost(c, acknowledged);
  });

  test("the kernel's backends terminated (pg_terminate_backend) under load: the node serves on, nothing acknowledged is lost", async () => {
    const c = await client();
    const su = new Client({ connectionString: pg.url });
    await su.connect();
    try {
      const { acknowledged } = await underLoad(c, 16, async () => {
        const { rows } = await su.query(`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name LIKE 'axis-kernel%'`);
        expect(rows[0].n).toBeGreaterThan(0);
      });
      expect(node.child.exitCode).toBeNull();
      await expectNothingLost(c, acknowledged);
      // The background work recovered too: the scheduler's system jobs run again (the
      // reservation sweep ticks every second), and the notification connection is back.
      await waitFor(async () => {
        const { rows } = await su.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'axis-kernel-listen'`);
        return rows[0].n === 1;
      }, 20_000);
    } finally {
      await su.end();
    }
  });
});
