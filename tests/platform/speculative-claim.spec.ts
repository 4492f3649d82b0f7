import { createHash } from 'node:crypto';
import { Status } from 'nice-grpc-common';
import { Client, type Pool, type PoolClient } from 'pg';
import { Database, type StatementBatcher, type TenantTransaction } from '../../services/platform/database/database';
import { KernelError } from '../../services/platform/kernel-error';
import { idempotencyLockKey, MutationCommitter, type Mutation } from '../../services/platform/unit-of-work/mutation-committer';
import { startTestKernel, TEST_BACKEND, type TestKernel } from '../support/test-kernel';

/**
 * A commit group's claim of idempotency keys costs no round trip of its own: it travels with the
 * first statement any call of the group sends, and that call runs speculatively until the claim
 * is in. Whatever the claim decides, the outcome is as if it had been asked first: a refused
 * call (a replay, a key in use elsewhere, a key reused for another request) leaves nothing, and
 * no call of its group sees its work.
 */
const TENANT = 'spec-claim';
const METHOD = '/test.Claim/Write';

// Two sessions at once (the test's and the kernel's): not on the embedded database's one session.
(TEST_BACKEND === 'embedded' ? describe.skip : describe)('the key claim travels with the first statement', () => {
  let kernel: TestKernel;
  let su: Client;
  let db: Database;
  /** Every message the committer's connections sent, in order. */
  const messages: string[] = [];
  let committer: MutationCommitter;

  beforeAll(async () => {
    kernel = await startTestKernel();
    su = new Client({ connectionString: kernel.databaseUrl });
    await su.connect();
    await su.query(`CREATE TABLE claim_probe (v text PRIMARY KEY);
                    CREATE TABLE claim_counter (n bigint NOT NULL); INSERT INTO claim_counter VALUES (0);
                    GRANT SELECT, INSERT ON claim_probe TO axis_kernel_app; GRANT SELECT, UPDATE ON claim_counter TO axis_kernel_app`);
    db = new Database({ connectionString: kernel.databaseUrl }, { poolSize: 4, connectionsPerTenant: 4, statementTimeoutMs: 5000, lockTimeoutMs: 2000, acquireTimeoutMs: 2000 });
    (db as unknown as { pool: Pool }).pool.on('connect', (client: PoolClient) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        messages.push(String(args[0]));
        return query(...args);
      };
    });
    committer = new MutationCommitter(db, { callTimeoutMs: 5000, maxQueuedPerTenant: 100 });
  }, 120_000);
  afterAll(async () => {
    await db?.close();
    await su?.end();
    await kernel?.stop();
  });

  const entry = (resource: string) => ({ tenantId: TENANT, principal: 't', action: 'test.Claim', resource, outcome: 'OK' as const, traceId: 'trace' });
  const hash = (request: string) => createHash('sha256').update(request).digest();
  /** A call with `key` for `request`; answers `response` (by default the request). */
  const call = (key: string, request: string, execute: (tx: TenantTransaction) => Promise<string | void>): Mutation<string> => ({
    tenantId: TENANT,
    method: METHOD,
    idempotencyKey: key,
    requestHash: hash(request),
    retentionHours: 1,
    decode: (bytes) => bytes.toString(),
    execute: async (tx) => {
      const response = (await execute(tx)) ?? request;
      return { response, responseBytes: Buffer.from(response), audit: [entry(`${key}:${request}`)] };
    },
  });
  const insert = (v: string) => (tx: TenantTransaction) => tx.query('INSERT INTO claim_probe (v) VALUES ($1)', [v]).then(() => undefined);
  /** The rows written so far — once every group of the tenant before this one has finished (a refusal is answered before its group commits). */
  const probe = async () => (await committer.submit(call(`settle-${Math.random()}`, 'settle', async () => undefined)), await su.query<{ v: string }>('SELECT v FROM claim_probe ORDER BY v')).rows.map((r) => r.v);
  const failure = (promise: Promise<unknown>) => promise.then(() => 'OK', (error: unknown) => (error instanceof KernelError ? `${Status[error.code]} ${error.reason}` : String(error)));

  /** Submits `calls` as ONE group: a filler call holds the tenant's running group until all are queued. */
  async function oneGroup<T>(calls: () => T): Promise<T> {
    await su.query('SELECT pg_advisory_lock(4242)');
    const filler = committer.submit(call('filler-' + Math.random(), 'filler', (tx) => tx.query('SELECT pg_advisory_xact_lock(4242)').then(() => undefined)));
    await new Promise((r) => setTimeout(r, 100)); // the filler's group is waiting on the lock
    const submitted = calls();
    await su.query('SELECT pg_advisory_unlock(4242)');
    await filler;
    return submitted;
  }

  test('a group of one call sends two messages: the claim with its first statement, then the records with COMMIT', async () => {
    messages.length = 0;
    await expect(committer.submit(call('k-two', 'two', insert('two')))).resolves.toEqual({ response: 'two', replayed: false });
    expect(messages).toHaveLength(2);
    const [opening, closing] = messages;
    expect(opening.indexOf('BEGIN')).toBeLessThan(opening.indexOf('pg_try_advisory_xact_lock'));
    expect(opening.indexOf('pg_try_advisory_xact_lock')).toBeLessThan(opening.indexOf('SAVEPOINT call'));
    expect(opening.indexOf('SAVEPOINT call')).toBeLessThan(opening.indexOf('INSERT INTO claim_probe'));
    expect(closing).toMatch(/kernel_idempotency_store[\s\S]*INSERT INTO kernel_audit_event[\s\S]*COMMIT$/);
  });

  test('a replay runs speculatively and is rolled back: the stored response is answered, its new write is gone', async () => {
    await committer.submit(call('k-replay', 'replay', insert('replay-1')));
    let ran = false;
    const again = await committer.submit(
      call('k-replay', 'replay', async (tx) => {
        ran = true;
        await insert('replay-2')(tx);
        return 'a different answer';
      }),
    );
    expect(again).toEqual({ response: 'replay', replayed: true });
    expect(ran).toBe(true); // it did run, with the claim in flight …
    expect(await probe()).toContain('replay-1');
    expect(await probe()).not.toContain('replay-2'); // … and left nothing
  });

  test('a key held by another node: IDEMPOTENCY_KEY_IN_USE, and the speculative write is gone', async () => {
    await su.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [idempotencyLockKey(TENANT, METHOD, 'k-held')]);
    try {
      expect(await failure(committer.submit(call('k-held', 'held', insert('held'))))).toBe('ABORTED IDEMPOTENCY_KEY_IN_USE');
    } finally {
      await su.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [idempotencyLockKey(TENANT, METHOD, 'k-held')]);
    }
    expect(await probe()).not.toContain('held');
  });

  test('a refused first call of a group is rolled back before the next call runs; refused calls after it never run', async () => {
    await committer.submit(call('k-first', 'first', insert('first-1')));
    await committer.submit(call('k-other', 'other', insert('other-1')));
    let reusedRan = false;
    const [replay, fresh, reused] = await oneGroup(() => [
      committer.submit(call('k-first', 'first', insert('first-2'))), // a replay, first in the group: speculative
      committer.submit(
        call('k-fresh', 'fresh', async (tx) => {
          const [{ n }] = await tx.query<{ n: number }>("SELECT count(*)::int AS n FROM claim_probe WHERE v = 'first-2'");
          await insert('fresh')(tx);
          return `saw ${n}`;
        }),
      ),
      committer.submit(
        call('k-other', 'another request', async (tx) => {
          reusedRan = true;
          await insert('reused')(tx);
        }),
      ),
    ]);
    await expect(replay).resolves.toEqual({ response: 'first', replayed: true });
    await expect(fresh).resolves.toEqual({ response: 'saw 0', replayed: false });
    expect(await failure(reused)).toBe('INVALID_ARGUMENT IDEMPOTENCY_KEY_REUSED');
    expect(reusedRan).toBe(false);
    const rows = await probe();
    expect(rows).toEqual(expect.arrayContaining(['first-1', 'fresh']));
    expect(rows).not.toContain('first-2');
    expect(rows).not.toContain('reused');
  });

  test("the first call's statement fails in the message that carried the claim: it alone fails, the claim is asked again", async () => {
    await committer.submit(call('k-again', 'again', insert('again-1')));
    const [failing, replay, fresh] = await oneGroup(() => [
      committer.submit(call('k-dup', 'dup', insert('again-1'))), // a duplicate primary key
      committer.submit(call('k-again', 'again', insert('again-2'))),
      committer.submit(call('k-after', 'after', insert('after'))),
    ]);
    expect(await failure(failing)).not.toBe('OK');
    await expect(replay).resolves.toEqual({ response: 'again', replayed: true });
    await expect(fresh).resolves.toEqual({ response: 'after', replayed: false });
    const rows = await probe();
    expect(rows).toContain('after');
    expect(rows).not.toContain('again-2');
    // The failed call stored no response: the same key runs afresh.
    await expect(committer.submit(call('k-dup', 'dup', insert('dup')))).resolves.toEqual({ response: 'dup', replayed: false });
  });

  test('a replay whose batched statement changed something: the group re-runs without batching, and the replay consumes nothing', async () => {
    const counter: StatementBatcher<null, string> = {
      name: 'test counter',
      key: () => 'counter',
      run: async (tx, asks) => {
        const [{ n }] = await tx.query<{ n: string }>('UPDATE claim_counter SET n = n + $1 RETURNING n::text', [asks.length]);
        return asks.map((_, i) => String(Number(n) - asks.length + 1 + i));
      },
    };
    const draw = (key: string) => call(key, key, (tx) => tx.batch(counter, null));
    const first = await committer.submit(draw('k-draw-1'));
    const [replay, a, b] = await oneGroup(() => [committer.submit(draw('k-draw-1')), committer.submit(draw('k-draw-2')), committer.submit(draw('k-draw-3'))]);
    expect(await replay).toEqual({ response: first.response, replayed: true });
    const drawn = [(await a).response, (await b).response].map(Number).sort((x, y) => x - y);
    expect(drawn).toEqual([Number(first.response) + 1, Number(first.response) + 2]);
    const [{ n }] = (await su.query<{ n: string }>('SELECT n::text FROM claim_counter')).rows;
    expect(Number(n)).toBe(Number(first.response) + 2);
  });
});
