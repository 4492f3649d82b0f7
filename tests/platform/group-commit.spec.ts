import { Status } from 'nice-grpc-common';
import { closeKernelClient, createSequenceClient, isKernelError, type SequenceClient } from '../../clients/src';
import { ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { MutationCommitter } from '../../services/platform/unit-of-work/mutation-committer';
import { superuserQuery } from '../support/superuser-sql';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/**
 * Concurrent mutating calls share commit groups. A call that fails after touching the database
 * must not take its neighbours down, nor leave anything behind: the group is re-run isolated.
 */
describe('group commit', () => {
  let kernel: TestKernel;
  let client: SequenceClient;

  beforeAll(async () => {
    kernel = await startTestKernel();
    client = createSequenceClient({ address: kernel.address, tenantId: 'groups', maxAttempts: 1, token: await kernel.token({ tenants: ['groups'] }) });
  });
  afterAll(async () => {
    closeKernelClient(client);
    await kernel?.stop();
  });

  const outcome = (call: Promise<unknown>) =>
    call.then(
      () => 'OK',
      (error: unknown) => (isKernelError(error) ? `${Status[error.code]} ${error.reason}` : String(error)),
    );

  test('racing creations of one series: exactly one wins, the rest are ALREADY_EXISTS, one audit entry', async () => {
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        outcome(client.createSeries({ series: { seriesId: 'race', displayName: `attempt ${i}`, pattern: 'R{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } })),
      ),
    );
    expect(results.filter((r) => r === 'OK')).toHaveLength(1);
    expect(results.filter((r) => r === 'ALREADY_EXISTS SERIES_EXISTS')).toHaveLength(11);
    expect(await count(`SELECT count(*)::int AS n FROM kernel_audit_event WHERE tenant_id = 'groups' AND action LIKE '%/CreateSeries'`)).toBe(1);
  });

  test('calls that fail after touching the database leave their group-mates committed and nothing half-written', async () => {
    await client.createSeries({ series: { seriesId: 'mixed', pattern: 'M{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    const calls = Array.from({ length: 40 }, (_, i) => {
      if (i % 10 === 3) return outcome(client.issueNumber({ seriesId: `missing-${i}` })); // reads, then fails
      if (i % 10 === 7) return outcome(client.voidNumber({ seriesId: 'mixed', value: 10_000 + i, reason: 'x' })); // locks nothing, fails
      if (i % 10 === 9) return outcome(client.issueNumber({ seriesId: 'Bad Id' })); // fails before the database
      return outcome(client.issueNumber({ seriesId: 'mixed', subjectRef: `doc-${i}` }));
    });
    const results = await Promise.all(calls);
    const ok = results.filter((r) => r === 'OK').length;
    expect(ok).toBe(28);
    expect(results.filter((r) => r === 'NOT_FOUND SERIES_NOT_FOUND')).toHaveLength(4);
    expect(results.filter((r) => r === 'NOT_FOUND NUMBER_NOT_FOUND')).toHaveLength(4);
    expect(results.filter((r) => r === 'INVALID_ARGUMENT FIELD_INVALID')).toHaveLength(4);

    const report = (await client.getGapReport({ seriesId: 'mixed' })).gapReport!;
    expect(report.complete).toBe(true);
    expect(report.periods[0]).toMatchObject({ firstValue: 1, lastValue: ok, issuedCount: ok });
    expect(await count(`SELECT count(*)::int AS n FROM kernel_audit_event WHERE tenant_id = 'groups' AND resource LIKE 'series/mixed/%'`)).toBe(ok);
    expect(await count(`SELECT count(*)::int AS n FROM kernel_idempotency_record WHERE tenant_id = 'groups' AND method LIKE '%/IssueNumber'`)).toBe(ok);
  });

  test('150 concurrent calls with one failing after touching the database: each call is answered on its own, nothing half-written', async () => {
    await client.createSeries({ series: { seriesId: 'big', pattern: 'B{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    // More calls than one group takes (the committer caps a group's savepoints below PostgreSQL's
    // subtransaction cache); the group holding the failing call is re-run isolated.
    const results = await Promise.all(
      Array.from({ length: 150 }, (_, i) =>
        outcome(i === 75 ? client.issueNumber({ seriesId: 'absent' }) : client.issueNumber({ seriesId: 'big', subjectRef: `doc-${i}` })),
      ),
    );
    expect(results.filter((r) => r === 'OK')).toHaveLength(149);
    expect(results[75]).toBe('NOT_FOUND SERIES_NOT_FOUND');
    const report = (await client.getGapReport({ seriesId: 'big' })).gapReport!;
    expect(report.complete).toBe(true);
    expect(report.periods[0]).toMatchObject({ firstValue: 1, lastValue: 149, issuedCount: 149 });
    expect(await count(`SELECT count(*)::int AS n FROM kernel_audit_event WHERE tenant_id = 'groups' AND resource LIKE 'series/big/%'`)).toBe(149);
  });

  test('calls that reach the committer in one turn of the event loop commit in one group, the first one included', async () => {
    const committer = new MutationCommitter(kernel.kernel.db, { callTimeoutMs: 5000, maxQueuedPerTenant: 100 });
    const submit = (name: string) =>
      committer.submit({
        tenantId: 'groups',
        method: '/test.Group/Do',
        idempotencyKey: `one-turn-${name}`,
        requestHash: Buffer.from(name),
        retentionHours: 1,
        decode: (b: Buffer) => b.toString(),
        execute: async (tx) => {
          const [{ txid }] = await tx.query<{ txid: string }>('SELECT txid_current()::text AS txid');
          return { response: txid, responseBytes: Buffer.from(txid), audit: [{ tenantId: 'groups', principal: 't', action: 'test.Group', resource: name, outcome: 'OK' as const, traceId: 'trace' }] };
        },
      });
    // The first call finds the tenant's queue empty; the others come in the same turn, some after
    // awaits as a middleware chain's would be.
    const calls = [submit('a'), submit('b'), (async () => (await Promise.resolve(), submit('c')))(), (async () => (await null, await null, submit('d')))()];
    const transactions = new Set((await Promise.all(calls.map(async (call) => (await call).response))) as string[]);
    expect(transactions.size).toBe(1);
  });

  const count = async (sql: string): Promise<number> => (await superuserQuery<{ n: number }>(kernel.databaseUrl, sql))[0].n;
});
