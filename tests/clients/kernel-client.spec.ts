import { Metadata, Status } from 'nice-grpc-common';
import {
  closeKernelClient,
  createKernelClients,
  createSequenceClient,
  isKernelError,
  KernelClientError,
  readResponseInfo,
  SequenceServiceDefinition,
  type KernelClientOptions,
  type SequenceClient,
} from '../../clients/src';
import { startFakeSequenceServer, type FakeSequenceServer } from './fake-sequence-server';

const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/;
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let server: FakeSequenceServer;
const openClients: SequenceClient[] = [];

beforeAll(async () => {
  server = await startFakeSequenceServer();
});
afterEach(() => {
  for (const client of openClients.splice(0)) closeKernelClient(client);
});
afterAll(async () => {
  await server.close();
});

function client(options: KernelClientOptions = {}): SequenceClient {
  const created = createSequenceClient({ address: server.address, token: 'test-token', tenantId: 'acme', ...options });
  openClients.push(created);
  return created;
}

/** Runs `call`, which must fail, and returns the error. */
async function failure(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (error) {
    return error;
  }
  throw new Error('the call succeeded');
}

describe('request metadata', () => {
  it('attaches authorization, tenant, traceparent and an idempotency key on a mutating method', async () => {
    await client().issueNumber({ seriesId: 'headers' });
    const [call] = server.callsTo('IssueNumber', 'headers');
    expect(call.metadata.get('authorization')).toBe('Bearer test-token');
    expect(call.metadata.get('x-tenant-id')).toBe('acme');
    expect(call.metadata.get('traceparent')).toMatch(TRACEPARENT);
    expect(call.metadata.get('idempotency-key')).toMatch(UUID_V4);
  });

  it('sends no idempotency key on a NO_SIDE_EFFECTS method', async () => {
    await client().getSeries({ seriesId: 'read-only' });
    const [call] = server.callsTo('GetSeries', 'read-only');
    expect(call.metadata.has('idempotency-key')).toBe(false);
    expect(call.metadata.get('traceparent')).toMatch(TRACEPARENT);
    expect(call.metadata.get('authorization')).toBe('Bearer test-token');
  });

  it('resolves a token function and lets a call override the tenant by option or metadata', async () => {
    const sequences = client({ token: async () => 'fresh-token' });
    await sequences.getSeries({ seriesId: 'tenant-option' }, { tenantId: 'globex' });
    await sequences.getSeries({ seriesId: 'tenant-metadata' }, { tenantId: 'globex', metadata: Metadata({ 'x-tenant-id': 'initech' }) });
    expect(server.callsTo('GetSeries', 'tenant-option')[0].metadata.get('authorization')).toBe('Bearer fresh-token');
    expect(server.callsTo('GetSeries', 'tenant-option')[0].metadata.get('x-tenant-id')).toBe('globex');
    expect(server.callsTo('GetSeries', 'tenant-metadata')[0].metadata.get('x-tenant-id')).toBe('initech');
  });

  it('starts a fresh trace per logical call unless the caller passes a traceparent', async () => {
    const sequences = client();
    await sequences.getSeries({ seriesId: 'trace-a' });
    await sequences.getSeries({ seriesId: 'trace-b' });
    const callerTraceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await sequences.getSeries({ seriesId: 'trace-c' }, { metadata: Metadata({ traceparent: callerTraceparent }) });
    const traceIdOf = (seriesId: string) => server.callsTo('GetSeries', seriesId)[0].metadata.get('traceparent')?.split('-')[1];
    expect(traceIdOf('trace-a')).not.toBe(traceIdOf('trace-b'));
    expect(server.callsTo('GetSeries', 'trace-c')[0].metadata.get('traceparent')).toBe(callerTraceparent);
  });

  it('keeps a caller-provided idempotency key (metadata or call option)', async () => {
    const sequences = client();
    await sequences.issueNumber({ seriesId: 'key-metadata' }, { metadata: Metadata({ 'idempotency-key': 'caller-key-1' }) });
    await sequences.issueNumber({ seriesId: 'key-option' }, { idempotencyKey: 'caller-key-2' });
    expect(server.callsTo('IssueNumber', 'key-metadata')[0].metadata.get('idempotency-key')).toBe('caller-key-1');
    expect(server.callsTo('IssueNumber', 'key-option')[0].metadata.get('idempotency-key')).toBe('caller-key-2');
  });
});

describe('retries', () => {
  it('retries ABORTED + RetryInfo with the same idempotency key and trace until it succeeds', async () => {
    const trailers: Metadata[] = [];
    const response = await client().issueNumber({ seriesId: 'contended' }, { onTrailer: (t) => trailers.push(t) });

    expect(response.number?.value).toBe(7);
    const attempts = server.callsTo('IssueNumber', 'contended');
    expect(attempts).toHaveLength(3);
    const keys = new Set(attempts.map((a) => a.metadata.get('idempotency-key')));
    expect(keys.size).toBe(1);
    expect([...keys][0]).toMatch(UUID_V4);
    expect(new Set(attempts.map((a) => a.metadata.get('traceparent'))).size).toBe(1);
    // onTrailer reports only the final attempt's trailer.
    expect(trailers).toHaveLength(1);
    expect(readResponseInfo(trailers[0]).traceId).toBe(attempts[0].metadata.get('traceparent')?.split('-')[1]);
  });

  it('exposes the replay marker of a repeated idempotency key through onTrailer', async () => {
    const sequences = client();
    const infos: ReturnType<typeof readResponseInfo>[] = [];
    const onTrailer = (t: Metadata) => infos.push(readResponseInfo(t));
    await sequences.issueNumber({ seriesId: 'replay' }, { idempotencyKey: 'replay-key', onTrailer });
    await sequences.issueNumber({ seriesId: 'replay' }, { idempotencyKey: 'replay-key', onTrailer });
    expect(infos.map((i) => i.replayed)).toEqual([false, true]);
    expect(infos.every((i) => i.traceId !== undefined)).toBe(true);
  });

  it('retries UNAVAILABLE (no RetryInfo needed) with backoff and the same key', async () => {
    await client({ initialBackoffMs: 10 }).issueNumber({ seriesId: 'flaky' });
    const attempts = server.callsTo('IssueNumber', 'flaky');
    expect(attempts).toHaveLength(2);
    expect(attempts[0].metadata.get('idempotency-key')).toBe(attempts[1].metadata.get('idempotency-key'));
  });

  it('does not retry ABORTED without RetryInfo', async () => {
    const error = await failure(client().issueNumber({ seriesId: 'aborted-without-retry-info' }));
    expect(error).toBeInstanceOf(KernelClientError);
    expect((error as KernelClientError).code).toBe(Status.ABORTED);
    expect((error as KernelClientError).reason).toBe('CONCURRENT_UPDATE');
    expect((error as KernelClientError).retryDelayMs).toBeUndefined();
    expect(server.callsTo('IssueNumber', 'aborted-without-retry-info')).toHaveLength(1);
  });

  it('does not retry RESOURCE_EXHAUSTED without RetryInfo, and decodes QuotaFailure', async () => {
    const error = (await failure(client().issueNumber({ seriesId: 'exhausted' }))) as KernelClientError;
    expect(error.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(error.reason).toBe('QUOTA_EXCEEDED');
    expect(error.quotaViolations).toEqual([{ subject: 'tenant:acme', description: 'numbers per day' }]);
    expect(server.callsTo('IssueNumber', 'exhausted')).toHaveLength(1);
  });

  it('stops at maxAttempts and surfaces the last error with its RetryInfo', async () => {
    const error = (await failure(client({ maxAttempts: 2 }).issueNumber({ seriesId: 'always-contended:max' }))) as KernelClientError;
    expect(error.code).toBe(Status.ABORTED);
    expect(error.reason).toBe('IDEMPOTENCY_KEY_IN_USE');
    expect(error.retryDelayMs).toBe(100);
    expect(server.callsTo('IssueNumber', 'always-contended:max')).toHaveLength(2);
  });

  it('stops retrying before the deadline would pass', async () => {
    const startedAt = Date.now();
    const error = (await failure(
      client({ maxAttempts: 50 }).issueNumber({ seriesId: 'always-contended:deadline' }, { deadline: 300 }),
    )) as KernelClientError;
    const elapsedMs = Date.now() - startedAt;
    // The retry loop gives up with the server's answer instead of sleeping past the deadline.
    expect(isKernelError(error, 'IDEMPOTENCY_KEY_IN_USE')).toBe(true);
    expect(error.code).toBe(Status.ABORTED);
    expect(elapsedMs).toBeLessThan(300);
    // RetryInfo says 100 ms: attempts at ~0, ~100 and ~200 ms fit; one at ~300 ms would not.
    const attempts = server.callsTo('IssueNumber', 'always-contended:deadline');
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(attempts.length).toBeLessThanOrEqual(3);
    expect(new Set(attempts.map((a) => a.metadata.get('idempotency-key'))).size).toBe(1);
  });
});

describe('errors', () => {
  it('surfaces NOT_FOUND as a KernelClientError with code, reason, metadata and trace id', async () => {
    const error = await failure(client().getSeries({ seriesId: 'missing' }));
    expect(isKernelError(error, 'SERIES_NOT_FOUND')).toBe(true);
    const kernelError = error as KernelClientError;
    expect(kernelError.code).toBe(Status.NOT_FOUND);
    expect(kernelError.reason).toBe('SERIES_NOT_FOUND');
    expect(kernelError.metadata).toEqual({ series_id: 'missing', trace_id: 'from-error-info' });
    // The x-trace-id trailer wins over the ErrorInfo's trace_id.
    const sentTraceId = server.callsTo('GetSeries', 'missing')[0].metadata.get('traceparent')?.split('-')[1];
    expect(kernelError.traceId).toBe(sentTraceId);
    expect(kernelError.path).toBe('/axis.kernel.sequences.v1.SequenceService/GetSeries');
    expect(server.callsTo('GetSeries', 'missing')).toHaveLength(1);
  });

  it('decodes BadRequest field violations', async () => {
    const error = (await failure(client().issueNumber({ seriesId: 'invalid' }))) as KernelClientError;
    expect(error.code).toBe(Status.INVALID_ARGUMENT);
    expect(error.reason).toBe('FIELD_INVALID');
    expect(error.fieldViolations).toEqual([{ field: 'subject_ref', description: 'too long' }]);
  });

  it('decodes PreconditionFailure violations', async () => {
    const error = (await failure(client().issueNumber({ seriesId: 'precondition' }))) as KernelClientError;
    expect(error.code).toBe(Status.FAILED_PRECONDITION);
    expect(error.reason).toBe('NUMBER_ALREADY_VOIDED');
    expect(error.preconditionViolations).toEqual([{ type: 'NUMBER_ALREADY_VOIDED', subject: 'inv/2026/7', description: 'voided' }]);
  });

  it('ignores an ErrorInfo from another domain', async () => {
    const error = (await failure(client().issueNumber({ seriesId: 'foreign-domain' }))) as KernelClientError;
    expect(error.code).toBe(Status.NOT_FOUND);
    expect(error.reason).toBe('');
    expect(error.metadata).toEqual({});
  });

  it('fails with DEADLINE_EXCEEDED when the deadline passes during a call', async () => {
    const startedAt = Date.now();
    const error = (await failure(client().getSeries({ seriesId: 'slow' }, { deadline: 200 }))) as KernelClientError;
    expect(error).toBeInstanceOf(KernelClientError);
    expect(error.code).toBe(Status.DEADLINE_EXCEEDED);
    expect(error.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(Date.now() - startedAt).toBeLessThan(2_000);
  });

  it('applies the client default deadline when the call passes none', async () => {
    const error = (await failure(client({ deadlineMs: 150 }).getSeries({ seriesId: 'slow' }))) as KernelClientError;
    expect(error.code).toBe(Status.DEADLINE_EXCEEDED);
  });

  it("leaves the caller's own cancellation an AbortError", async () => {
    const controller = new AbortController();
    const call = client().getSeries({ seriesId: 'slow' }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    const error = await failure(call);
    expect(error).not.toBeInstanceOf(KernelClientError);
    expect((error as Error).name).toBe('AbortError');
  });

  it('reports an unreachable kernel as UNAVAILABLE after retrying', async () => {
    const unreachable = createSequenceClient({ address: '127.0.0.1:1', maxAttempts: 2, initialBackoffMs: 10, deadlineMs: 5_000 });
    openClients.push(unreachable);
    const error = (await failure(unreachable.getSeries({ seriesId: 'x' }))) as KernelClientError;
    expect(error.code).toBe(Status.UNAVAILABLE);
    expect(error.reason).toBe('');
    expect(error.traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('wraps a failing token source as UNAUTHENTICATED without calling the server', async () => {
    const before = server.calls.length;
    const error = (await failure(
      client({
        token: async () => {
          throw new Error('vault down');
        },
      }).getSeries({ seriesId: 'no-token' }),
    )) as KernelClientError;
    expect(error.code).toBe(Status.UNAUTHENTICATED);
    expect(error.cause).toBeInstanceOf(Error);
    expect(server.calls.length).toBe(before);
  });
});

describe('client sets', () => {
  it('creates typed clients of any service definition over one shared channel', async () => {
    const kernel = createKernelClients({ address: server.address, token: 'test-token', tenantId: 'acme' });
    try {
      const sequences = kernel.create(SequenceServiceDefinition);
      const response = await sequences.getSeries({ seriesId: 'shared' });
      expect(response.series?.seriesId).toBe('shared');
    } finally {
      kernel.close();
    }
  });
});
