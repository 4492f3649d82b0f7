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

  test('bad expressions and zones are refused with a reason', () => {
    for (const bad of ['', '* * *', '* * * * * * *', '61 * * * *', '* 24 * * *', '* * 0 * *', '* * * 13 *', '* * * * 8', 'x * * * *', '*/0 * * * *', '5-1 * * * *', '* * 30 2 *', '1,,2 * * * *', 'a'.repeat(201)]) {
      expect(() => parseCron(bad, 'UTC')).toThrow(CronError);
    }
    for (const zone of ['', 'Mars/Olympus', 'UTC+25', 'Europe/Berlin\u0000', 'x'.repeat(100)]) {
      expect(isKnownTimeZone(zone)).toBe(false);
      expect(() => parseCron('* * * * *', zone)).toThrow(CronError);
    }
  });
});
