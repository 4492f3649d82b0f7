import { setTimeout as sleep } from 'node:timers/promises';
import {
  ClientError,
  createServer,
  Metadata,
  ServerError,
  Status,
  type CallOptions,
  type ClientMiddleware,
  type MethodDescriptor,
  type Server,
} from 'nice-grpc';
import type { BatchServiceImplementation } from '../../gen/proto/axis/kernel/batch/v1/batch_service';
import {
  BatchServiceDefinition,
  closeKernelClient,
  composeKernelMiddleware,
  createBatchClient,
  isKernelError,
  KernelClientError,
  kernelMiddleware,
  kernelMiddlewareList,
  type KernelCallOptionsExt,
  type KernelMiddleware,
} from '../../clients/src';

/*
 * The client chain: the kernel's straight-line middleware built into ONE nice-grpc client
 * middleware. Most tests drive it the way nice-grpc's client does (createUnaryMethod and
 * createServerStreamingMethod: iterate the middleware's generator, whose `next` is nice-grpc's
 * own step); the last block goes through a real server.
 */

type Chain = ClientMiddleware<KernelCallOptionsExt>;

const method = (responseStream: boolean, requestStream = false): MethodDescriptor => ({
  path: '/axis.test.v1.TestService/Method',
  requestStream,
  responseStream,
  options: {},
});

/** Logs entering and leaving (with the error's name) and adds `x-<name>` to the metadata it forwards. */
function recorder(name: string, events: string[]): KernelMiddleware {
  return async (call, options) => {
    events.push(`${name} in`);
    const metadata = Metadata(options.metadata).set(`x-${name}`, 'seen');
    try {
      const result = await call.next(call.request, { ...options, metadata });
      events.push(`${name} out`);
      return result;
    } catch (error) {
      events.push(`${name} ${(error as Error).name}`);
      throw error;
    }
  };
}

/** A unary call as nice-grpc's createUnaryMethod runs it: the middleware's generator must return the response without yielding. */
async function unary(chain: Chain, request: unknown, options: CallOptions & KernelCallOptionsExt, step: (request: unknown, options: CallOptions) => Promise<unknown>) {
  const generator = chain(
    {
      method: method(false),
      requestStream: false,
      request,
      responseStream: false,
      async *next(request, options): AsyncGenerator<never, unknown, undefined> {
        return await step(request, options);
      },
    },
    options,
  );
  const result = await generator.next();
  expect(result.done).toBe(true);
  return result.value;
}

/** A server-streaming call as createServerStreamingMethod runs it: the caller iterates the middleware's generator. */
function serverStream(chain: Chain, step: (options: CallOptions) => AsyncGenerator<unknown, void, undefined>, options: CallOptions & KernelCallOptionsExt = {}) {
  return chain({ method: method(true), requestStream: false, request: { watch: true }, responseStream: true, next: (_request, options) => step(options) }, options);
}

/** What `promise` rejects with; should it resolve, `{ resolvedWith }`, which fails the assertions that follow. */
function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then((resolvedWith) => ({ resolvedWith }), (error: unknown) => error);
}

describe('unary calls', () => {
  it('run the list in order, first element outermost, each layer forwarding its options and request to the next', async () => {
    const events: string[] = [];
    const rewrite: KernelMiddleware = (call, options) => call.next({ ...(call.request as object), rewritten: true }, options);
    const chain = composeKernelMiddleware([recorder('a', events), rewrite, recorder('b', events), recorder('c', events)]);
    let seen: { request: unknown; options: CallOptions & KernelCallOptionsExt } | undefined;

    const response = await unary(chain, { id: 1 }, { tenantId: 'globex', metadata: Metadata({ caller: 'yes' }) }, async (request, options) => {
      events.push('rpc');
      seen = { request, options };
      return { answer: 42 };
    });

    expect(response).toEqual({ answer: 42 });
    expect(events).toEqual(['a in', 'b in', 'c in', 'rpc', 'c out', 'b out', 'a out']);
    expect(seen?.request).toEqual({ id: 1, rewritten: true });
    expect(seen?.options.tenantId).toBe('globex');
    expect(['caller', 'x-a', 'x-b', 'x-c'].map((key) => seen?.options.metadata?.get(key))).toEqual(['yes', 'seen', 'seen', 'seen']);
  });

  it('get the kernel metadata, deadline signal and final trailer from kernelMiddleware(options)', async () => {
    let sent: CallOptions | undefined;
    const trailers: Metadata[] = [];
    const response = await unary(kernelMiddleware({ token: 'test-token', tenantId: 'acme' }), { id: 1 }, { onTrailer: (t) => trailers.push(t) }, async (_request, options) => {
      sent = options;
      options.onTrailer?.(Metadata({ 'x-trace-id': 'abc' }));
      return { ok: true };
    });

    expect(response).toEqual({ ok: true });
    expect(sent?.metadata?.get('authorization')).toBe('Bearer test-token');
    expect(sent?.metadata?.get('x-tenant-id')).toBe('acme');
    expect(sent?.metadata?.get('traceparent')).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    expect(sent?.metadata?.get('idempotency-key')).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent?.signal).toBeInstanceOf(AbortSignal);
    expect(trailers.map((t) => t.get('x-trace-id'))).toEqual(['abc']);
  });

  it('carry an error back through every layer, normalized by the kernel list', async () => {
    const events: string[] = [];
    const chain = composeKernelMiddleware([recorder('outer', events), ...kernelMiddlewareList({ maxAttempts: 1 }), recorder('inner', events)]);
    const error = await rejection(
      unary(chain, {}, {}, async () => {
        events.push('rpc');
        throw new ClientError(method(false).path, Status.NOT_FOUND, 'no such thing');
      }),
    );

    expect(events).toEqual(['outer in', 'inner in', 'rpc', 'inner ClientError', 'outer KernelClientError']);
    expect(error).toBeInstanceOf(KernelClientError);
    expect((error as KernelClientError).code).toBe(Status.NOT_FOUND);
    expect((error as KernelClientError).path).toBe(method(false).path);
    expect((error as KernelClientError).traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('pass a client stream (the request iterable) to the RPC untouched and return its response', async () => {
    const requests = (async function* () {
      yield { n: 1 };
    })();
    let received: unknown;
    const generator = kernelMiddleware({})(
      {
        method: method(false, true),
        requestStream: true,
        request: requests,
        responseStream: false,
        async *next(request): AsyncGenerator<never, unknown, undefined> {
          received = request;
          return { total: 1 };
        },
      },
      {},
    );
    expect(await generator.next()).toEqual({ done: true, value: { total: 1 } });
    expect(received).toBe(requests);
  });
});

describe('server-streaming calls', () => {
  it("deliver the messages in order, one at a time, and end the chain after the stream's end", async () => {
    const events: string[] = [];
    const chain = composeKernelMiddleware([recorder('a', events), recorder('b', events)]);
    let produced = 0;
    let received = 0;
    let mostAhead = 0;
    const step = async function* (): AsyncGenerator<number, void, undefined> {
      for (let n = 1; n <= 5; n++) {
        produced = n;
        mostAhead = Math.max(mostAhead, produced - received);
        yield n;
      }
    };

    const messages: unknown[] = [];
    for await (const message of serverStream(chain, step)) {
      received++;
      messages.push(message);
      await sleep(5); // a slow caller: the RPC must not be read ahead of it
      expect(produced).toBe(received);
    }

    expect(messages).toEqual([1, 2, 3, 4, 5]);
    expect(mostAhead).toBeLessThanOrEqual(1);
    expect(events).toEqual(['a in', 'b in', 'b out', 'a out']);
  });

  it('deliver an error raised mid-stream after the messages before it, normalized through the kernel list', async () => {
    const events: string[] = [];
    const chain = composeKernelMiddleware([recorder('outer', events), ...kernelMiddlewareList({ token: 't' })]);
    const step = async function* (): AsyncGenerator<string, void, undefined> {
      yield 'first';
      yield 'second';
      throw new ClientError(method(true).path, Status.UNAVAILABLE, 'the kernel went away');
    };

    const messages: unknown[] = [];
    const error = await rejection(
      (async () => {
        for await (const message of serverStream(chain, step)) messages.push(message);
      })(),
    );

    expect(messages).toEqual(['first', 'second']);
    expect(error).toBeInstanceOf(KernelClientError);
    expect((error as KernelClientError).code).toBe(Status.UNAVAILABLE);
    expect((error as KernelClientError).traceId).toMatch(/^[0-9a-f]{32}$/);
    // Streaming calls get one attempt: an UNAVAILABLE stream is not replayed.
    expect(events).toEqual(['outer in', 'outer KernelClientError']);
  });

  it('close the RPC step with return() and unwind the chain when the caller stops iterating', async () => {
    const events: string[] = [];
    const chain = composeKernelMiddleware([recorder('outer', events), ...kernelMiddlewareList({}), recorder('inner', events)]);
    let produced = 0;
    let closed = false;
    let signal: AbortSignal | undefined;
    const step = async function* (options: CallOptions): AsyncGenerator<number, void, undefined> {
      signal = options.signal;
      try {
        for (;;) yield ++produced;
      } finally {
        closed = true;
      }
    };

    const messages: unknown[] = [];
    for await (const message of serverStream(chain, step)) {
      messages.push(message);
      if (messages.length === 2) break;
    }

    expect(messages).toEqual([1, 2]);
    expect(produced).toBe(2);
    expect(closed).toBe(true);
    // The chain unwound with an AbortError, which stays one (it never reaches the caller).
    expect(events).toEqual(['outer in', 'inner in', 'inner AbortError', 'outer AbortError']);
    // The deadline middleware's signal was not what ended the call.
    expect(signal?.aborted).toBe(false);
  });

  it('never start the RPC when the caller returns before asking for a message', async () => {
    const events: string[] = [];
    let started = false;
    const generator = serverStream(composeKernelMiddleware([recorder('a', events)]), async function* () {
      started = true;
      yield 1;
    });
    expect(await generator.return(undefined)).toEqual({ done: true, value: undefined });
    expect(started).toBe(false);
    expect(events).toEqual([]);
  });
});

describe('through a real server (WatchBatch)', () => {
  let server: Server;
  let address: string;
  const cancelled: string[] = [];

  beforeAll(async () => {
    const watchBatch: BatchServiceImplementation['watchBatch'] = async function* ({ batchId }, context) {
      try {
        for (let processedItems = 1; ; processedItems++) {
          if (batchId === 'fails' && processedItems === 3) throw new ServerError(Status.FAILED_PRECONDITION, 'batch gone');
          if (batchId === 'short' && processedItems === 4) return;
          yield { progress: { batchId, processedItems } };
          await sleep(10, undefined, { signal: context.signal });
        }
      } finally {
        if (context.signal.aborted) cancelled.push(batchId);
      }
    };
    // nice-grpc binds every method of the definition: the others answer UNIMPLEMENTED.
    const unimplemented = async () => {
      throw new ServerError(Status.UNIMPLEMENTED, 'not scripted');
    };
    const stubs = Object.fromEntries(Object.keys(BatchServiceDefinition.methods).map((name) => [name, unimplemented]));
    server = createServer();
    server.add(BatchServiceDefinition, { ...stubs, watchBatch } as BatchServiceImplementation);
    address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  });
  afterAll(async () => {
    await server.shutdown();
  });

  async function watch(batchId: string, stopAfter = Infinity): Promise<{ counts: number[]; error?: unknown }> {
    const client = createBatchClient({ address, token: 'test-token', tenantId: 'acme' });
    const counts: number[] = [];
    try {
      for await (const { progress } of client.watchBatch({ batchId })) {
        counts.push(progress!.processedItems);
        if (counts.length === stopAfter) break;
      }
      return { counts };
    } catch (error) {
      return { counts, error };
    } finally {
      closeKernelClient(client);
    }
  }

  it('streams every message to the end', async () => {
    expect(await watch('short')).toEqual({ counts: [1, 2, 3] });
  });

  it("surfaces the server's error after the messages sent before it", async () => {
    const { counts, error } = await watch('fails');
    expect(counts).toEqual([1, 2]);
    expect(isKernelError(error)).toBe(true);
    expect((error as KernelClientError).code).toBe(Status.FAILED_PRECONDITION);
  });

  it('cancels the call on the server when the caller stops iterating', async () => {
    expect(await watch('endless', 2)).toEqual({ counts: [1, 2] });
    for (let waited = 0; !cancelled.includes('endless') && waited < 2_000; waited += 10) await sleep(10);
    expect(cancelled).toContain('endless');
  });
});
