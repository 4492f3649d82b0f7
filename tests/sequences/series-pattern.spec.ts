import * as fc from 'fast-check';
import { numberResource } from '../../services/sequences/number-ledger';
import {
  checkPatternFitsPolicy,
  isKnownTimeZone,
  isoDate,
  localDate,
  parseIsoDate,
  parsePattern,
  PatternError,
  periodOf,
  renderNumber,
  type PatternPart,
  type ResetPolicyName,
} from '../../services/sequences/series-pattern';

/*
 * Series patterns and periods (pure, no database): parse/render round trips against a renderer
 * written here, the local calendar date of an instant against UTC arithmetic for fixed-offset
 * zones, and the period a date falls in.
 */

const TOKENS: Record<Exclude<PatternPart['kind'], 'literal' | 'seq'>, string> = { year4: '{YYYY}', year2: '{YY}', month: '{MM}', day: '{DD}' };
const textOf = (part: PatternPart) => (part.kind === 'literal' ? part.text : part.kind === 'seq' ? (part.width === 1 ? '{SEQ}' : `{SEQ:${part.width}}`) : TOKENS[part.kind]);
/** Adjacent literals are one literal once parsed. */
const merged = (parts: PatternPart[]) =>
  parts.reduce<PatternPart[]>((out, p) => {
    const last = out[out.length - 1];
    if (p.kind === 'literal' && last?.kind === 'literal') out[out.length - 1] = { kind: 'literal', text: last.text + p.text };
    else out.push(p);
    return out;
  }, []);

const literalArb: fc.Arbitrary<PatternPart> = fc
  .string({ unit: fc.constantFrom(...'INV-/._ #xX0123456789äé€'.split('')), minLength: 1, maxLength: 8 })
  .map((text) => ({ kind: 'literal', text }));
const dateTokenArb: fc.Arbitrary<PatternPart> = fc.constantFrom<PatternPart>({ kind: 'year4' }, { kind: 'year2' }, { kind: 'month' }, { kind: 'day' });
const seqArb: fc.Arbitrary<PatternPart> = fc.integer({ min: 1, max: 18 }).map((width) => ({ kind: 'seq', width }));
/** Valid patterns: exactly one SEQ among literals and date tokens, at most 100 characters. */
const partsArb = fc
  .tuple(fc.array(fc.oneof(literalArb, dateTokenArb), { maxLength: 6 }), seqArb, fc.array(fc.oneof(literalArb, dateTokenArb), { maxLength: 6 }))
  .map(([before, seq, after]) => [...before, seq, ...after])
  .filter((parts) => parts.map(textOf).join('').length <= 100);
const dateArb = fc.record({ year: fc.integer({ min: 0, max: 9999 }), month: fc.integer({ min: 1, max: 12 }), day: fc.integer({ min: 1, max: 31 }) });

/** Rendering as documented, written independently of renderNumber. */
const expectedRendering = (parts: PatternPart[], value: number, d: { year: number; month: number; day: number }) =>
  parts
    .map((p) => {
      switch (p.kind) {
        case 'literal':
          return p.text;
        case 'year4':
          return String(d.year).padStart(4, '0');
        case 'year2':
          return String(d.year).slice(-2).padStart(2, '0');
        case 'month':
          return String(d.month).padStart(2, '0');
        case 'day':
          return String(d.day).padStart(2, '0');
        case 'seq':
          return String(value).padStart(p.width, '0');
      }
    })
    .join('');

describe('series patterns', () => {
  test('property: a pattern written from parts parses back to those parts and renders as documented', () => {
    fc.assert(
      fc.property(partsArb, fc.maxSafeNat(), dateArb, (parts, value, date) => {
        const pattern = parts.map(textOf).join('');
        const parsed = parsePattern(pattern);
        expect(parsed).toEqual(merged(parts));
        expect(renderNumber(parsed, value, date)).toBe(expectedRendering(parts, value, date));
      }),
    );
  });

  test('examples: widths, zero padding, two-digit years and wide values', () => {
    const parts = parsePattern('INV-{YYYY}/{YY}-{MM}-{DD}#{SEQ:5}');
    expect(renderNumber(parts, 42, { year: 2026, month: 3, day: 7 })).toBe('INV-2026/26-03-07#00042');
    expect(renderNumber(parts, 1234567, { year: 5, month: 12, day: 31 })).toBe('INV-0005/05-12-31#1234567');
    expect(renderNumber(parsePattern('{SEQ}'), 7, { year: 2000, month: 1, day: 1 })).toBe('7');
    expect(renderNumber(parsePattern('{SEQ:18}'), 1, { year: 2000, month: 1, day: 1 })).toBe('000000000000000001');
    expect(renderNumber(parsePattern('{YY}{SEQ:01}'), 3, { year: 2100, month: 1, day: 1 })).toBe('003');
    expect(parsePattern('x'.repeat(95) + '{SEQ}')).toHaveLength(2);
  });

  test('bad patterns are refused with a reason', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /1–100 characters/],
      ['x'.repeat(96) + '{SEQ}', /1–100 characters/],
      ['INV-{YYYY}', /exactly one \{SEQ\}/],
      ['{SEQ}{SEQ:2}', /exactly one \{SEQ\}/],
      ['{SEQ}}', /unbalanced brace/],
      ['{SEQ}{', /unbalanced brace/],
      ['a{b{SEQ}', /unbalanced brace/],
      ['{SEQ}\u0000', /control characters/],
      ['{SEQ}\u007f', /control characters/],
      ['{SEQ}\n', /control characters/],
      ['{SEQ:0}', /unknown token \{SEQ:0\}/],
      ['{SEQ:19}', /unknown token/],
      ['{SEQ:123}', /unknown token/],
      ['{SEQ:}', /unknown token/],
      ['{SEQ:-1}', /unknown token/],
      ['{SEQ} {yyyy}', /unknown token \{yyyy\}/],
      ['{SEQ} {}', /unknown token \{\}/],
      ['{SEQ} {HH}', /unknown token/],
    ];
    for (const [pattern, message] of cases) {
      expect(() => parsePattern(pattern)).toThrow(PatternError);
      expect(() => parsePattern(pattern)).toThrow(message);
    }
  });

  test('a pattern must name the period its counter resets in', () => {
    const fits = (pattern: string, policy: ResetPolicyName) => {
      try {
        checkPatternFitsPolicy(parsePattern(pattern), policy);
        return 'fits';
      } catch (error) {
        expect(error).toBeInstanceOf(PatternError);
        return (error as Error).message;
      }
    };
    expect(fits('{SEQ}', 'NEVER')).toBe('fits');
    expect(fits('{MM}{SEQ}', 'NEVER')).toBe('fits');
    expect(fits('{YYYY}{SEQ}', 'YEARLY')).toBe('fits');
    expect(fits('{YY}{SEQ}', 'YEARLY')).toBe('fits');
    expect(fits('{MM}{DD}{SEQ}', 'YEARLY')).toBe('a YEARLY series needs {YYYY} or {YY} in its pattern');
    expect(fits('{YYYY}{MM}{SEQ}', 'MONTHLY')).toBe('fits');
    expect(fits('{YY}-{MM}{SEQ}', 'MONTHLY')).toBe('fits');
    expect(fits('{YYYY}{SEQ}', 'MONTHLY')).toBe('a MONTHLY series needs a year token and {MM} in its pattern');
    expect(fits('{MM}{SEQ}', 'MONTHLY')).toBe('a MONTHLY series needs a year token and {MM} in its pattern');
    expect(fits('{DD}{SEQ}', 'MONTHLY')).toBe('a MONTHLY series needs a year token and {MM} in its pattern');
  });
});

describe('periods and calendar dates', () => {
  test('property: the local date of an instant in a fixed-offset zone is the UTC date of the shifted instant (years 1 BC = 0 and before included)', () => {
    const zones: Array<[string, number]> = [
      ['UTC', 0],
      ['Etc/GMT-14', 14], // POSIX sign: GMT-14 is UTC+14
      ['Etc/GMT+12', -12],
      ['Etc/GMT-5', 5],
    ];
    fc.assert(
      fc.property(fc.integer({ min: -62_198_755_200_000, max: 253_402_300_799_999 }), fc.constantFrom(...zones), (ms, [zone, hours]) => {
        const shifted = new Date(ms + hours * 3600_000);
        expect(localDate(new Date(ms), zone)).toEqual({ year: shifted.getUTCFullYear(), month: shifted.getUTCMonth() + 1, day: shifted.getUTCDate() });
      }),
      { numRuns: 500 },
    );
  });

  test('time zones decide the date: New Year in Berlin and New York, UTC+14, astronomical years, year 10000', () => {
    expect(localDate(new Date('2025-12-31T23:30:00Z'), 'Europe/Berlin')).toEqual({ year: 2026, month: 1, day: 1 });
    expect(localDate(new Date('2025-12-31T23:30:00Z'), 'America/New_York')).toEqual({ year: 2025, month: 12, day: 31 });
    expect(localDate(new Date('2026-01-01T10:30:00Z'), 'Pacific/Kiritimati')).toEqual({ year: 2026, month: 1, day: 2 });
    expect(localDate(new Date('0000-06-01T00:00:00Z'), 'UTC')).toEqual({ year: 0, month: 6, day: 1 });
    expect(localDate(new Date('-000001-06-01T00:00:00Z'), 'UTC')).toEqual({ year: -1, month: 6, day: 1 });
    expect(localDate(new Date('9999-12-31T23:00:00Z'), 'Pacific/Kiritimati')).toEqual({ year: 10000, month: 1, day: 1 });
  });

  test('periods: NEVER has one, YEARLY is the year, MONTHLY the year and month, zero-padded', () => {
    fc.assert(
      fc.property(dateArb, (d) => {
        expect(periodOf(d, 'NEVER')).toBe('');
        expect(periodOf(d, 'YEARLY')).toBe(String(d.year).padStart(4, '0'));
        expect(periodOf(d, 'MONTHLY')).toBe(`${String(d.year).padStart(4, '0')}-${String(d.month).padStart(2, '0')}`);
      }),
    );
    expect([periodOf({ year: 7, month: 3, day: 1 }, 'MONTHLY'), periodOf({ year: 2026, month: 11, day: 30 }, 'YEARLY')]).toEqual(['0007-03', '2026']);
  });

  test('ISO dates round-trip for years 0000–9999', () => {
    fc.assert(
      fc.property(dateArb, (d) => {
        const text = isoDate(d);
        expect(text).toMatch(/^\d{4}-\d{2}-\d{2}$/);
        expect(parseIsoDate(text)).toEqual(d);
      }),
    );
    expect(isoDate({ year: 26, month: 1, day: 2 })).toBe('0026-01-02');
  });

  test('known and unknown time zones', () => {
    for (const zone of ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kathmandu', 'Etc/GMT-14']) expect(isKnownTimeZone(zone)).toBe(true);
    for (const zone of ['', 'Mars/Olympus', 'Europe/Berlin ', 'x'.repeat(65), 'UTC+25']) expect(isKnownTimeZone(zone)).toBe(false);
  });

  test('number resources name the series, the period ("-" for none) and the value', () => {
    expect(numberResource('inv', '2026', 17)).toBe('series/inv/periods/2026/numbers/17');
    expect(numberResource('hot', '', 1)).toBe('series/hot/periods/-/numbers/1');
    expect(numberResource('m', '2026-03', 9_007_199_254_740_991)).toBe('series/m/periods/2026-03/numbers/9007199254740991');
  });
});
