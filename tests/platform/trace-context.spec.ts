import { continueTrace, formatTraceparent, validBaggage } from '../../services/platform/trace-context';

/**
 * The W3C trace-context test suite (github.com/w3c/trace-context, test/test.py, levels 1 and 2,
 * strict level 2), ported case by case: each row is the headers the harness sends and what the
 * traceparent / tracestate the kernel sends on (formatTraceparent of continueTrace) must be.
 * The suite's header-name casing cases are the transport's (gRPC metadata keys are lower case).
 */
const TRACE = '12345678901234567890123456789012';
const PARENT = '1234567890123456';
const VALID = `00-${TRACE}-${PARENT}-00`;

type Headers = Array<[name: 'traceparent' | 'tracestate', value: string]>;

function propagate(headers: Headers) {
  const values = (name: string) => headers.filter(([n]) => n === name).map(([, v]) => v);
  const trace = continueTrace(values('traceparent'), values('tracestate'));
  const sent = formatTraceparent(trace);
  const [version, traceId, parentId, flags] = sent.split('-');
  return { trace, version, traceId, parentId, flags, tracestate: parseTracestate(trace.traceState) };
}

function parseTracestate(value: string | undefined): Map<string, string> {
  const members = new Map<string, string>();
  for (const member of value ? value.split(',') : []) {
    const eq = member.indexOf('=');
    members.set(member.slice(0, eq), member.slice(eq + 1));
  }
  return members;
}

const SENT_FORMAT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

describe('W3C trace context: traceparent (test_traceparent_*)', () => {
  const restarts: Array<[string, Headers]> = [
    ['duplicated traceparent', [['traceparent', `00-${TRACE.slice(0, -1)}1-${PARENT}-01`], ['traceparent', `00-${TRACE}-${PARENT}-01`]]],
    ['version 00 with a trailing character', [['traceparent', `00-${TRACE}-${PARENT}-01.`]]],
    ['version 00 with extra fields', [['traceparent', `00-${TRACE}-${PARENT}-01-what-the-future-will-be-like`]]],
    ['future version with extra fields not after a dash', [['traceparent', `cc-${TRACE}-${PARENT}-01.what-the-future-will-be-like`]]],
    ['version ff', [['traceparent', `ff-${TRACE}-${PARENT}-01`]]],
    ['version with an illegal character (.0)', [['traceparent', `.0-${TRACE}-${PARENT}-01`]]],
    ['version with an illegal character (0.)', [['traceparent', `0.-${TRACE}-${PARENT}-01`]]],
    ['version too long (3)', [['traceparent', `000-${TRACE}-${PARENT}-01`]]],
    ['version too long (4)', [['traceparent', `0000-${TRACE}-${PARENT}-01`]]],
    ['version too short', [['traceparent', `0-${TRACE}-${PARENT}-01`]]],
    ['trace id all zero', [['traceparent', `00-${'0'.repeat(32)}-${PARENT}-01`]]],
    ['trace id with an illegal character (first)', [['traceparent', `00-.${TRACE.slice(1)}-${PARENT}-01`]]],
    ['trace id with an illegal character (last)', [['traceparent', `00-${TRACE.slice(0, -1)}.-${PARENT}-01`]]],
    ['trace id too long', [['traceparent', `00-${TRACE}3-${PARENT}-01`]]],
    ['trace id too short', [['traceparent', `00-${TRACE.slice(0, -1)}-${PARENT}-01`]]],
    ['trace id in upper case', [['traceparent', `00-${'ABCDEF'.padEnd(32, '1')}-${PARENT}-01`]]],
    ['parent id all zero', [['traceparent', `00-${TRACE}-${'0'.repeat(16)}-01`]]],
    ['parent id with an illegal character (first)', [['traceparent', `00-${TRACE}-.${PARENT.slice(1)}-01`]]],
    ['parent id with an illegal character (last)', [['traceparent', `00-${TRACE}-${PARENT.slice(0, -1)}.-01`]]],
    ['parent id too long', [['traceparent', `00-${TRACE}-${PARENT}7-01`]]],
    ['parent id too short', [['traceparent', `00-${TRACE}-${PARENT.slice(0, -1)}-01`]]],
    ['trace flags with an illegal character (.0)', [['traceparent', `00-${TRACE}-${PARENT}-.0`]]],
    ['trace flags with an illegal character (0.)', [['traceparent', `00-${TRACE}-${PARENT}-0.`]]],
    ['trace flags too long', [['traceparent', `00-${TRACE}-${PARENT}-001`]]],
    ['trace flags too short', [['traceparent', `00-${TRACE}-${PARENT}-1`]]],
    ['empty traceparent', [['traceparent', '']]],
  ];

  it.each(restarts)('%s ⇒ a new trace (never a failed call)', (_name, headers) => {
    const sent = propagate([...headers, ['tracestate', 'foo=1']]);
    expect(sent.trace.restarted).toBe(true);
    expect(sent.traceId).not.toBe(TRACE);
    expect(sent.traceId).not.toBe('0'.repeat(32));
    expect(`${sent.version}-${sent.traceId}-${sent.parentId}-${sent.flags}`).toMatch(SENT_FORMAT);
    // A restarted trace inherits no tracestate.
    expect(sent.tracestate.size).toBe(0);
  });

  const continues: Array<[string, string]> = [
    ['valid version 00', `00-${TRACE}-${PARENT}-01`],
    ['future version cc', `cc-${TRACE}-${PARENT}-01`],
    ['future version cc with extra fields after a dash', `cc-${TRACE}-${PARENT}-01-what-the-future-will-be-like`],
    ['leading space', ` 00-${TRACE}-${PARENT}-01`],
    ['leading tab', `\t00-${TRACE}-${PARENT}-01`],
    ['trailing space', `00-${TRACE}-${PARENT}-01 `],
    ['trailing tab', `00-${TRACE}-${PARENT}-01\t`],
    ['tab and space around', `\t 00-${TRACE}-${PARENT}-01 \t`],
  ];

  it.each(continues)('%s ⇒ the same trace, a new parent id, version 00 sent on', (_name, header) => {
    const sent = propagate([['traceparent', header]]);
    expect(sent.trace.restarted).toBe(false);
    expect(sent.traceId).toBe(TRACE);
    expect(sent.parentId).not.toBe(PARENT);
    expect(sent.version).toBe('00');
    expect(sent.flags).toBe('01');
  });

  it('no traceparent and no tracestate ⇒ a valid new traceparent', () => {
    const sent = propagate([]);
    expect(`${sent.version}-${sent.traceId}-${sent.parentId}-${sent.flags}`).toMatch(SENT_FORMAT);
    expect(sent.trace.restarted).toBe(true);
  });

  it('every call continuing one trace gets its own parent id; an invalid one gets new trace ids (AdvancedTest)', () => {
    const kept = Array.from({ length: 3 }, () => propagate([['traceparent', `00-${TRACE}-${PARENT}-01`]]));
    expect(new Set(kept.map((s) => s.traceId))).toEqual(new Set([TRACE]));
    expect(new Set(kept.map((s) => s.parentId)).size).toBe(3);
    const restarted = Array.from({ length: 3 }, () => propagate([['traceparent', `00-${'0'.repeat(32)}-${PARENT}-01`]]));
    expect(restarted.some((s) => s.traceId === '0'.repeat(32))).toBe(false);
    expect(new Set(restarted.map((s) => s.parentId)).size).toBe(3);
  });

  it.each([
    ['00', '00'],
    ['01', '01'],
    ['02 (level 2 random flag)', '02'],
    ['03', '03'],
  ])('trace flags %s are propagated as received', (_name, flags) => {
    const sent = propagate([['traceparent', `00-${TRACE}-${PARENT}-${flags}`]]);
    expect(sent.flags).toBe(flags);
    expect(sent.trace.sampled).toBe((parseInt(flags, 16) & 1) === 1);
  });
});

describe('W3C trace context: tracestate (test_tracestate_*)', () => {
  const withParent = (...values: string[]): Headers => [['traceparent', VALID], ...values.map((v): ['tracestate', string] => ['tracestate', v])];

  it('tracestate without a traceparent is not inherited (a new trace starts)', () => {
    expect(propagate([['tracestate', 'foo=1']]).tracestate.size).toBe(0);
    expect(propagate([['tracestate', 'foo=1,bar=2']]).tracestate.size).toBe(0);
  });

  it('tracestate with a traceparent is inherited', () => {
    const sent = propagate(withParent('foo=1,bar=2'));
    expect(sent.traceId).toBe(TRACE);
    expect(Object.fromEntries(sent.tracestate)).toEqual({ foo: '1', bar: '2' });
  });

  it.each([
    ['an empty header alone', [''], {}],
    ['an empty header after a member', ['foo=1', ''], { foo: '1' }],
    ['an empty header before a member', ['', 'foo=1'], { foo: '1' }],
  ])('%s: discarded, the trace kept', (_name, values, expected) => {
    const sent = propagate(withParent(...values));
    expect(sent.traceId).toBe(TRACE);
    expect(Object.fromEntries(sent.tracestate)).toEqual(expected);
    expect(sent.trace.traceState).not.toBe('');
  });

  it('several headers with different keys are combined in order', () => {
    const sent = propagate(withParent('foo=1,bar=2', 'rojo=1,congo=2', 'baz=3'));
    expect(sent.trace.traceState).toBe('foo=1,bar=2,rojo=1,congo=2,baz=3');
  });

  it.each([
    ['foo=1,foo=1 (one header)', ['foo=1,foo=1'], '1'],
    ['foo=1,foo=2 (one header)', ['foo=1,foo=2'], '1'],
    ['foo=1 / foo=1 (two headers)', ['foo=1', 'foo=1'], '1'],
    ['foo=1 / foo=2 (two headers)', ['foo=1', 'foo=2'], '1'],
  ])('duplicated keys %s: the trace kept, one foo kept', (_name, values, value) => {
    const sent = propagate(withParent(...values));
    expect(sent.traceId).toBe(TRACE);
    expect(sent.tracestate.get('foo')).toBe(value);
    expect(sent.trace.traceState!.match(/foo=/g)).toHaveLength(1);
  });

  it('every allowed character in keys (with and without a vendor) and values', () => {
    const keyWithoutVendor = 'abcdefghijklmnopqrstuvwxyz0123456789_-*/';
    const keyWithVendor = `${keyWithoutVendor}@a-z0-9_-*/`;
    const range = (from: number, to: number) => String.fromCharCode(...Array.from({ length: to - from + 1 }, (_, i) => from + i));
    const value = range(0x20, 0x2b) + range(0x2d, 0x3c) + range(0x3e, 0x7e);
    expect(propagate(withParent(`${keyWithoutVendor}=${value}`)).tracestate.get(keyWithoutVendor)).toBe(value);
    expect(propagate(withParent(`${keyWithVendor}=${value}`)).tracestate.get(keyWithVendor)).toBe(value);
  });

  it.each([
    ['spaces and tabs around commas', 'foo=1 \t , \t bar=2, \t baz=3', { foo: '1', bar: '2', baz: '3' }],
    ['tabs and spaces around commas', 'foo=1\t \t,\t \tbar=2,\t \tbaz=3', { foo: '1', bar: '2', baz: '3' }],
    ['a leading space', ' foo=1', { foo: '1' }],
    ['a leading tab', '\tfoo=1', { foo: '1' }],
    ['a trailing space', 'foo=1 ', { foo: '1' }],
    ['a trailing tab', 'foo=1\t', { foo: '1' }],
    ['tab and space around', '\t foo=1 \t', { foo: '1' }],
  ])('optional white space: %s', (_name, value, expected) => {
    const sent = propagate(withParent(value));
    expect(sent.traceId).toBe(TRACE);
    expect(Object.fromEntries(sent.tracestate)).toEqual(expected);
  });

  it.each([
    ['a space in the key', 'foo =1'],
    ['an upper-case key', 'FOO=1'],
    ['a dot in the key', 'foo.bar=1'],
    ['a key starting with @', '@foo=1,bar=2'],
    ['a value containing =', 'foo=bar=baz'],
    ['an empty value', 'foo=,bar=3'],
    ['a key of 257 characters', 'z'.repeat(257) + '=1'],
  ])('%s ⇒ the whole tracestate dropped, the trace kept', (_name, value) => {
    const sent = propagate(withParent('foo=1', value));
    expect(sent.traceId).toBe(TRACE);
    expect(sent.tracestate.size).toBe(0);
  });

  it.each([
    ['foo@=1,bar=2', { 'foo@': '1', bar: '2' }],
    ['foo@@bar=1,bar=2', { 'foo@@bar': '1', bar: '2' }],
    ['foo@bar@baz=1,bar=2', { 'foo@bar@baz': '1', bar: '2' }],
  ])('vendor keys that follow the key grammar are inherited: %s', (value, expected) => {
    expect(Object.fromEntries(propagate(withParent(value)).tracestate)).toEqual(expected);
  });

  it.each([
    ['256 characters', 'z'.repeat(256)],
    ['241 + @ + 14', `${'t'.repeat(241)}@${'v'.repeat(14)}`],
    ['242 + @v', `${'t'.repeat(242)}@v`],
    ['t@ + 15', `t@${'v'.repeat(15)}`],
  ])('a key of %s is inherited with the others', (_name, key) => {
    const sent = propagate(withParent('foo=1', `${key}=1`));
    expect(sent.tracestate.get('foo')).toBe('1');
    expect(sent.tracestate.get(key)).toBe('1');
  });

  it('32 members across headers are inherited; 33 drop the tracestate', () => {
    const members = (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, i) => String(from + i).padStart(2, '0')).map((n) => `bar${n}=${n}`).join(',');
    const kept = propagate(withParent(members(1, 10), members(11, 20), members(21, 30), members(31, 32)));
    expect(kept.tracestate.get('bar01')).toBe('01');
    expect(kept.tracestate.size).toBe(32);
    const dropped = propagate(withParent(members(1, 10), members(11, 20), members(21, 30), members(31, 33)));
    expect(dropped.traceId).toBe(TRACE);
    expect(dropped.tracestate.size).toBe(0);
  });
});

describe('W3C baggage: members and limits', () => {
  it('keeps valid members with their properties, drops malformed ones', () => {
    expect(validBaggage(['userId=alice, serverNode=DF%2028 ;prop1;prop2=1', 'bad member', '=novalue', 'k=v'])).toBe('userId=alice,serverNode=DF%2028;prop1;prop2=1,k=v');
  });

  it('drops a member whose value is not valid percent-encoding or has forbidden characters', () => {
    expect(validBaggage(['a=%ZZ,b=1,c=x"y,d=x\\y'])).toBe('b=1');
  });

  it('keeps at most 64 members', () => {
    const many = Array.from({ length: 80 }, (_, i) => `k${i}=v`).join(',');
    const kept = validBaggage([many])!.split(',');
    expect(kept).toHaveLength(64);
    expect(kept[63]).toBe('k63=v');
  });

  it('keeps at most 8192 bytes: members beyond the limit are dropped, never the call', () => {
    const big = Array.from({ length: 3 }, (_, i) => `k${i}=${'x'.repeat(3000)}`).join(',');
    const kept = validBaggage([big])!;
    expect(Buffer.byteLength(kept)).toBeLessThanOrEqual(8192);
    expect(kept.split(',')).toHaveLength(2);
  });

  it('none left ⇒ undefined', () => {
    expect(validBaggage([])).toBeUndefined();
    expect(validBaggage([' , ,'])).toBeUndefined();
  });

  it('is carried with the trace (restarted or continued)', () => {
    expect(continueTrace(`00-${TRACE}-${PARENT}-01`, undefined, 'a=1').baggage).toBe('a=1');
    expect(continueTrace(undefined, undefined, ['a=1', 'b=2']).baggage).toBe('a=1,b=2');
  });
});
