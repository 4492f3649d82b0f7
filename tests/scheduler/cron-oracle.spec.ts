import { Cron } from 'croner';
import * as fc from 'fast-check';
import { parseCron, type CronSchedule } from '../../services/scheduler/cron';

/*
 * The kernel's cron (services/scheduler/cron.ts) against croner, a maintained implementation,
 * as an oracle: random expressions of the kernel's grammar, random zones and start times, and
 * every fire time in a window must agree wherever no DST transition is near. Across a fall-back
 * overlap the two differ by documented policy: croner (like Vixie cron) fires an interval job
 * (wildcard, step, range or list in second, minute or hour) on both occurrences of a repeated
 * local time, the kernel fires every repeated local time once, at its first occurrence — so
 * croner's fire times with the repeats removed must be exactly the kernel's. No database.
 *
 * Grammar mapping: the kernel's `a/n` is croner's with `sloppyRanges`; day-of-month and
 * day-of-week combine with OR when both are restricted in both (croner's default).
 */

const ZONES = [
  'UTC',
  'Europe/Berlin',
  'America/New_York',
  'Asia/Tokyo',
  'Asia/Kolkata',
  'Asia/Kathmandu',
  'Australia/Adelaide',
  'Australia/Lord_Howe',
  'America/St_Johns',
  'America/Sao_Paulo',
  'Pacific/Auckland',
  'Pacific/Chatham',
  'Europe/London',
  'Africa/Cairo',
] as const;

const formatters = new Map<string, Intl.DateTimeFormat>();
/** The zone's UTC offset at an instant (minutes), read with Intl here, not with cron.ts. */
function offsetMinutes(zone: string, ms: number): number {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    formatters.set(zone, f);
  }
  const p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, Number(x.value)]));
  return (Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000) / 60_000;
}
/** The local wall-clock reading of an instant, as text. */
const wallClock = (zone: string, ms: number) => new Date(ms + offsetMinutes(zone, ms) * 60_000).toISOString();
/** Whether the offset stays the same from `from` to `to` (checked every 15 minutes). */
function offsetConstant(zone: string, from: number, to: number): boolean {
  const first = offsetMinutes(zone, from);
  for (let t = from; t <= to; t += 15 * 60_000) if (offsetMinutes(zone, t) !== first) return false;
  return offsetMinutes(zone, to) === first;
}

// ---- expressions of the kernel's grammar --------------------------------------------------
/**
 * An expression as the kernel reads it, and the same schedule in croner's grammar. They differ
 * only in day of week, where croner reads two things otherwise: a range ending in the name SUN
 * ends at 7 there (the kernel: SUN is 0, so `0-SUN` is Sunday alone), and `a/n` stops at 6
 * there (the kernel: at 7, the field's last value, as Vixie cron's `*` spans 0–7) — so croner
 * is given numbers and `a-7/n`.
 */
interface Expression {
  kernel: string;
  croner: string;
}
const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
function field(min: number, max: number, options: { names?: string[]; namesFrom?: number; dayOfWeek?: boolean } = {}): fc.Arbitrary<Expression> {
  const { names, namesFrom = min, dayOfWeek = false } = options;
  const value = fc.integer({ min, max });
  /** A value, by name where it has one: the kernel gets the name, croner a number for day of week. */
  const named = (v: number): fc.Arbitrary<Expression> => {
    const plain = { kernel: String(v), croner: String(v) };
    const name = names?.[v - namesFrom];
    return name ? fc.constantFrom(plain, { kernel: name, croner: dayOfWeek ? String(v) : name }) : fc.constant(plain);
  };
  const join = (parts: Expression[], sep: string): Expression => ({ kernel: parts.map((p) => p.kernel).join(sep), croner: parts.map((p) => p.croner).join(sep) });
  const range = fc.tuple(value, value).chain(([a, b]) => fc.tuple(named(Math.min(a, b)), named(Math.max(a, b))).map((ends) => join(ends, '-')));
  const step = fc.integer({ min: 1, max: Math.min(max, 30) });
  const part = fc.oneof(
    { arbitrary: value.chain(named), weight: 4 },
    { arbitrary: range, weight: 3 },
    { arbitrary: step.map((n) => ({ kernel: `*/${n}`, croner: `*/${n}` })), weight: 3 },
    { arbitrary: fc.tuple(range, step).map(([r, n]) => ({ kernel: `${r.kernel}/${n}`, croner: `${r.croner}/${n}` })), weight: 2 },
    {
      arbitrary: fc.tuple(value.chain(named), step).map(([v, n]) => ({ kernel: `${v.kernel}/${n}`, croner: dayOfWeek ? `${v.croner}-7/${n}` : `${v.croner}/${n}` })),
      weight: 1,
    },
  );
  return fc.oneof(
    { arbitrary: fc.constant({ kernel: '*', croner: '*' }), weight: 3 },
    { arbitrary: part, weight: 5 },
    { arbitrary: fc.array(part, { minLength: 2, maxLength: 3 }).map((parts) => join(parts, ',')), weight: 2 },
  );
}
const expressionArb: fc.Arbitrary<Expression> = fc
  .tuple(
    fc.option(field(0, 59), { nil: undefined, freq: 3 }),
    field(0, 59),
    field(0, 23),
    field(1, 31),
    field(1, 12, { names: MONTHS, namesFrom: 1 }),
    field(0, 7, { names: DAYS, dayOfWeek: true }),
  )
  .map(([sec, ...rest]) => {
    const fields = sec === undefined ? rest : [sec, ...rest];
    return { kernel: fields.map((f) => f.kernel).join(' '), croner: fields.map((f) => f.croner).join(' ') };
  });

/** The kernel's schedule, or undefined for an expression it refuses (e.g. never fires). */
function kernelCron(expression: string, zone: string): CronSchedule | undefined {
  try {
    return parseCron(expression, zone);
  } catch {
    return undefined;
  }
}
const oracle = (expression: string, zone: string) => new Cron(expression, { timezone: zone, paused: true, sloppyRanges: true });

/** Fire times in (from, to], at most `limit`, by croner. */
function cronerBetween(job: Cron, from: number, to: number, limit: number): number[] {
  const out: number[] = [];
  let t = new Date(from);
  while (out.length < limit) {
    const next = job.nextRun(t);
    if (!next || next.getTime() > to) break;
    out.push(next.getTime());
    t = next;
  }
  return out;
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;
const LIMIT = 100;
const iso = (times: Array<number | Date>) => times.map((t) => new Date(t).toISOString());

describe('cron against croner (oracle)', () => {
  test('property: away from DST transitions, every fire time in a two-day window agrees', () => {
    fc.assert(
      fc.property(
        expressionArb,
        fc.constantFrom(...ZONES),
        fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2032, 0, 1) }),
        (expression, zone, start) => {
          const kernel = kernelCron(expression.kernel, zone);
          fc.pre(kernel !== undefined);
          const end = start + 2 * DAY;
          fc.pre(offsetConstant(zone, start - DAY, end + DAY));
          const expected = cronerBetween(oracle(expression.croner, zone), start, end, LIMIT);
          expect(iso(kernel!.between(new Date(start), new Date(end), LIMIT))).toEqual(iso(expected));
        },
      ),
      { numRuns: 200 },
    );
  });

  test('property: the next fire time agrees however far ahead it is (sparse expressions, no DST in between)', () => {
    // Fixed-offset zones: no transitions at all, so windows of years can be compared.
    const fixed = ['UTC', 'Asia/Tokyo', 'Asia/Kolkata', 'Asia/Kathmandu', 'Etc/GMT+11', 'Etc/GMT-13'];
    fc.assert(
      fc.property(expressionArb, fc.constantFrom(...fixed), fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2032, 0, 1) }), (expression, zone, start) => {
        const kernel = kernelCron(expression.kernel, zone);
        fc.pre(kernel !== undefined);
        const next = oracle(expression.croner, zone).nextRun(new Date(start));
        expect(kernel!.next(new Date(start)).toISOString()).toBe(next!.toISOString());
      }),
      { numRuns: 300 },
    );
  });

  test('property: across a fall-back overlap the kernel fires what croner fires, each repeated local time once (its first occurrence)', () => {
    // Fall-back transitions (instant of the change) in zones of both hemispheres.
    const fallBacks: Array<[string, number]> = [
      ['Europe/Berlin', Date.parse('2026-10-25T01:00:00Z')],
      ['America/New_York', Date.parse('2026-11-01T06:00:00Z')],
      ['America/New_York', Date.parse('2025-11-02T06:00:00Z')],
      ['Europe/London', Date.parse('2026-10-25T01:00:00Z')],
      ['Australia/Adelaide', Date.parse('2026-04-04T16:30:00Z')],
      ['Australia/Lord_Howe', Date.parse('2026-04-04T15:00:00Z')], // a 30-minute overlap
      ['Pacific/Auckland', Date.parse('2026-04-04T14:00:00Z')],
    ];
    for (const [zone, at] of fallBacks) expect([zone, offsetMinutes(zone, at - 1) > offsetMinutes(zone, at)]).toEqual([zone, true]);
    fc.assert(
      fc.property(expressionArb, fc.constantFrom(...fallBacks), fc.integer({ min: -30, max: 30 }), (expression, [zone, at], shiftHours) => {
        const kernel = kernelCron(expression.kernel, zone);
        fc.pre(kernel !== undefined);
        const start = at - 6 * HOUR + shiftHours * 10 * 60_000;
        const end = start + 12 * HOUR;
        const croner = cronerBetween(oracle(expression.croner, zone), start, end, LIMIT);
        // Where croner's list was cut short, compare up to its last fire time: every earlier
        // fire time is known, and a first occurrence always comes before its repeat.
        const until = croner.length === LIMIT ? croner[LIMIT - 1] : end;
        // A repeat is a local time the clock already showed one overlap earlier (its first
        // occurrence may lie before the window).
        const overlap = (offsetMinutes(zone, at - 1) - offsetMinutes(zone, at)) * 60_000;
        const firstOccurrences = croner.filter((t) => wallClock(zone, t - overlap) !== wallClock(zone, t));
        expect(iso(kernel!.between(new Date(start), new Date(until), LIMIT))).toEqual(iso(firstOccurrences));
      }),
      { numRuns: 200 },
    );
  });

  test('the documented differences, concretely (America/New_York, 2026-11-01 02:00 EDT → 01:00 EST)', () => {
    const from = new Date('2026-11-01T04:50:00Z');
    const to = new Date('2026-11-01T07:10:00Z');
    const interval = '*/20 * * * *';
    expect(iso(cronerBetween(oracle(interval, 'America/New_York'), from.getTime(), to.getTime(), 20))).toEqual([
      '2026-11-01T05:00:00.000Z', // 01:00 EDT
      '2026-11-01T05:20:00.000Z',
      '2026-11-01T05:40:00.000Z',
      '2026-11-01T06:00:00.000Z', // 01:00 EST, again: croner fires it, the kernel does not
      '2026-11-01T06:20:00.000Z',
      '2026-11-01T06:40:00.000Z',
      '2026-11-01T07:00:00.000Z',
    ]);
    expect(iso(parseCron(interval, 'America/New_York').between(from, to, 20))).toEqual([
      '2026-11-01T05:00:00.000Z',
      '2026-11-01T05:20:00.000Z',
      '2026-11-01T05:40:00.000Z',
      '2026-11-01T07:00:00.000Z',
    ]);
    // A fixed time: both fire once, at the first occurrence.
    const fixed = '30 1 * * *';
    expect(iso(cronerBetween(oracle(fixed, 'America/New_York'), from.getTime(), to.getTime(), 5))).toEqual(['2026-11-01T05:30:00.000Z']);
    expect(iso(parseCron(fixed, 'America/New_York').between(from, to, 5))).toEqual(['2026-11-01T05:30:00.000Z']);
  });
});
