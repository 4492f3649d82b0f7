import { Metadata as GrpcMetadata } from '@grpc/grpc-js';
import * as fc from 'fast-check';
import { Metadata } from 'nice-grpc-common';
import { GrpcMetadataView } from '../../services/platform/grpc-server';

/*
 * The kernel's server edge hands middleware and handlers a view over grpc-js's own Metadata
 * instead of nice-grpc's copy. Whatever a sequence of operations does, the view must read and
 * refuse exactly as nice-grpc's Metadata does (keys case-insensitive, text values of one key
 * read joined with ", ", binary `-bin` values kept apart, illegal keys and values refused).
 */
describe('GrpcMetadataView', () => {
  const key = fc.constantFrom('x-tenant-id', 'X-Tenant-Id', 'authorization', 'trace-bin', 'Trace-Bin', 'bad key', 'k');
  const text = fc.constantFrom('a', 'b, c', '', 'acme', ' ~', 'é');
  const bytes = fc.uint8Array({ maxLength: 3 });
  const op = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), key, value: fc.oneof(text, bytes, fc.array(fc.oneof(text, bytes), { maxLength: 3 })) }),
    fc.record({ kind: fc.constant('append' as const), key, value: fc.oneof(text, bytes) }),
    fc.record({ kind: fc.constant('delete' as const), key }),
  );
  const normal = (v: unknown) => (v instanceof Uint8Array ? `bytes:${Buffer.from(v).toString('hex')}` : v);
  const reads = (m: Metadata) =>
    ['x-tenant-id', 'authorization', 'trace-bin', 'k'].map((k) => ({ get: normal(m.get(k)), all: m.getAll(k).map(normal), has: m.has(k) }));
  const attempt = (fn: () => unknown) => {
    try {
      fn();
      return 'ok';
    } catch {
      return 'refused';
    }
  };

  test('property: after any sequence of operations it reads (and refuses) as nice-grpc Metadata does', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 8 }), (ops) => {
        const nice = Metadata();
        const view = new GrpcMetadataView(new GrpcMetadata());
        for (const o of ops) {
          const apply = (m: Metadata) => (o.kind === 'set' ? m.set(o.key, o.value as never) : o.kind === 'append' ? m.append(o.key, o.value as never) : m.delete(o.key));
          const before = reads(view);
          const expected = attempt(() => apply(nice));
          expect(attempt(() => apply(view))).toBe(expected);
          // A refused operation changes nothing in the view.
          if (expected === 'refused') expect(reads(view)).toEqual(before);
          if (expected === 'refused') return;
        }
        expect(reads(view)).toEqual(reads(nice));
        expect(new Map([...view].map(([k, v]) => [k, v.map(normal)]))).toEqual(new Map([...nice].map(([k, v]) => [k, v.map(normal)])));
      }),
      { numRuns: 1000 },
    );
  });

  test('reads several received values of a text key as one, joined; binary values apart', () => {
    const received = new GrpcMetadata();
    received.add('x-tenant-id', 'a');
    received.add('x-tenant-id', 'b');
    received.add('trace-bin', Buffer.from([1]));
    received.add('trace-bin', Buffer.from([2]));
    const view = new GrpcMetadataView(received);
    expect(view.getAll('X-Tenant-Id')).toEqual(['a, b']);
    expect(view.getAll('trace-bin').map((b) => [...(b as Uint8Array)])).toEqual([[1], [2]]);
  });
});
