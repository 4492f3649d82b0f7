import * as fc from 'fast-check';
import { canonicalJson, entryFromLeafText, leafText, type LogEntry } from '../../services/audit/log-entry';

/*
 * An audit leaf is the canonical JSON of its entry, and every exported log is verified against
 * it: the text must never change. Checked against an independent form (JSON.stringify with every
 * object's keys re-inserted in sorted order) and against fixed vectors.
 */

/**
 * The reference: the straightforward form (each object's defined members sorted with an explicit
 * code-unit comparator, joined), written out separately from the kernel's. (Rebuilding objects
 * and calling JSON.stringify would not do: integer-like keys always come first in a JS object.)
 */
function reference(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(reference).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const members = Object.entries(value)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, item]) => `${JSON.stringify(key)}:${reference(item)}`);
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value);
}

describe('canonical JSON of audit leaves', () => {
  const key = fc.string({ unit: fc.constantFrom('a', 'B', 'é', '😀', '_', '1', '"', '\\', '\u0001') , maxLength: 4 });
  const json = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.boolean(), fc.string(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer(), tie('array'), tie('object')),
    array: fc.array(tie('value'), { maxLength: 4 }),
    object: fc.dictionary(key, fc.oneof(tie('value'), fc.constant(undefined)), { maxKeys: 5 }),
  })).value;

  test('property: the same text as the straightforward sorted-members form', () => {
    fc.assert(fc.property(json, (value) => expect(canonicalJson(value)).toBe(reference(value))), { numRuns: 2000 });
  });

  test('fixed vectors: key order by UTF-16 code units, no whitespace, ECMAScript numbers', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'], A: { d: 1e21, c: -0.5 }, é: '', '😀': 1, 'z\uffff': 2, '9': 0, '10': 0, '': 0 })).toBe(
      '{"":0,"10":0,"9":0,"A":{"c":-0.5,"d":1e+21},"a":[true,null,"x"],"b":1,"z\uffff":2,"é":"","😀":1}',
    );
    expect(() => canonicalJson({ a: Number.NaN })).toThrow('non-finite');
  });

  test('a leaf reads back into its entry, and only its canonical text does', () => {
    const entry: LogEntry = {
      tenant: 't1',
      time: '2026-12-08T01:02:03.456789Z',
      principal: 'user:ana',
      action: 'axis.kernel.keymaster.v1.KeymasterService/Sign',
      resource: 'keys/k1',
      outcome: 'OK',
      traceId: '0af7651916cd43dd8448eb211c80319c',
      idempotencyKey: null,
      requestDigest: 'ab',
      detail: { version: 2, alias: 'k1' },
    };
    const text = leafText(entry);
    expect(text).toBe(
      '{"action":"axis.kernel.keymaster.v1.KeymasterService/Sign","detail":{"alias":"k1","version":2},"idempotency_key":null,"outcome":"OK","principal":"user:ana","request_digest":"ab","resource":"keys/k1","tenant":"t1","time":"2026-12-08T01:02:03.456789Z","trace_id":"0af7651916cd43dd8448eb211c80319c","v":1}',
    );
    expect(entryFromLeafText(text)).toEqual(entry);
    expect(() => entryFromLeafText(text.replace('"v":1', '"v" :1'))).toThrow();
  });
});
