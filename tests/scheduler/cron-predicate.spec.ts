import * as fc from 'fast-check';
import { parseCron, type CronSchedule } from '../../services/scheduler/cron';
import {
  beyondKernelHorizon,
  expressionArb,
  hasModifier,
  isLastOccurrence,
  lastWeekdayOf,
  matchesWall,
  monthLength,
  nearestWeekdayTo,
  occurrenceOf,
  offsetConstant,
  offsetMinutes,
  startTimeArb,
  wallsBetween,
  weekdayOf,
  type ExpressionModel,
} from './cron-model';

/*
 * For expressions with month-end and nth-weekday modifiers (L, L-n, LW, nW, xL, x#n): every fire
 * time the kernel produces satisfies the expression, and no time between two consecutive fire
 * times does (nor between the start and the first). "Satisfies" is the predicate of
 * ./cron-model.ts — the meaning each part had when it was generated, with calendar math of its
 * own — not cron.ts. Only windows where the zone's offset is constant: across a DST transition
 * the kernel's policy moves a fire time off its literal wall-clock reading (a nonexistent 02:30
 * fires at 03:30), which cron.spec.ts and the croner oracle cover. No database.
 */

/** Zones without DST over the start times and windows, 2020–2033 (checked below; São Paulo's ended in 2019), and zones with it. */
const FIXED = ['UTC', 'Asia/Tokyo', 'Asia/Kolkata', 'Etc/GMT+11', 'Etc/GMT-13', 'America/Sao_Paulo'];
const ZONES = [...FIXED, 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe'];
const DAY = 86_400_000;
/**
 * Windows: 400 days in a zone without DST (every month end of a year and more), else 62 days
 * (at least two month ends, every nth weekday twice) without a transition; at most LIMIT fire
 * times.
 */
const LONG = 400 * DAY;
const SHORT = 62 * DAY;
const LIMIT = 60;
const iso = (wall: number) => new Date(wall).toISOString();

/** The kernel's schedule, or undefined when it refuses one that never fires (all generated expressions are well-formed). */
function kernelCron(e: ExpressionModel, zone: string): CronSchedule | undefined {
  try {
    return parseCron(e.kernel, zone);
  } catch (error) {
    expect([e.kernel, (error as Error).message]).toEqual([e.kernel, expect.stringMatching(/never occurs|has no fire time within the next years/)]);
    return undefined;
  }
}

describe('cron modifiers against an independent predicate', () => {
  let checkedFires = 0;

  test('property: every fire time satisfies the expression, and no time between two consecutive fire times does', () => {
    fc.assert(
      fc.property(expressionArb({ modifiers: true }).filter(hasModifier), fc.constantFrom(...ZONES), startTimeArb, (e, zone, start) => {
        const fixed = FIXED.includes(zone);
        const end = start + (fixed ? LONG : SHORT);
        fc.pre(fixed || offsetConstant(zone, start - DAY, end + DAY, DAY));
        const schedule = kernelCron(e, zone);
        fc.pre(schedule !== undefined);
        // With a constant offset, an instant's wall-clock reading is the instant plus the offset.
        const offset = offsetMinutes(zone, start) * 60_000;
        const walls = beyondKernelHorizon(e, zone, start, () => schedule!.between(new Date(start), new Date(end), LIMIT)).map((d) => d.getTime() + offset);
        // (expect only on a failure: thousands of passing expects cost more than the checks.)
        for (const wall of walls) if (!matchesWall(e, wall)) expect([e.kernel, zone, iso(wall), 'satisfies']).toEqual([e.kernel, zone, iso(wall), 'does not satisfy']);
        // Gaps: (start, first), (fire, next fire) …, and (last, end] unless the limit cut the list.
        const bounds = [start + offset, ...walls, ...(walls.length < LIMIT ? [end + offset + 1000] : [])];
        for (let i = 1; i < bounds.length; i += 1) {
          const missed = wallsBetween(e, bounds[i - 1], bounds[i] - 1000, 1).map(iso);
          if (missed.length > 0) expect([e.kernel, zone, iso(bounds[i - 1]), missed]).toEqual([e.kernel, zone, iso(bounds[i - 1]), []]);
        }
        checkedFires += walls.length;
      }),
      { numRuns: 300 },
    );
    // A guard against a generator that stops producing fire times to check.
    expect(checkedFires).toBeGreaterThan(1000);
    console.log(`cron predicate: ${checkedFires} fire times checked`);
  });

  test('the zones taken as fixed keep one offset from 2020 to March 2033', () => {
    for (const zone of FIXED) expect([zone, offsetConstant(zone, Date.UTC(2019, 11, 30), Date.UTC(2033, 2, 1), DAY)]).toEqual([zone, true]);
  });

  test('the predicate\'s calendar, on hand-checked days', () => {
    // It is what judges the kernel above, so its pieces are checked against a printed calendar.
    expect([2023, 2024, 1900, 2000, 2100].map((y) => monthLength(y, 2))).toEqual([28, 29, 28, 29, 28]);
    expect([1, 4, 6, 9, 11, 12].map((m) => monthLength(2026, m))).toEqual([31, 30, 30, 30, 30, 31]);
    // 1 January 2026 Thursday, 29 February 2024 Thursday, 1 March 2026 Sunday, 31 May 2026 Sunday.
    expect([weekdayOf(2026, 1, 1), weekdayOf(2024, 2, 29), weekdayOf(2026, 3, 1), weekdayOf(2026, 5, 31)]).toEqual([4, 4, 0, 0]);
    // nW: Saturday 1 August 2026 → Monday the 3rd; Sunday 1 February 2026 → the 2nd; Saturday
    // 15 August → Friday the 14th; Sunday 31 May (the last day) → Friday the 29th; no 31 April.
    expect([nearestWeekdayTo(2026, 8, 1), nearestWeekdayTo(2026, 2, 1), nearestWeekdayTo(2026, 8, 15), nearestWeekdayTo(2026, 5, 31), nearestWeekdayTo(2026, 4, 31)]).toEqual([3, 2, 14, 29, undefined]);
    // LW: Saturday 31 January 2026 → 30; Saturday 28 February → 27; Tuesday 31 March → 31.
    expect([lastWeekdayOf(2026, 1), lastWeekdayOf(2026, 2), lastWeekdayOf(2026, 3)]).toEqual([30, 27, 31]);
    // x#n and xL: 29 February 2024 is the 5th and last Thursday; 22 January 2026 the 4th Thursday, not the last (29th is).
    expect([occurrenceOf({ year: 2024, month: 2, day: 29 }), isLastOccurrence({ year: 2024, month: 2, day: 29 })]).toEqual([5, true]);
    expect([occurrenceOf({ year: 2026, month: 1, day: 22 }), isLastOccurrence({ year: 2026, month: 1, day: 22 })]).toEqual([4, false]);
  });
});
