import { Cron } from 'croner';
import * as fc from 'fast-check';
import { parseCron, type CronSchedule } from '../../services/scheduler/cron';
import { beyondKernelHorizon, expressionArb, hasModifier, offsetConstant, offsetMinutes, startTimeArb, wallsBetween, type ExpressionModel } from './cron-model';

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
 * day-of-week combine with OR when both are restricted in both (croner's default, `domAndDow:
 * false`), the month-end and nth-weekday modifiers included. Expressions come from
 * ./cron-model.ts, which also knows what each one means: where croner (11) cannot read an
 * expression — `L-n`, or `LW` in a list — the kernel is held to that model (Quartz's meaning)
 * instead, and wherever croner can, the model must agree with croner too, which is what makes it
 * a trustworthy stand-in.
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

/** The local wall-clock reading of an instant, as text. */
const wallClock = (zone: string, ms: number) => new Date(ms + offsetMinutes(zone, ms) * 60_000).toISOString();

/**
 * The kernel's schedule, or undefined for an expression it refuses. Every generated expression
 * is well-formed, so the only refusals allowed are the ones about never firing (30 February,
 * MON#5 in February alone, which fires once in 28 years).
 */
function kernelCron(expression: string, zone: string): CronSchedule | undefined {
  try {
    return parseCron(expression, zone);
  } catch (error) {
    expect([expression, (error as Error).message]).toEqual([expression, expect.stringMatching(/never occurs|has no fire time within the next years/)]);
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

const expressions = expressionArb({ modifiers: true });
/** The model's fire times in (from, to] for a zone whose offset is constant over them. */
function modelBetween(e: ExpressionModel, zone: string, from: number, to: number, limit: number): number[] {
  const offset = offsetMinutes(zone, from) * 60_000;
  return wallsBetween(e, from + offset, to + offset, limit).map((wall) => wall - offset);
}

/** What the properties compared, for the record: see the last test. */
const seen = { croner: 0, modelOnly: 0, withModifier: 0, withModifierAndFires: 0 };
function count(e: ExpressionModel, fires: number) {
  if (e.croner === undefined) seen.modelOnly += 1;
  else seen.croner += 1;
  if (hasModifier(e)) {
    seen.withModifier += 1;
    if (fires > 0) seen.withModifierAndFires += 1;
  }
}

describe('cron against croner (oracle)', () => {
  test('property: away from DST transitions, every fire time in a two-day window agrees', () => {
    fc.assert(
      fc.property(expressions, fc.constantFrom(...ZONES), startTimeArb, (expression, zone, start) => {
        const end = start + 2 * DAY;
        fc.pre(offsetConstant(zone, start - DAY, end + DAY));
        const kernel = kernelCron(expression.kernel, zone);
        fc.pre(kernel !== undefined);
        const fires = iso(beyondKernelHorizon(expression, zone, start, () => kernel!.between(new Date(start), new Date(end), LIMIT)));
        const model = iso(modelBetween(expression, zone, start, end, LIMIT));
        if (expression.croner !== undefined) {
          const croner = iso(cronerBetween(oracle(expression.croner, zone), start, end, LIMIT));
          expect([expression.croner, model]).toEqual([expression.croner, croner]);
          expect(fires).toEqual(croner);
        } else {
          expect(fires).toEqual(model);
        }
        count(expression, fires.length);
      }),
      { numRuns: 300 },
    );
  });

  test('property: the next fire time agrees however far ahead it is (sparse expressions, no DST in between)', () => {
    // Fixed-offset zones: no transitions at all, so windows of years can be compared.
    const fixed = ['UTC', 'Asia/Tokyo', 'Asia/Kolkata', 'Asia/Kathmandu', 'Etc/GMT+11', 'Etc/GMT-13'];
    fc.assert(
      fc.property(expressions, fc.constantFrom(...fixed), startTimeArb, (expression, zone, start) => {
        const kernel = kernelCron(expression.kernel, zone);
        fc.pre(kernel !== undefined);
        const next = beyondKernelHorizon(expression, zone, start, () => kernel!.next(new Date(start))).toISOString();
        // The kernel looks at most five years ahead, so the model's first fire within six is enough.
        expect(iso(modelBetween(expression, zone, start, start + 6 * 366 * DAY, 1))).toEqual([next]);
        if (expression.croner !== undefined) expect(oracle(expression.croner, zone).nextRun(new Date(start))!.toISOString()).toBe(next);
        count(expression, 1);
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
      fc.property(expressions, fc.constantFrom(...fallBacks), fc.integer({ min: -30, max: 30 }), (expression, [zone, at], shiftHours) => {
        // Across the overlap only croner is the oracle (the model knows no time zones).
        fc.pre(expression.croner !== undefined);
        const kernel = kernelCron(expression.kernel, zone);
        fc.pre(kernel !== undefined);
        const start = at - 6 * HOUR + shiftHours * 10 * 60_000;
        const end = start + 12 * HOUR;
        const croner = cronerBetween(oracle(expression.croner!, zone), start, end, LIMIT);
        // Where croner's list was cut short, compare up to its last fire time: every earlier
        // fire time is known, and a first occurrence always comes before its repeat.
        const until = croner.length === LIMIT ? croner[LIMIT - 1] : end;
        // A repeat is a local time the clock already showed one overlap earlier (its first
        // occurrence may lie before the window).
        const overlap = (offsetMinutes(zone, at - 1) - offsetMinutes(zone, at)) * 60_000;
        const firstOccurrences = croner.filter((t) => wallClock(zone, t - overlap) !== wallClock(zone, t));
        expect(iso(beyondKernelHorizon(expression, zone, start, () => kernel!.between(new Date(start), new Date(until), LIMIT)))).toEqual(iso(firstOccurrences));
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
  test('modifiers and the OR rule: the kernel reads them as croner does by default (domAndDow false, i.e. legacyMode true), not as with AND', () => {
    const from = new Date('2026-01-01T00:00:00Z');
    const to = new Date('2026-03-01T00:00:00Z');
    const fires = (job: Cron) => iso(cronerBetween(job, from.getTime(), to.getTime(), 20));
    for (const expression of ['0 0 L * FRI', '0 0 15W * MON#1', '0 0 LW * THUL', '0 0 1W * 3#2']) {
      const kernel = iso(parseCron(expression, 'UTC').between(from, to, 20));
      const byDefault = fires(new Cron(expression, { timezone: 'UTC', paused: true }));
      const legacy = fires(new Cron(expression, { timezone: 'UTC', paused: true, legacyMode: true }));
      const and = fires(new Cron(expression, { timezone: 'UTC', paused: true, legacyMode: false }));
      expect([expression, kernel]).toEqual([expression, byDefault]);
      expect(legacy).toEqual(byDefault);
      expect(and.length).toBeLessThan(kernel.length);
    }
    // The last day OR any Friday, concretely (January 2026: Fridays 2, 9, 16, 23, 30; last day 31).
    expect(iso(parseCron('0 0 L * FRI', 'UTC').between(from, new Date('2026-02-01T00:00:00Z'), 20)).map((t) => t.slice(8, 10))).toEqual(['02', '09', '16', '23', '30', '31']);
  });

  test('where croner cannot read an expression, the kernel follows Quartz (documented gaps of croner 11)', () => {
    const refuses = (expression: string) => () => new Cron(expression, { timezone: 'UTC', paused: true });
    // L-n (Quartz: n days before the last day) — croner has no offset from L.
    expect(refuses('0 0 L-2 * *')).toThrow(/L has to be a value of its own/);
    expect(iso(parseCron('0 0 L-2 * *', 'UTC').between(new Date('2024-01-01T00:00:00Z'), new Date('2024-04-01T00:00:00Z'), 5))).toEqual([
      '2024-01-29T00:00:00.000Z',
      '2024-02-27T00:00:00.000Z', // leap February: 29 − 2
      '2024-03-29T00:00:00.000Z',
    ]);
    // LW in a list — croner takes LW only alone; the kernel ORs list items as always.
    expect(refuses('0 0 LW,15 * *')).toThrow(/LW can not be in a list/);
    expect(iso(parseCron('0 0 LW,15 * *', 'UTC').between(new Date('2026-01-01T00:00:00Z'), new Date('2026-03-01T00:00:00Z'), 5))).toEqual([
      '2026-01-15T00:00:00.000Z',
      '2026-01-30T00:00:00.000Z', // Saturday the 31st → Friday
      '2026-02-15T00:00:00.000Z',
      '2026-02-27T00:00:00.000Z', // Saturday the 28th → Friday
    ]);
  });

  test('the properties above compared modifiers, against croner and against the model', () => {
    // A guard against a generator that stops producing what this file is about.
    expect(seen.croner).toBeGreaterThan(300);
    expect(seen.modelOnly).toBeGreaterThan(30);
    expect(seen.withModifier).toBeGreaterThan(200);
    expect(seen.withModifierAndFires).toBeGreaterThan(100);
    console.log(`cron oracle: ${seen.croner} runs against croner, ${seen.modelOnly} against the model only; ${seen.withModifier} with L/W/#, ${seen.withModifierAndFires} of them with fire times`);
  });
});
