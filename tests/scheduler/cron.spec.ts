import { CronError, isKnownTimeZone, parseCron } from '../../services/scheduler/cron';

/** Pure cron math (no clock): fields, names, day-of-month/day-of-week, and the DST rules. */
describe('cron', () => {
  const iso = (dates: Date[]) => dates.map((d) => d.toISOString());

  test('five fields fire on the minute; six fields add seconds', () => {
    expect(parseCron('*/15 * * * *', 'UTC').between(new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T00:46:00Z'), 10).map((d) => d.toISOString())).toEqual([
      '2026-01-01T00:15:00.000Z',
      '2026-01-01T00:30:00.000Z',
      '2026-01-01T00:45:00.000Z',
    ]);
    expect(iso(parseCron('*/20 * * * * *', 'UTC').between(new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T00:01:00Z'), 10))).toEqual([
      '2026-01-01T00:00:20.000Z',
      '2026-01-01T00:00:40.000Z',
      '2026-01-01T00:01:00.000Z',
    ]);
  });

  test('names, ranges, lists, Sunday as 0 or 7, and day-of-month OR day-of-week', () => {
    const weekdays = parseCron('0 9 * JAN-FEB MON-FRI', 'UTC');
    expect(weekdays.next(new Date('2026-01-02T10:00:00Z')).toISOString()).toBe('2026-01-05T09:00:00.000Z'); // Fri → Mon
    expect(parseCron('0 0 * * 7', 'UTC').next(new Date('2026-01-01T00:00:00Z')).toISOString()).toBe('2026-01-04T00:00:00.000Z');
    // 1st of the month OR any Monday (both restricted ⇒ either matches).
    expect(iso(parseCron('0 0 1 * MON', 'UTC').between(new Date('2026-01-30T00:00:00Z'), new Date('2026-02-10T00:00:00Z'), 5))).toEqual([
      '2026-02-01T00:00:00.000Z',
      '2026-02-02T00:00:00.000Z',
      '2026-02-09T00:00:00.000Z',
    ]);
    expect(parseCron('0 12 29 2 *', 'UTC').next(new Date('2026-01-01T00:00:00Z')).toISOString()).toBe('2028-02-29T12:00:00.000Z');
  });

  test('wall-clock times are in the time zone', () => {
    expect(parseCron('0 9 * * *', 'Asia/Tokyo').next(new Date('2026-06-01T00:00:00Z')).toISOString()).toBe('2026-06-02T00:00:00.000Z');
    expect(parseCron('0 9 * * *', 'Europe/Berlin').next(new Date('2026-06-01T00:00:00Z')).toISOString()).toBe('2026-06-01T07:00:00.000Z');
  });

  test('DST spring forward: a nonexistent local time fires shifted forward by the gap; every instant fires once', () => {
    // America/New_York, 2026-03-08 02:00 → 03:00.
    const daily = parseCron('30 2 * * *', 'America/New_York');
    expect(iso(daily.between(new Date('2026-03-07T12:00:00Z'), new Date('2026-03-09T12:00:00Z'), 5))).toEqual([
      '2026-03-08T07:30:00.000Z', // 03:30 EDT (02:30 does not exist)
      '2026-03-09T06:30:00.000Z', // 02:30 EDT
    ]);
    const every20 = parseCron('*/20 * * * *', 'America/New_York');
    const fires = every20.between(new Date('2026-03-08T06:30:00Z'), new Date('2026-03-08T08:30:00Z'), 20);
    expect(iso(fires)).toEqual([
      '2026-03-08T06:40:00.000Z', // 01:40 EST
      '2026-03-08T07:00:00.000Z', // 03:00 EDT (= 02:00, shifted)
      '2026-03-08T07:20:00.000Z',
      '2026-03-08T07:40:00.000Z',
      '2026-03-08T08:00:00.000Z',
      '2026-03-08T08:20:00.000Z',
    ]);
    expect(new Set(iso(fires)).size).toBe(fires.length);
  });

  test('DST fall back: a repeated local time fires once, at its first occurrence', () => {
    // America/New_York, 2026-11-01 02:00 EDT → 01:00 EST: 01:00–01:59 happens twice.
    const daily = parseCron('30 1 * * *', 'America/New_York');
    expect(iso(daily.between(new Date('2026-10-31T12:00:00Z'), new Date('2026-11-02T12:00:00Z'), 5))).toEqual([
      '2026-11-01T05:30:00.000Z', // 01:30 EDT; not again at 01:30 EST (06:30Z)
      '2026-11-02T06:30:00.000Z',
    ]);
    const every20 = parseCron('*/20 * * * *', 'America/New_York');
    expect(iso(every20.between(new Date('2026-11-01T04:50:00Z'), new Date('2026-11-01T07:10:00Z'), 20))).toEqual([
      '2026-11-01T05:00:00.000Z', // 01:00 EDT
      '2026-11-01T05:20:00.000Z',
      '2026-11-01T05:40:00.000Z',
      '2026-11-01T07:00:00.000Z', // 02:00 EST (the repeated 01:xx EST are skipped)
    ]);
    // Half-hour zones and southern-hemisphere DST work the same way: in Adelaide 2026-10-04 02:00
    // does not exist (02:00 ACST → 03:00 ACDT), so it fires at 03:00 ACDT.
    expect(parseCron('0 2 * * *', 'Australia/Adelaide').next(new Date('2026-10-03T00:00:00Z')).toISOString()).toBe('2026-10-03T16:30:00.000Z');
  });

  /*
   * DST tables. Europe/Berlin 2026: 29 March 02:00 CET → 03:00 CEST (02:00–02:59 do not exist);
   * 25 October 03:00 CEST → 02:00 CET (02:00–02:59 happen twice: 00:00–00:59Z, then 01:00–01:59Z).
   * America/New_York 2026: 8 March 02:00 EST → 03:00 EDT; 1 November 02:00 EDT → 01:00 EST
   * (01:00–01:59 at 05:00–05:59Z, then 06:00–06:59Z). Policy: a nonexistent local time fires
   * shifted forward by the gap (once, if that instant fires anyway); a repeated one fires once, at
   * its first occurrence.
   */
  const table = (expression: string, zone: string, from: string, to: string) => iso(parseCron(expression, zone).between(new Date(from), new Date(to), 50));

  test.each([
    // [expression, zone, from, to, expected fire times]
    ['30 2 * * *', 'Europe/Berlin', '2026-03-27T12:00:00Z', '2026-03-30T12:00:00Z', ['2026-03-28T01:30:00.000Z', '2026-03-29T01:30:00.000Z', '2026-03-30T00:30:00.000Z']],
    ['0 2 * * *', 'Europe/Berlin', '2026-03-28T12:00:00Z', '2026-03-30T12:00:00Z', ['2026-03-29T01:00:00.000Z', '2026-03-30T00:00:00.000Z']],
    ['0 * * * *', 'Europe/Berlin', '2026-03-28T23:30:00Z', '2026-03-29T03:00:00Z', ['2026-03-29T00:00:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-29T02:00:00.000Z', '2026-03-29T03:00:00.000Z']],
    [
      '*/20 * * * *',
      'Europe/Berlin',
      '2026-03-29T00:30:00Z',
      '2026-03-29T02:00:00Z',
      ['2026-03-29T00:40:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-29T01:20:00.000Z', '2026-03-29T01:40:00.000Z', '2026-03-29T02:00:00.000Z'],
    ],
    ['15 30 2 * * *', 'Europe/Berlin', '2026-03-29T00:00:00Z', '2026-03-29T12:00:00Z', ['2026-03-29T01:30:15.000Z']],
    ['59 59 2 * * *', 'Europe/Berlin', '2026-03-29T00:00:00Z', '2026-03-29T12:00:00Z', ['2026-03-29T01:59:59.000Z']],
    ['30 2 * * SUN', 'Europe/Berlin', '2026-03-20T00:00:00Z', '2026-04-06T00:00:00Z', ['2026-03-22T01:30:00.000Z', '2026-03-29T01:30:00.000Z', '2026-04-05T00:30:00.000Z']],
    ['30 2 29 3 *', 'Europe/Berlin', '2026-01-01T00:00:00Z', '2027-12-31T00:00:00Z', ['2026-03-29T01:30:00.000Z', '2027-03-29T00:30:00.000Z']],
    ['30 2 * * *', 'Europe/Berlin', '2026-10-23T12:00:00Z', '2026-10-26T12:00:00Z', ['2026-10-24T00:30:00.000Z', '2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']],
    ['0 * * * *', 'Europe/Berlin', '2026-10-24T22:30:00Z', '2026-10-25T03:00:00Z', ['2026-10-24T23:00:00.000Z', '2026-10-25T00:00:00.000Z', '2026-10-25T02:00:00.000Z', '2026-10-25T03:00:00.000Z']],
    ['*/30 2 * * *', 'Europe/Berlin', '2026-10-24T23:00:00Z', '2026-10-25T03:00:00Z', ['2026-10-25T00:00:00.000Z', '2026-10-25T00:30:00.000Z']],
    ['0 30 2 * * *', 'Europe/Berlin', '2026-10-25T00:00:00Z', '2026-10-25T12:00:00Z', ['2026-10-25T00:30:00.000Z']],
    ['0 3 * * *', 'Europe/Berlin', '2026-10-24T12:00:00Z', '2026-10-25T12:00:00Z', ['2026-10-25T02:00:00.000Z']],
    ['0 * * * *', 'America/New_York', '2026-03-08T05:30:00Z', '2026-03-08T09:00:00Z', ['2026-03-08T06:00:00.000Z', '2026-03-08T07:00:00.000Z', '2026-03-08T08:00:00.000Z', '2026-03-08T09:00:00.000Z']],
    ['0 0 2 * * *', 'America/New_York', '2026-03-07T12:00:00Z', '2026-03-09T12:00:00Z', ['2026-03-08T07:00:00.000Z', '2026-03-09T06:00:00.000Z']],
    ['45 1 * * *', 'America/New_York', '2026-10-31T12:00:00Z', '2026-11-02T12:00:00Z', ['2026-11-01T05:45:00.000Z', '2026-11-02T06:45:00.000Z']],
    ['0 * * * *', 'America/New_York', '2026-11-01T03:30:00Z', '2026-11-01T08:00:00Z', ['2026-11-01T04:00:00.000Z', '2026-11-01T05:00:00.000Z', '2026-11-01T07:00:00.000Z', '2026-11-01T08:00:00.000Z']],
  ] as const)('DST table: %s in %s from %s to %s', (expression, zone, from, to, expected) => {
    expect(table(expression, zone, from, to)).toEqual(expected);
  });

  test('from inside the repeated hour (its second pass), times that already fired in the first pass are not fired again', () => {
    // 06:10Z is 01:10 EST on 2026-11-01 in New York, the second time 01:10 happens.
    expect(parseCron('*/20 * * * *', 'America/New_York').next(new Date('2026-11-01T06:10:00Z')).toISOString()).toBe('2026-11-01T07:00:00.000Z');
    expect(parseCron('30 1 * * *', 'America/New_York').next(new Date('2026-11-01T06:10:00Z')).toISOString()).toBe('2026-11-02T06:30:00.000Z');
    // 01:10Z is 02:10 CET on 2026-10-25 in Berlin, the second 02:10.
    expect(parseCron('45 2 * * *', 'Europe/Berlin').next(new Date('2026-10-25T01:10:00Z')).toISOString()).toBe('2026-10-26T01:45:00.000Z');
    expect(parseCron('0 3 * * *', 'Europe/Berlin').next(new Date('2026-10-25T01:10:00Z')).toISOString()).toBe('2026-10-25T02:00:00.000Z');
    // Just before the first pass ends, the rest of the first pass still fires.
    expect(parseCron('45 2 * * *', 'Europe/Berlin').next(new Date('2026-10-25T00:30:00Z')).toISOString()).toBe('2026-10-25T00:45:00.000Z');
  });

  test('next() is strictly after its argument, whole seconds, and between() respects both ends and the limit', () => {
    const everySecond = parseCron('* * * * * *', 'UTC');
    expect(everySecond.next(new Date('2026-01-01T00:00:00.000Z')).toISOString()).toBe('2026-01-01T00:00:01.000Z');
    expect(everySecond.next(new Date('2026-01-01T00:00:00.999Z')).toISOString()).toBe('2026-01-01T00:00:01.000Z');
    expect(parseCron('0 0 * * *', 'UTC').next(new Date('2026-01-01T00:00:00.000Z')).toISOString()).toBe('2026-01-02T00:00:00.000Z');
    expect(iso(everySecond.between(new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T00:00:03Z'), 10))).toEqual([
      '2026-01-01T00:00:01.000Z',
      '2026-01-01T00:00:02.000Z',
      '2026-01-01T00:00:03.000Z',
    ]);
    expect(everySecond.between(new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T01:00:00Z'), 2)).toHaveLength(2);
    expect(everySecond.between(new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T00:00:00Z'), 2)).toEqual([]);
    expect(() => everySecond.next(new Date(Number.NaN))).toThrow(CronError);
    expect(parseCron('0 9 * * MON-FRI', 'America/New_York')).toMatchObject({ expression: '0 9 * * MON-FRI', timeZone: 'America/New_York', hasSeconds: false });
    expect(parseCron(' 0  0 9 * * MON-FRI ', 'UTC').hasSeconds).toBe(true);
  });

  test('bad expressions and zones are refused with a reason', () => {
    for (const bad of ['', '* * *', '* * * * * * *', '61 * * * *', '* 24 * * *', '* * 0 * *', '* * * 13 *', '* * * * 8', 'x * * * *', '*/0 * * * *', '5-1 * * * *', '* * 30 2 *', '1,,2 * * * *', 'a'.repeat(201)]) {
      expect(() => parseCron(bad, 'UTC')).toThrow(CronError);
    }
    for (const zone of ['', 'Mars/Olympus', 'UTC+25', 'Europe/Berlin\u0000', 'x'.repeat(100)]) {
      expect(isKnownTimeZone(zone)).toBe(false);
      expect(() => parseCron('* * * * *', zone)).toThrow(CronError);
    }
  });

  test('each refusal names the field and what is wrong (the schedule API passes the message on, and tells a zone from a cron by it)', () => {
    const message = (expression: string, zone = 'UTC') => {
      try {
        parseCron(expression, zone);
      } catch (error) {
        expect(error).toBeInstanceOf(CronError);
        expect((error as CronError).name).toBe('CronError');
        return (error as Error).message;
      }
      return 'accepted';
    };
    const cases: Array<[string, string]> = [
      ['* * *', 'expected 5 or 6 fields, got 3'],
      ['* * * * * * *', 'expected 5 or 6 fields, got 7'],
      ['61 * * * * *', 'second: 61 is outside 0–59'],
      ['60 * * * *', 'minute: 60 is outside 0–59'],
      ['* 24 * * *', 'hour: 24 is outside 0–23'],
      ['* * 0 * *', 'day of month: 0 is outside 1–31'],
      ['* * 32 * *', 'day of month: 32 is outside 1–31'],
      ['* * * 0 *', 'month: 0 is outside 1–12'],
      ['* * * 13 *', 'month: 13 is outside 1–12'],
      ['* * * * 8', 'day of week: 8 is outside 0–7'],
      ['x * * * *', 'minute: "x" is not a number'],
      ['1x * * * *', 'minute: "1x" is not a number'],
      ['100 * * * *', 'minute: "100" is not a number'],
      ['* * * FOO *', 'month: "FOO" is not a number or name'],
      ['* * * * FUN', 'day of week: "FUN" is not a number or name'],
      ['*/0 * * * *', 'minute: step 0 must be 1–59'],
      ['*/60 * * * *', 'minute: step 60 must be 1–59'],
      ['* */24 * * *', 'hour: step 24 must be 1–23'],
      ['5-1 * * * *', 'minute: range 5-1 runs backwards'],
      ['* * * * MON-SUN', 'day of week: range MON-SUN runs backwards'],
      ['1,,2 * * * *', 'minute: "" is not a value, range, step or *'],
      ['1-2-3 * * * *', 'minute: "1-2-3" is not a value, range, step or *'],
      ['*/5/5 * * * *', 'minute: "*/5/5" is not a value, range, step or *'],
      ['* * 30 2 *', 'day of month never occurs in the given months'],
      ['* * 31 4,6,9,11 *', 'day of month never occurs in the given months'],
      // The modifiers, anchored at both ends (mutation-testing survivors of 2026-12-07).
      ['0 0 XL-3 * *', 'day of month: "XL-3" is not a value, range, step, *, L, L-n, LW or nW'],
      ['0 0 L-3X * *', 'day of month: "L-3X" is not a value, range, step, *, L, L-n, LW or nW'],
      ['0 0 L-31 * *', 'day of month: offset 31 in "L-31" is outside 0–30'],
      ['0 0 * * MON#1X', 'day of week: "MON#1X" is not a value, range, step, *, xL or x#n'],
      ['0 0 * * MON#10', 'day of week: nth 10 in "MON#10" is outside 1–5'],
      ['0 0 * * MON#6', 'day of week: nth 6 in "MON#6" is outside 1–5'],
      ['0 0 * * 1W', 'day of week: "1W": W is allowed only in day of month'],
    ];
    expect(cases.map(([expression]) => [expression, message(expression)])).toEqual(cases);
    expect(message('* * * * *', 'Mars/Olympus')).toBe('unknown IANA time zone "Mars/Olympus"');
    expect(message('0 0 0 * * *'.padEnd(201))).toBe('expression must be at most 200 characters');
    expect(message(42 as unknown as string)).toBe('expression must be at most 200 characters');
    // Accepted at the edges: 200 characters, the largest steps, 29 February, 31 in a list with a long month.
    for (const ok of ['0 0 0 * * *'.padEnd(200), '*/59 * * * *', '* */23 * * *', '* * */31 * *', '0 0 29 2 *', '0 0 31 4,5 *', '0 0 30 2 MON', '0 0 * * 0-7/7']) {
      expect([ok, message(ok)]).toEqual([ok, 'accepted']);
    }
  });

  test('steps, lists and ranges produce exactly the documented values', () => {
    const minutes = (field: string) =>
      parseCron(`${field} * * * *`, 'UTC')
        .between(new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T00:59:59Z'), 60)
        .map((d) => d.getUTCMinutes());
    expect(minutes('*/15')).toEqual([15, 30, 45]); // 0 is the start itself, not after it
    expect(minutes('7/20')).toEqual([7, 27, 47]);
    expect(minutes('10-20/5')).toEqual([10, 15, 20]);
    expect(minutes('58-59,1,3-4')).toEqual([1, 3, 4, 58, 59]);
    expect(minutes('59')).toEqual([59]);
    const weekdays = (field: string) =>
      parseCron(`0 0 * * ${field}`, 'UTC')
        .between(new Date('2026-01-03T12:00:00Z'), new Date('2026-01-10T12:00:00Z'), 10)
        .map((d) => d.getUTCDay());
    expect(weekdays('*')).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(weekdays('SAT,sun')).toEqual([0, 6]);
    expect(weekdays('7')).toEqual([0]);
    expect(weekdays('5-7')).toEqual([0, 5, 6]);
    expect(weekdays('*/3')).toEqual([0, 3, 6]);
    expect(weekdays('1/3')).toEqual([0, 1, 4]); // a/n runs to 7, which is Sunday
    const months = parseCron('0 0 1 */5 *', 'UTC').between(new Date('2026-01-01T12:00:00Z'), new Date('2027-01-02T00:00:00Z'), 10);
    expect(months.map((d) => d.getUTCMonth() + 1)).toEqual([6, 11, 1]);
    // Only day of month restricted (day of week '*'): the days of month alone; '*/1' counts as restricted.
    expect(parseCron('0 0 13 * *', 'UTC').next(new Date('2026-01-01T00:00:00Z')).toISOString()).toBe('2026-01-13T00:00:00.000Z');
    expect(parseCron('0 0 13 * */1', 'UTC').next(new Date('2026-01-01T00:00:00Z')).toISOString()).toBe('2026-01-02T00:00:00.000Z');
    expect(parseCron('0 0 13 * FRI', 'UTC').next(new Date('2026-01-01T00:00:00Z')).toISOString()).toBe('2026-01-02T00:00:00.000Z');
    expect(parseCron('0 0 */1 * FRI', 'UTC').next(new Date('2026-01-03T00:00:00Z')).toISOString()).toBe('2026-01-04T00:00:00.000Z');
    expect(parseCron('0 0 * * FRI', 'UTC').next(new Date('2026-01-03T00:00:00Z')).toISOString()).toBe('2026-01-09T00:00:00.000Z');
  });
});

/*
 * Month-end and nth-weekday modifiers (L, L-n, LW, nW in day of month; xL, x#n in day of week).
 * Every expected date below was read off a printed calendar, not computed by cron.ts:
 * 2024 is a leap year (February 29 is a Thursday); in 2026 January 31 and February 28 are
 * Saturdays, February 1, March 1, March 15, May 31 and November 1 Sundays, August 1 and 15
 * Saturdays; in 2025 February 1 and March 1 are Saturdays.
 */
describe('cron month-end and nth-weekday modifiers', () => {
  const iso = (dates: Date[]) => dates.map((d) => d.toISOString());
  const fires = (expression: string, zone: string, from: string, limit: number, to = '2100-01-01T00:00:00Z') =>
    iso(parseCron(expression, zone).between(new Date(from), new Date(to), limit));
  const days = (expression: string, from: string, limit: number, to?: string) => fires(expression, 'UTC', from, limit, to).map((t) => t.slice(0, 10));

  test.each([
    // [expression, from (UTC), how many, expected days]
    // L: the last day — 29 February in a leap year, 28 otherwise, and 30/31 by month.
    ['0 0 L * *', '2024-01-15T00:00:00Z', 4, ['2024-01-31', '2024-02-29', '2024-03-31', '2024-04-30']],
    ['0 0 L 2 *', '2023-01-01T00:00:00Z', 3, ['2023-02-28', '2024-02-29', '2025-02-28']],
    ['0 0 l 2 *', '2023-01-01T00:00:00Z', 1, ['2023-02-28']],
    // L-n: n days before the last day; a month too short for it has no tick.
    ['0 0 L-2 * *', '2025-01-01T00:00:00Z', 4, ['2025-01-29', '2025-02-26', '2025-03-29', '2025-04-28']],
    ['0 0 L-2 2 *', '2024-01-01T00:00:00Z', 2, ['2024-02-27', '2025-02-26']],
    ['0 0 L-0 4 *', '2026-01-01T00:00:00Z', 1, ['2026-04-30']],
    ['0 0 L-30 * *', '2025-12-31T12:00:00Z', 7, ['2026-01-01', '2026-03-01', '2026-05-01', '2026-07-01', '2026-08-01', '2026-10-01', '2026-12-01']],
    ['0 0 L-28 2 *', '2023-06-01T00:00:00Z', 2, ['2024-02-01', '2028-02-01']], // 1 February only when it has 29 days
    // LW: the last weekday — Saturday the 31st and Saturday the 28th move to Friday, Sunday the 31st to Friday the 29th.
    ['0 0 LW * *', '2026-01-01T00:00:00Z', 5, ['2026-01-30', '2026-02-27', '2026-03-31', '2026-04-30', '2026-05-29']],
    // nW: the nearest weekday to day n, within the month.
    ['0 0 15W * *', '2026-01-01T00:00:00Z', 4, ['2026-01-15', '2026-02-16', '2026-03-16', '2026-04-15']],
    ['0 0 15W 8 *', '2026-01-01T00:00:00Z', 1, ['2026-08-14']], // Saturday → the Friday before
    // Saturday the 1st → Monday the 3rd (never Friday the 31st of the month before); Sunday the 1st → Monday the 2nd.
    ['0 0 1W * *', '2025-01-15T00:00:00Z', 3, ['2025-02-03', '2025-03-03', '2025-04-01']],
    ['0 0 1W 2,8,11 *', '2026-01-01T00:00:00Z', 3, ['2026-02-02', '2026-08-03', '2026-11-02']],
    // 31W: only months with a 31st; Saturday the 31st → Friday, Sunday the 31st (the last day) → Friday the 29th.
    ['0 0 31W * *', '2026-01-01T00:00:00Z', 4, ['2026-01-30', '2026-03-31', '2026-05-29', '2026-07-31']],
    ['0 0 1W,15W * *', '2026-01-16T00:00:00Z', 3, ['2026-02-02', '2026-02-16', '2026-03-02']],
    // xL: the last x-day of the month, by number or name, 7 being Sunday as 0 is.
    ['0 0 * * 5L', '2026-01-01T00:00:00Z', 5, ['2026-01-30', '2026-02-27', '2026-03-27', '2026-04-24', '2026-05-29']],
    ['0 0 * * FRIL', '2026-01-01T00:00:00Z', 2, ['2026-01-30', '2026-02-27']],
    ['0 0 * * 7L', '2026-01-01T00:00:00Z', 2, ['2026-01-25', '2026-02-22']],
    // x#n: the nth x-day.
    ['0 0 * * 5#3', '2026-01-01T00:00:00Z', 4, ['2026-01-16', '2026-02-20', '2026-03-20', '2026-04-17']],
    ['0 0 * * MON#1', '2026-01-01T00:00:00Z', 4, ['2026-01-05', '2026-02-02', '2026-03-02', '2026-04-06']],
    ['0 0 * * mon#1,fri#3', '2026-01-01T00:00:00Z', 4, ['2026-01-05', '2026-01-16', '2026-02-02', '2026-02-20']],
    // #5 in months with only four: no tick (2026: five Mondays only in March, June, August, November).
    ['0 0 * * MON#5', '2026-01-01T00:00:00Z', 4, ['2026-03-30', '2026-06-29', '2026-08-31', '2026-11-30']],
    ['0 0 * * THU#5', '2024-01-15T00:00:00Z', 2, ['2024-02-29', '2024-05-30']], // leap February has five Thursdays
    ['0 0 * * THU#5', '2025-02-01T00:00:00Z', 1, ['2025-05-29']], // ordinary February, March, April have four
  ] as const)('%s from %s', (expression, from, limit, expected) => {
    expect(days(expression, from, limit)).toEqual(expected);
  });

  test('day of month OR day of week when both are restricted (Vixie, croner default), AND when one is *', () => {
    // The last day OR any Friday.
    expect(days('0 0 L * FRI', '2026-01-01T00:00:00Z', 10, '2026-02-01T00:00:00Z')).toEqual(['2026-01-02', '2026-01-09', '2026-01-16', '2026-01-23', '2026-01-30', '2026-01-31']);
    // The weekday nearest the 15th OR the first Monday.
    expect(days('0 0 15W * MON#1', '2026-02-01T00:00:00Z', 4)).toEqual(['2026-02-02', '2026-02-16', '2026-03-02', '2026-03-16']);
    // The last day OR the last Friday.
    expect(days('0 0 L * 5L', '2026-01-01T00:00:00Z', 4)).toEqual(['2026-01-30', '2026-01-31', '2026-02-27', '2026-02-28']);
    // A plain day of week with a plain day of month, as before.
    expect(days('0 0 1 * MON#2', '2026-01-01T00:00:00Z', 4)).toEqual(['2026-01-12', '2026-02-01', '2026-02-09', '2026-03-01']);
    // '*/1' counts as restricted, so it ORs too: every day.
    expect(days('0 0 L * */1', '2026-01-01T00:00:00Z', 2)).toEqual(['2026-01-02', '2026-01-03']);
  });

  test('wall-clock dates are in the time zone: the last day, nth weekday and nearest weekday are local days', () => {
    // 18:00 on the last day in New York: EST (UTC−5) in January and February, EDT (UTC−4) in March.
    expect(fires('0 18 L * *', 'America/New_York', '2026-01-01T00:00:00Z', 3)).toEqual(['2026-01-31T23:00:00.000Z', '2026-02-28T23:00:00.000Z', '2026-03-31T22:00:00.000Z']);
    // 01:00 on the last day in Tokyo (UTC+9) is still the day before in UTC.
    expect(fires('0 1 L * *', 'Asia/Tokyo', '2026-01-01T00:00:00Z', 2)).toEqual(['2026-01-30T16:00:00.000Z', '2026-02-27T16:00:00.000Z']);
    // 23:30 on the last day in Honolulu (UTC−10) is the 1st of the next month in UTC; the start,
    // 1 January 00:00Z, is still 31 December 14:00 there.
    expect(fires('30 23 L * *', 'Pacific/Honolulu', '2026-01-01T00:00:00Z', 2)).toEqual(['2026-01-01T09:30:00.000Z', '2026-02-01T09:30:00.000Z']);
    // 09:00 on the first Monday in Auckland (NZDT, UTC+13): Monday 2 February is Sunday 1 February in UTC.
    expect(fires('0 9 * * MON#1', 'Pacific/Auckland', '2026-01-15T00:00:00Z', 1)).toEqual(['2026-02-01T20:00:00.000Z']);
    // The last weekday at 17:00 in Berlin (CET, UTC+1): Saturday 31 January → Friday 30 January.
    expect(fires('0 17 LW 1 *', 'Europe/Berlin', '2026-01-01T00:00:00Z', 1)).toEqual(['2026-01-30T16:00:00.000Z']);
  });

  test('DST days keep the DST policy: the EU switches on the last Sunday, New York on the 2nd Sunday of March and the 1st of November', () => {
    // Berlin, last Sunday of March (29 March 2026, 28 March 2027): 02:30 does not exist, fires at 03:30 CEST.
    expect(fires('30 2 * 3 SUNL', 'Europe/Berlin', '2026-01-01T00:00:00Z', 2)).toEqual(['2026-03-29T01:30:00.000Z', '2027-03-28T01:30:00.000Z']);
    // Berlin, last Sunday of October (25 October 2026): 02:30 happens twice, fires at the first (CEST, 00:30Z).
    expect(fires('30 2 * 10 SUNL', 'Europe/Berlin', '2026-10-01T00:00:00Z', 1)).toEqual(['2026-10-25T00:30:00.000Z']);
    // New York, 2nd Sunday of March (8 March 2026): 02:30 → 03:30 EDT.
    expect(fires('30 2 * 3 SUN#2', 'America/New_York', '2026-01-01T00:00:00Z', 1)).toEqual(['2026-03-08T07:30:00.000Z']);
    // New York, 1st Sunday of November (1 November 2026): 01:00 and 01:30 once each, in EDT.
    expect(fires('0,30 1 * 11 SUN#1', 'America/New_York', '2026-10-31T00:00:00Z', 5, '2026-11-02T00:00:00Z')).toEqual(['2026-11-01T05:00:00.000Z', '2026-11-01T05:30:00.000Z']);
    // A 6-field month-end job on the spring-forward day: 02:00:10 on Sunday 29 March (the last day is the 31st, so L-2) fires at 03:00:10.
    expect(fires('10 0 2 L-2 3 *', 'Europe/Berlin', '2026-03-01T00:00:00Z', 1)).toEqual(['2026-03-29T01:00:10.000Z']);
  });

  test('modifiers in the wrong place or out of range are refused with a reason', () => {
    const message = (expression: string) => {
      try {
        parseCron(expression, 'UTC');
      } catch (error) {
        expect(error).toBeInstanceOf(CronError);
        return (error as Error).message;
      }
      return 'accepted';
    };
    const cases: Array<[string, string]> = [
      ['L * * * *', 'minute: "L": L, W and # are allowed only in day of month and day of week'],
      ['L * * * * *', 'second: "L": L, W and # are allowed only in day of month and day of week'],
      ['* 5L * * *', 'hour: "5L": L, W and # are allowed only in day of month and day of week'],
      ['* * * 1#2 *', 'month: "1#2": L, W and # are allowed only in day of month and day of week'],
      ['* * * JULL *', 'month: "JULL": L, W and # are allowed only in day of month and day of week'],
      ['* * * 15W *', 'month: "15W": L, W and # are allowed only in day of month and day of week'],
      ['* * 0W * *', 'day of month: 0 is outside 1–31'],
      ['* * 32W * *', 'day of month: 32 is outside 1–31'],
      ['* * L-31 * *', 'day of month: offset 31 in "L-31" is outside 0–30'],
      ['* * 1,L-99 * *', 'day of month: offset 99 in "L-99" is outside 0–30'],
      ['* * 5#2 * *', 'day of month: "5#2": # is allowed only in day of week'],
      ['* * L-2W * *', 'day of month: "L-2W" is not a value, range, step, *, L, L-n, LW or nW'],
      ['* * 1-15W * *', 'day of month: "1-15W" is not a value, range, step, *, L, L-n, LW or nW'],
      ['* * 15W/2 * *', 'day of month: "15W/2" is not a value, range, step, *, L, L-n, LW or nW'],
      ['* * L/2 * *', 'day of month: "L/2" is not a value, range, step, *, L, L-n, LW or nW'],
      ['* * 1-L * *', 'day of month: "1-L" is not a value, range, step, *, L, L-n, LW or nW'],
      ['* * W * *', 'day of month: "W" is not a value, range, step, *, L, L-n, LW or nW'],
      ['* * L- * *', 'day of month: "L-" is not a value, range, step, *, L, L-n, LW or nW'],
      ['* * 100W * *', 'day of month: "100W" is not a value, range, step, *, L, L-n, LW or nW'],
      ['* * * * 5#6', 'day of week: nth 6 in "5#6" is outside 1–5'],
      ['* * * * MON#0', 'day of week: nth 0 in "MON#0" is outside 1–5'],
      ['* * * * 5W', 'day of week: "5W": W is allowed only in day of month'],
      ['* * * * L', 'day of week: "L" needs a day before it (5L is the last Friday of the month)'],
      ['* * * * 5#L', 'day of week: "5#L" is not a value, range, step, *, xL or x#n'],
      ['* * * * 1-5#2', 'day of week: "1-5#2" is not a value, range, step, *, xL or x#n'],
      ['* * * * MON-FRIL', 'day of week: "MON-FRIL" is not a value, range, step, *, xL or x#n'],
      ['* * * * 5L/2', 'day of week: "5L/2" is not a value, range, step, *, xL or x#n'],
      ['* * * * 5#', 'day of week: "5#" is not a value, range, step, *, xL or x#n'],
      ['* * * * 8L', 'day of week: 8 is outside 0–7'],
      ['* * * * 8#1', 'day of week: 8 is outside 0–7'],
      ['* * * * FUNL', 'day of week: "FUN" is not a number or name'],
      // Never fires: a 30- or 31-day offset or nearest weekday February never reaches.
      ['* * L-29 2 *', 'day of month never occurs in the given months'],
      ['* * 30W 2 *', 'day of month never occurs in the given months'],
      ['* * 31W 4,6,9,11 *', 'day of month never occurs in the given months'],
      ['* * L-30 4,6 *', 'day of month never occurs in the given months'],
    ];
    expect(cases.map(([expression]) => [expression, message(expression)])).toEqual(cases);
    // The schedule API tells a bad zone from a bad cron by "time zone" in the message.
    for (const [, text] of cases) expect(text).not.toMatch(/time zone/);
    for (const ok of ['0 0 L * *', '0 0 l-0 * *', '0 0 L-30 1 *', '0 0 L-28 2 *', '0 0 LW,L,1W,15 * *', '0 0 31W 4,5 *', '0 0 29W 2 *', '0 0 * * 0L,7#5,SAT#1,wedl', '0 0 L * MON#1', '0 0 * JUL WEDL']) {
      expect([ok, message(ok)]).toEqual([ok, 'accepted']);
    }
  });
});
