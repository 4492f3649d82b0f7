/**
 * Cron expressions with IANA time zones (docs/capabilities/scheduler.md#cron), written here so the DST rules are ours and
 * documented:
 *
 *   [second] minute hour day-of-month month day-of-week
 *
 * Five fields, or six with a leading seconds field. Each field: `*`, a value, a range `a-b`, a
 * step `*​/n` or `a-b/n` or `a/n`, or a comma list of those. Months accept JAN–DEC, days of week
 * SUN–SAT (0 and 7 are Sunday).
 *
 * Month-end and nth-weekday schedules (Quartz's modifiers, as croner reads them), each a list
 * item of its own — never inside a range or step:
 * - day of month `L`: the month's last day; `L-n` (n 0–30): n days before it — a month too
 *   short for it (L-30 in February) has no tick;
 * - day of month `nW` (n 1–31): the weekday (Monday–Friday) nearest to day n within the same
 *   month: a Saturday moves to the Friday before, a Sunday to the Monday after — except that a
 *   Saturday the 1st moves to Monday the 3rd and a Sunday that is the month's last day to the
 *   Friday before, since W never leaves the month; a month without day n (31W in April) has no
 *   tick; `LW` is the month's last weekday;
 * - day of week `xL` (`5L`, `FRIL`): the month's last x-day; `x#n` (n 1–5; `MON#1`, `5#3`):
 *   its nth x-day — a month with only four has no tick for `#5`.
 *
 * When both day of month and day of week are restricted (anything but a bare `*`), a day
 * matching either fires (Vixie cron), and the modifiers are values like any other: `L * FRI`
 * fires on the last day and on every Friday, `15W * MON#1` on either. This is croner's default
 * (`domAndDow: false`, formerly `legacyMode: true`); Quartz instead requires one of the two
 * to be `?`.
 *
 * Times are wall-clock times in the schedule's time zone:
 * - a wall-clock time that does not exist (the spring-forward gap) fires at the instant the
 *   clock reads that time shifted forward by the gap (02:30 in a 02:00→03:00 gap fires at
 *   03:30), and a tick shifted onto an instant that already fires fires once;
 * - a wall-clock time that occurs twice (the fall-back overlap) fires once, at its first
 *   occurrence.
 */

export class CronError extends Error {
  override readonly name = 'CronError';
}

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: Record<string, number>;
}

const MONTH_NAMES = { JAN: 1, FEB: 2, MAR: 3, APR: 4, MAY: 5, JUN: 6, JUL: 7, AUG: 8, SEP: 9, OCT: 10, NOV: 11, DEC: 12 };
const DAY_NAMES = { SUN: 0, MON: 1, TUE: 2, WED: 3, THU: 4, FRI: 5, SAT: 6 };

const FIELDS: Record<'second' | 'minute' | 'hour' | 'dom' | 'month' | 'dow', FieldSpec> = {
  second: { name: 'second', min: 0, max: 59 },
  minute: { name: 'minute', min: 0, max: 59 },
  hour: { name: 'hour', min: 0, max: 23 },
  dom: { name: 'day of month', min: 1, max: 31 },
  month: { name: 'month', min: 1, max: 12, names: MONTH_NAMES },
  dow: { name: 'day of week', min: 0, max: 7, names: DAY_NAMES },
};

export interface CronSchedule {
  readonly expression: string;
  readonly timeZone: string;
  readonly hasSeconds: boolean;
  /** The first fire time strictly after `after`. */
  next(after: Date): Date;
  /** Fire times in (from, to], at most `limit`. */
  between(from: Date, to: Date, limit: number): Date[];
}

/** The day rules that depend on the month, not on the day's number or weekday alone. */
interface DayModifiers {
  /** `L` (0) and `L-n` (n): the day n days before the month's last. */
  lastMinus: Set<number>;
  /** `nW`: the weekday nearest to day n within the month. */
  nearestWeekday: Set<number>;
  /** `LW`: the month's last weekday. */
  lastWeekday: boolean;
  /** `xL`: the month's last x-day (x 0–6). */
  lastOf: Set<number>;
  /** `x#n` as "x#n" (x 0–6, n 1–5): the month's nth x-day. */
  nth: Set<string>;
}

interface Fields {
  second: Set<number>;
  minute: Set<number>;
  hour: Set<number>;
  dom: Set<number>;
  month: Set<number>;
  dow: Set<number>;
  days: DayModifiers;
  domRestricted: boolean;
  dowRestricted: boolean;
}

function parseValue(text: string, spec: FieldSpec): number {
  const named = spec.names?.[text.toUpperCase()];
  if (named !== undefined) return named;
  if (!/^\d{1,2}$/.test(text)) throw new CronError(`${spec.name}: "${text}" is not a number${spec.names ? ' or name' : ''}`);
  const value = Number(text);
  if (value < spec.min || value > spec.max) throw new CronError(`${spec.name}: ${value} is outside ${spec.min}–${spec.max}`);
  return value;
}

/**
 * Parses one field. `modifier` takes the list items that carry L, W or # (day of month and day of
 * week); in any other field those letters are refused by name, not as "not a number", so that a
 * Quartz expression pasted into the wrong field says what is wrong.
 */
function parseField(text: string, spec: FieldSpec, modifier?: (part: string) => void): { values: Set<number>; restricted: boolean } {
  const values = new Set<number>();
  let restricted = true;
  for (const part of text.split(',')) {
    // This field's names are taken out first: JUL holds an L and WED a W.
    const bare = part.toUpperCase().replace(/[A-Z]{3}/g, (word) => (spec.names?.[word] !== undefined ? '' : word));
    if (/[LW#]/.test(bare)) {
      if (!modifier) throw new CronError(`${spec.name}: "${part}": L, W and # are allowed only in day of month and day of week`);
      modifier(part);
      continue;
    }
    const match = /^(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:\/(\d{1,2}))?$/.exec(part);
    if (!match) throw new CronError(`${spec.name}: "${part}" is not a value, range, step or *`);
    const [, range, stepText] = match;
    const step = stepText === undefined ? 1 : Number(stepText);
    if (step < 1 || step > spec.max) throw new CronError(`${spec.name}: step ${stepText} must be 1–${spec.max}`);
    let low: number;
    let high: number;
    if (range === '*') {
      [low, high] = [spec.min, spec.max];
      if (step === 1 && text === '*') restricted = false;
    } else if (range.includes('-')) {
      const [a, b] = range.split('-');
      [low, high] = [parseValue(a, spec), parseValue(b, spec)];
      if (low > high) throw new CronError(`${spec.name}: range ${range} runs backwards`);
    } else {
      low = parseValue(range, spec);
      high = stepText === undefined ? low : spec.max;
    }
    for (let v = low; v <= high; v += step) values.add(v);
  }
  return { values, restricted };
}

/** Day-of-month items with L or W: `L`, `L-n`, `LW`, `nW`. */
function dayOfMonthModifier(days: DayModifiers): (part: string) => void {
  const spec = FIELDS.dom;
  return (part) => {
    const upper = part.toUpperCase();
    if (upper.includes('#')) throw new CronError(`${spec.name}: "${part}": # is allowed only in day of week`);
    const offset = /^L-(\d{1,2})$/.exec(upper);
    const nearest = /^(\d{1,2})W$/.exec(upper);
    if (upper === 'L') days.lastMinus.add(0);
    else if (upper === 'LW') days.lastWeekday = true;
    else if (offset) {
      const n = Number(offset[1]);
      if (n > 30) throw new CronError(`${spec.name}: offset ${n} in "${part}" is outside 0–30`);
      days.lastMinus.add(n);
    } else if (nearest) days.nearestWeekday.add(parseValue(nearest[1], spec));
    else throw new CronError(`${spec.name}: "${part}" is not a value, range, step, *, L, L-n, LW or nW`);
  };
}

/** Day-of-week items with L or #: `xL`, `x#n` (x a number or name). */
function dayOfWeekModifier(days: DayModifiers): (part: string) => void {
  const spec = FIELDS.dow;
  return (part) => {
    const upper = part.toUpperCase();
    if (upper.replace(/WED/g, '').includes('W')) throw new CronError(`${spec.name}: "${part}": W is allowed only in day of month`);
    // Quartz reads a bare L here as Saturday, croner refuses it: neither reading is guessed.
    if (upper === 'L') throw new CronError(`${spec.name}: "L" needs a day before it (5L is the last Friday of the month)`);
    const last = /^([A-Z0-9]+)L$/.exec(upper);
    const nth = /^([A-Z0-9]+)#(\d{1,2})$/.exec(upper);
    if (last) days.lastOf.add(parseValue(last[1], spec) % 7);
    else if (nth) {
      const n = Number(nth[2]);
      if (n < 1 || n > 5) throw new CronError(`${spec.name}: nth ${n} in "${part}" is outside 1–5`);
      days.nth.add(`${parseValue(nth[1], spec) % 7}#${n}`);
    } else throw new CronError(`${spec.name}: "${part}" is not a value, range, step, *, xL or x#n`);
  };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Whether `zone` is an IANA time zone this runtime knows. */
export function isKnownTimeZone(zone: string): boolean {
  if (typeof zone !== 'string' || zone.length === 0 || zone.length > 64) return false;
  try {
    formatter(zone);
    return true;
  } catch {
    return false;
  }
}

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(zone, f);
  }
  return f;
}

/** The zone's UTC offset (ms) at instant `ms`. */
function offsetAt(zone: string, ms: number): number {
  const parts: Record<string, number> = {};
  for (const p of formatter(zone).formatToParts(new Date(ms))) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  const wall = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second);
  return wall - Math.floor(ms / 1000) * 1000;
}

/** Instants (ascending) at which the zone's clock reads `wall` (wall-clock fields as a UTC ms). Empty in a gap. */
function instantsOf(zone: string, wall: number): number[] {
  const offsets = new Set([offsetAt(zone, wall - 86_400_000), offsetAt(zone, wall), offsetAt(zone, wall + 86_400_000)]);
  const found = [...offsets].map((o) => wall - o).filter((i) => offsetAt(zone, i) === wall - i);
  return [...new Set(found)].sort((a, b) => a - b);
}

/** Parses a cron expression for a time zone; throws CronError on a bad expression or unknown zone. */
export function parseCron(expression: string, timeZone: string): CronSchedule {
  if (typeof expression !== 'string' || expression.length > 200) throw new CronError('expression must be at most 200 characters');
  if (!isKnownTimeZone(timeZone)) throw new CronError(`unknown IANA time zone "${timeZone}"`);
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== 5 && parts.length !== 6) throw new CronError(`expected 5 or 6 fields, got ${parts.length}`);
  const hasSeconds = parts.length === 6;
  const [sec, min, hour, dom, month, dow] = hasSeconds ? parts : ['0', ...parts];
  const days: DayModifiers = { lastMinus: new Set(), nearestWeekday: new Set(), lastWeekday: false, lastOf: new Set(), nth: new Set() };
  const domField = parseField(dom, FIELDS.dom, dayOfMonthModifier(days));
  const dowField = parseField(dow, FIELDS.dow, dayOfWeekModifier(days));
  if (dowField.values.has(7)) dowField.values.add(0);
  const fields: Fields = {
    second: parseField(sec, FIELDS.second).values,
    minute: parseField(min, FIELDS.minute).values,
    hour: parseField(hour, FIELDS.hour).values,
    dom: domField.values,
    month: parseField(month, FIELDS.month).values,
    dow: dowField.values,
    days,
    domRestricted: domField.restricted,
    dowRestricted: dowField.restricted,
  };
  // An expression that can never fire (e.g. 30 February, L-30 in February) is refused up front;
  // month lengths of a leap year, since 29 February does occur.
  const occursIn = (month: number) => {
    const length = daysIn(2024, month);
    return (
      [...fields.dom, ...days.nearestWeekday].some((d) => d <= length) || days.lastWeekday || [...days.lastMinus].some((n) => n < length)
    );
  };
  if (![...fields.month].some(occursIn) && fields.domRestricted && !fields.dowRestricted) {
    throw new CronError('day of month never occurs in the given months');
  }

  const schedule: CronSchedule = {
    expression,
    timeZone,
    hasSeconds,
    next(after: Date) {
      const t = after.getTime();
      if (!Number.isFinite(t)) throw new CronError('invalid start time');
      // Walk wall-clock matches from the current wall time — from earlier when the clock fell
      // back within the last hours (walls of the repeated span that already fired are passed
      // over below, since their first instant is not after t).
      const now = offsetAt(timeZone, t);
      const lookback = Math.max(0, offsetAt(timeZone, t - 6 * 3600_000) - now);
      let wall = nextWall(fields, Math.floor((t + now) / 1000) * 1000 - lookback - 1000);
      for (let guard = 0; guard < 1_000_000; guard += 1) {
        if (wall === undefined) break;
        const instants = instantsOf(timeZone, wall);
        // A nonexistent wall time fires shifted forward by the gap (the offset before it).
        const instant = instants.length > 0 ? instants[0] : wall - offsetAt(timeZone, wall - 86_400_000);
        if (instant > t) return new Date(instant);
        wall = nextWall(fields, wall);
      }
      throw new CronError(`"${expression}" has no fire time within the next years`);
    },
    between(from: Date, to: Date, limit: number) {
      const out: Date[] = [];
      let t = from;
      while (out.length < limit) {
        const n = schedule.next(t);
        if (n.getTime() > to.getTime()) break;
        out.push(n);
        t = n;
      }
      return out;
    },
  };
  schedule.next(new Date());
  return schedule;
}

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** Day of week (0 = Sunday) of a date. */
function weekdayOf(year: number, month: number, day: number): number {
  return new Date(Date.UTC(year, month - 1, day)).getUTCDay();
}

/**
 * The weekday nearest to day `n` of the month, never leaving the month (Quartz's `nW`): a
 * Saturday moves back to Friday unless it is the 1st (then forward to Monday the 3rd), a Sunday
 * forward to Monday unless it is the last day (then back to Friday). Undefined when the month
 * has no day n.
 */
function nearestWeekday(year: number, month: number, n: number): number | undefined {
  const length = daysIn(year, month);
  if (n > length) return undefined;
  const weekday = weekdayOf(year, month, n);
  if (weekday === 6) return n === 1 ? 3 : n - 1;
  if (weekday === 0) return n === length ? n - 2 : n + 1;
  return n;
}

/** Whether a date matches the day-of-month field (values and L / L-n / nW / LW). */
function dayOfMonthMatches(f: Fields, year: number, month: number, day: number): boolean {
  if (f.dom.has(day)) return true;
  const { lastMinus, nearestWeekday: nearest, lastWeekday } = f.days;
  if (lastMinus.size === 0 && nearest.size === 0 && !lastWeekday) return false;
  const length = daysIn(year, month);
  if (lastMinus.has(length - day)) return true;
  if (lastWeekday && nearestWeekday(year, month, length) === day) return true;
  for (const n of nearest) if (nearestWeekday(year, month, n) === day) return true;
  return false;
}

/** Whether a date matches the day-of-week field (values and xL / x#n). */
function dayOfWeekMatches(f: Fields, year: number, month: number, day: number, weekday: number): boolean {
  if (f.dow.has(weekday)) return true;
  // The nth x-day of a month falls on days 7(n-1)+1 … 7n; the last one within 7 days of the end.
  if (f.days.nth.has(`${weekday}#${Math.ceil(day / 7)}`)) return true;
  return f.days.lastOf.has(weekday) && day + 7 > daysIn(year, month);
}

/** The first wall-clock time (as UTC ms) strictly after `wall` matching the fields; undefined past ~5 years. */
function nextWall(f: Fields, wall: number): number | undefined {
  let d = new Date(Math.floor(wall / 1000) * 1000 + 1000);
  const limit = wall + 5 * 366 * 86_400_000;
  while (d.getTime() <= limit) {
    if (!f.month.has(d.getUTCMonth() + 1)) {
      d = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1));
      continue;
    }
    const [year, month, day] = [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate()];
    const domOk = dayOfMonthMatches(f, year, month, day);
    const dowOk = dayOfWeekMatches(f, year, month, day, d.getUTCDay());
    const dayOk = f.domRestricted && f.dowRestricted ? domOk || dowOk : domOk && dowOk;
    if (!dayOk) {
      d = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1));
      continue;
    }
    if (!f.hour.has(d.getUTCHours())) {
      d = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours() + 1));
      continue;
    }
    if (!f.minute.has(d.getUTCMinutes())) {
      d = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes() + 1));
      continue;
    }
    if (!f.second.has(d.getUTCSeconds())) {
      d = new Date(d.getTime() + 1000);
      continue;
    }
    return d.getTime();
  }
  return undefined;
}
