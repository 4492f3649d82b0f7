import path from 'node:path';
import * as fc from 'fast-check';
import { Status } from 'nice-grpc-common';
import { Client } from 'pg';
import { closeKernelClient, createBatchClient, isKernelError, type BatchClient } from '../../clients/src';
import { BatchState, type Batch } from '../../gen/proto/axis/kernel/batch/v1/batch';
import type { StartBatchRequest } from '../../gen/proto/axis/kernel/batch/v1/batch_service';
import { refusal } from '../support/refusal';
import { startTestKernel, type TestKernel } from '../support/test-kernel';
import { CREATE_EFFECT_TABLE } from './support/test-item-handlers';

const HANDLER_MODULE = path.resolve(__dirname, 'support/test-item-handlers.ts');

/** Bad input to every BatchService RPC: a precise status and reason, no crash, no change. */
describe('BatchService input validation', () => {
  let kernel: TestKernel;
  let client: BatchClient;
  let sql: Client;

  beforeAll(async () => {
    kernel = await startTestKernel({ env: { KERNEL_BATCH_HANDLER_MODULES: HANDLER_MODULE } });
    client = createBatchClient({ address: kernel.address, tenantId: 'acme', token: await kernel.token({ tenants: ['acme'] }) });
    sql = new Client({ connectionString: kernel.databaseUrl });
    await sql.connect();
    await sql.query(CREATE_EFFECT_TABLE);
  });

  afterAll(async () => {
    closeKernelClient(client);
    await sql?.end();
    await kernel?.stop();
  });

  const rows = async () => (await sql.query(`SELECT (SELECT count(*) FROM batch_run)::int AS runs, (SELECT count(*) FROM batch_item)::int AS items`)).rows[0];
  /** StartBatch's inputs, flat: the batch's settable fields and the items. */
  type StartFields = Partial<Pick<Batch, 'batchId' | 'itemType' | 'chunkSize' | 'skipLimit' | 'retryLimit'>> & Pick<Partial<StartBatchRequest>, 'items'>;
  const valid: StartFields = { batchId: 'b-1', itemType: 'test.record', items: { $case: 'range', value: { start: 0, count: 10 } } };
  /** A StartBatch request: `valid` with `overrides`, the batch's fields in `batch` (AIP-133). */
  const start = (overrides: StartFields = {}) => {
    const { items, ...batch } = { ...valid, ...overrides };
    return { batch, items };
  };
  const expectRefused = async (call: Promise<unknown>, code: Status, reason: string) => {
    const error = await refusal(call);
    expect([Status[error.code], error.reason]).toEqual([Status[code], reason]);
    return error;
  };

  test('StartBatch refuses malformed identities, types, chunk sizes, limits and item sets without writing anything', async () => {
    const before = await rows();
    const cases: Array<[StartFields, Status, string]> = [
      [{ batchId: '' }, Status.INVALID_ARGUMENT, 'FIELD_INVALID'],
      [{ batchId: 'has space' }, Status.INVALID_ARGUMENT, 'FIELD_INVALID'],
      [{ batchId: 'x'.repeat(129) }, Status.INVALID_ARGUMENT, 'FIELD_INVALID'],
      [{ itemType: '' }, Status.INVALID_ARGUMENT, 'FIELD_INVALID'],
      [{ itemType: 'Upper.Case' }, Status.INVALID_ARGUMENT, 'FIELD_INVALID'],
      [{ itemType: 'no.such.handler' }, Status.FAILED_PRECONDITION, 'ITEM_HANDLER_UNKNOWN'],
      [{ chunkSize: -1 }, Status.INVALID_ARGUMENT, 'CHUNK_SIZE_INVALID'],
      [{ chunkSize: 10_001 }, Status.INVALID_ARGUMENT, 'CHUNK_SIZE_INVALID'],
      [{ chunkSize: 2_000_000_000 }, Status.INVALID_ARGUMENT, 'CHUNK_SIZE_INVALID'],
      [{ skipLimit: -1 }, Status.INVALID_ARGUMENT, 'FIELD_INVALID'],
      [{ retryLimit: 21 }, Status.INVALID_ARGUMENT, 'FIELD_INVALID'],
      [{ retryLimit: -5 }, Status.INVALID_ARGUMENT, 'FIELD_INVALID'],
      [{ items: undefined }, Status.INVALID_ARGUMENT, 'ITEMS_MISSING'],
      [{ items: { $case: 'inlineItems', value: { payloads: [] } } }, Status.INVALID_ARGUMENT, 'ITEMS_MISSING'],
      [{ items: { $case: 'range', value: { start: 0, count: 0 } } }, Status.INVALID_ARGUMENT, 'TOO_MANY_ITEMS'],
      [{ items: { $case: 'range', value: { start: 0, count: -3 } } }, Status.INVALID_ARGUMENT, 'TOO_MANY_ITEMS'],
      [{ items: { $case: 'range', value: { start: 0, count: 10_000_001 } } }, Status.INVALID_ARGUMENT, 'TOO_MANY_ITEMS'],
      [{ items: { $case: 'range', value: { start: Number.MAX_SAFE_INTEGER - 1, count: 10 } } }, Status.INVALID_ARGUMENT, 'FIELD_INVALID'],
      [{ items: { $case: 'inlineItems', value: { payloads: Array.from({ length: 10_001 }, (_, i) => String(i)) } } }, Status.INVALID_ARGUMENT, 'TOO_MANY_ITEMS'],
      [{ items: { $case: 'inlineItems', value: { payloads: ['x'.repeat(4097)] } } }, Status.INVALID_ARGUMENT, 'ITEMS_TOO_LARGE'],
      [{ items: { $case: 'inlineItems', value: { payloads: Array.from({ length: 300 }, () => 'y'.repeat(4000)) } } }, Status.INVALID_ARGUMENT, 'ITEMS_TOO_LARGE'],
      [{ items: { $case: 'inlineItems', value: { payloads: ['nul\u0000byte'] } } }, Status.INVALID_ARGUMENT, 'FIELD_INVALID'],
    ];
    for (const [override, code, reason] of cases) {
      await expectRefused(client.startBatch(start(override)), code, reason);
    }
    expect(await rows()).toEqual(before);
  });

  test('unknown batch ids answer NOT_FOUND on every RPC; a bad page token, poll interval or skip limit is INVALID_ARGUMENT', async () => {
    const before = await rows();
    for (const call of [
      client.getBatch({ batchId: 'nope' }),
      client.cancelBatch({ batchId: 'nope' }),
      client.resumeBatch({ batchId: 'nope' }),
      client.listBatchItemErrors({ batchId: 'nope' }),
      (async () => {
        for await (const _ of client.watchBatch({ batchId: 'nope' })) void _;
      })(),
    ]) {
      await expectRefused(call, Status.NOT_FOUND, 'BATCH_NOT_FOUND');
    }
    await expectRefused(client.getBatch({ batchId: '../etc' }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefused(client.listBatchItemErrors({ batchId: 'nope', pageToken: 'garbage' }), Status.INVALID_ARGUMENT, 'PAGE_TOKEN_INVALID');
    await expectRefused(client.listBatchItemErrors({ batchId: 'nope', pageSize: 1001 }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefused(
      (async () => {
        for await (const _ of client.watchBatch({ batchId: 'nope', pollInterval: { seconds: 0, nanos: 1 } })) void _;
      })(),
      Status.INVALID_ARGUMENT,
      'FIELD_INVALID',
    );
    await expectRefused(client.resumeBatch({ batchId: 'nope', skipLimit: -1 }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    expect(await rows()).toEqual(before);
  });

  test('random StartBatch, GetBatch, CancelBatch and ResumeBatch requests get OK or a precise refusal, never INTERNAL', async () => {
    const int32 = fc.oneof(fc.integer({ min: -5, max: 600 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }));
    const text = fc.oneof(fc.string({ maxLength: 140 }), fc.constantFrom('b-ok', 'test.record', 'test.noop', 'x'.repeat(129), '\u202e', '../x', 'a b'));
    const request = fc.record({
      batchId: text,
      itemType: fc.oneof(text, fc.constantFrom('test.record', 'test.noop')),
      items: fc.oneof(
        fc.constant(undefined),
        // Valid batches stay small (≤ 2,000 items): they run in the background while the fuzzer goes on.
        fc.record({ $case: fc.constant('range' as const), value: fc.record({ start: fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 }), count: fc.oneof(fc.integer({ min: -10, max: 2_000 }), fc.constantFrom(10_000_001, 2 ** 40)) }) }),
        fc.record({ $case: fc.constant('inlineItems' as const), value: fc.record({ payloads: fc.array(fc.string({ maxLength: 50 }), { maxLength: 20 }) }) }),
      ),
      chunkSize: int32,
      skipLimit: int32,
      retryLimit: int32,
    });
    const UPPER_SNAKE = /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/;
    const check = async (call: Promise<unknown>) => {
      try {
        await call;
      } catch (error) {
        if (!isKernelError(error)) throw error;
        expect([Status.INTERNAL, Status.UNKNOWN, Status.UNIMPLEMENTED]).not.toContain(error.code);
        expect(error.reason).toMatch(UPPER_SNAKE);
      }
    };
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const { items, ...batch } = r;
        await check(client.startBatch({ batch, items } as StartBatchRequest));
        await check(client.getBatch({ batchId: r.batchId }));
        await check(client.cancelBatch({ batchId: r.batchId }));
        await check(client.resumeBatch({ batchId: r.batchId, skipLimit: r.skipLimit }));
      }),
      { numRuns: Number(process.env.HOSTILE_RUNS ?? 60) },
    );
    expect(kernel.logs.entries().filter((e) => e.msg === 'unhandled error (masked as INTERNAL)')).toEqual([]);
    expect((await client.getBatch({ batchId: 'nope' }).catch((e) => e)).reason).toBe('BATCH_NOT_FOUND'); // still serving
  });

  test('state rules: a completed batch cannot be resumed or cancelled; another identity request conflicts; wrong tenant is refused', async () => {
    await client.startBatch(start({ batchId: 'done-1' }));
    let state = BatchState.BATCH_STATE_RUNNING;
    for await (const { progress } of client.watchBatch({ batchId: 'done-1', pollInterval: { seconds: 0, nanos: 50e6 } })) state = progress!.state;
    expect(state).toBe(BatchState.BATCH_STATE_SUCCEEDED);
    const before = await rows();
    await expectRefused(client.resumeBatch({ batchId: 'done-1' }), Status.FAILED_PRECONDITION, 'BATCH_COMPLETED');
    await expectRefused(client.cancelBatch({ batchId: 'done-1' }), Status.FAILED_PRECONDITION, 'BATCH_NOT_RUNNING');
    await expectRefused(client.startBatch(start({ batchId: 'done-1', skipLimit: 5 })), Status.ALREADY_EXISTS, 'BATCH_EXISTS');
    await expectRefused(client.getBatch({ batchId: 'done-1' }, { tenantId: 'someone-else' }), Status.PERMISSION_DENIED, 'TENANT_NOT_ALLOWED');
    const other = createBatchClient({ address: kernel.address, tenantId: 'other', token: await kernel.token({ tenants: ['other'] }) });
    try {
      await expectRefused(other.getBatch({ batchId: 'done-1' }), Status.NOT_FOUND, 'BATCH_NOT_FOUND');
      await expectRefused(other.cancelBatch({ batchId: 'done-1' }), Status.NOT_FOUND, 'BATCH_NOT_FOUND');
    } finally {
      closeKernelClient(other);
    }
    const readOnly = createBatchClient({ address: kernel.address, tenantId: 'acme', token: await kernel.token({ tenants: ['acme'], scope: 'batch:read' }) });
    try {
      await expectRefused(readOnly.startBatch(start({ batchId: 'nope-2' })), Status.PERMISSION_DENIED, 'SCOPE_MISSING');
    } finally {
      closeKernelClient(readOnly);
    }
    expect(await rows()).toEqual(before);
  });
});
