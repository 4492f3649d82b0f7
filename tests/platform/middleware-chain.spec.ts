import { Metadata, type CallContext, type ServerMiddlewareCall } from 'nice-grpc-common';
import { MiddlewareChain, type KernelMiddleware } from '../../services/platform/middleware/typed-chain';

/**
 * The chain runs straight-line middleware for every kind of call: a unary call as nested
 * promises, a streaming call through one handoff at the edge. These drive the built middleware
 * the way nice-grpc does (its handler is a generator; the writer pulls one message at a time).
 */
const context = (): CallContext => ({ metadata: Metadata(), peer: 'test', header: Metadata(), trailer: Metadata(), sendHeader: () => undefined, signal: new AbortController().signal });

function recorder(name: string, events: string[]): KernelMiddleware<Record<string, unknown>> {
  return async (call, ctx) => {
    events.push(`${name} before`);
    try {
      const result = await call.next(call.request, { ...ctx, [name]: true });
      events.push(`${name} after`);
      return result;
    } catch (error) {
      events.push(`${name} caught ${(error as Error).message}`);
      throw error;
    } finally {
      events.push(`${name} finally`);
    }
  };
}

const callOf = (responseStream: boolean, next: (request: unknown, ctx: CallContext) => AsyncGenerator<unknown, unknown, undefined>) =>
  ({ method: { path: '/t.S/M', requestStream: false, responseStream, options: {} }, requestStream: false, responseStream, request: { n: 1 }, next }) as unknown as ServerMiddlewareCall<unknown, unknown>;

describe('MiddlewareChain', () => {
  test('a unary call runs every middleware in order, each seeing what the ones before it added', async () => {
    const events: string[] = [];
    const chain = MiddlewareChain.start().use(recorder('a', events)).use(recorder('b', events)).build();
    let seen: Record<string, unknown> = {};
    const call = callOf(false, async function* (request, ctx) {
      seen = ctx as never;
      return { echoed: request };
    });
    const step = await chain(call, context() as never).next();
    expect(step).toEqual({ done: true, value: { echoed: { n: 1 } } });
    expect(seen).toMatchObject({ a: true, b: true });
    expect(events).toEqual(['a before', 'b before', 'b after', 'b finally', 'a after', 'a finally']);
  });

  test('a unary failure passes every catch on its way out', async () => {
    const events: string[] = [];
    const chain = MiddlewareChain.start().use(recorder('a', events)).use(recorder('b', events)).build();
    const call = callOf(false, async function* () {
      throw new Error('boom');
    });
    await expect(chain(call, context() as never).next()).rejects.toThrow('boom');
    expect(events).toEqual(['a before', 'b before', 'b caught boom', 'b finally', 'a caught boom', 'a finally']);
  });

  test('a stream passes its messages in order, one at a time, and the middleware close after its end', async () => {
    const events: string[] = [];
    const chain = MiddlewareChain.start().use(recorder('a', events)).build();
    let produced = 0;
    const call = callOf(true, async function* () {
      for (let i = 0; i < 5; i++) {
        produced++;
        yield i;
      }
    });
    const messages = chain(call, context() as never);
    const received: unknown[] = [];
    for (let step = await messages.next(); !step.done; step = await messages.next()) {
      received.push(step.value);
      // The handler is never more than one message ahead of the writer.
      expect(produced - received.length).toBeLessThanOrEqual(1);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(received).toEqual([0, 1, 2, 3, 4]);
    expect(events).toEqual(['a before', 'a after', 'a finally']);
  });

  test('a stream that fails after some messages delivers them, then the error the middleware saw', async () => {
    const events: string[] = [];
    const chain = MiddlewareChain.start().use(recorder('a', events)).build();
    const call = callOf(true, async function* () {
      yield 'first';
      throw new Error('broken stream');
    });
    const messages = chain(call, context() as never);
    expect(await messages.next()).toEqual({ done: false, value: 'first' });
    await expect(messages.next()).rejects.toThrow('broken stream');
    expect(events).toEqual(['a before', 'a caught broken stream', 'a finally']);
  });

  test('a stream the writer abandons (a cancelled call) stops its handler and unwinds the chain', async () => {
    const events: string[] = [];
    const chain = MiddlewareChain.start().use(recorder('a', events)).build();
    let handlerClosed = false;
    const call = callOf(true, async function* () {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        handlerClosed = true;
      }
    });
    const messages = chain(call, context() as never);
    expect((await messages.next()).value).toBe(0);
    expect((await messages.next()).value).toBe(1);
    await messages.return(undefined);
    expect(handlerClosed).toBe(true);
    expect(events[0]).toBe('a before');
    expect(events.slice(-1)).toEqual(['a finally']);
    expect(events.some((e) => e.startsWith('a caught'))).toBe(true);
  });

  test('a cancelled stream whose handler would wait forever for its next message still closes at once (nothing is read ahead)', async () => {
    const events: string[] = [];
    const chain = MiddlewareChain.start().use(recorder('a', events)).build();
    let handlerClosed = false;
    let askedForSecond = false;
    const call = callOf(true, async function* () {
      try {
        yield 'only';
        askedForSecond = true;
        await new Promise(() => undefined); // a watch with nothing more to say
      } finally {
        handlerClosed = true;
      }
    });
    const messages = chain(call, context() as never);
    expect((await messages.next()).value).toBe('only');
    await messages.return(undefined);
    expect(askedForSecond).toBe(false);
    expect(handlerClosed).toBe(true);
    expect(events.slice(-1)).toEqual(['a finally']);
  });
});
