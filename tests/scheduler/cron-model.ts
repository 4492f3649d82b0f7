import * as fc from 'fast-check';

/*
 * A model of the kernel's cron grammar for the tests: random expressions built from parts whose
 * meaning is known when they are generated, so that "does this wall-clock time match?" is
 * answered without parsing the text and without cron.ts. Each expression also carries croner's
 * spelling of the same schedule, or none where croner (11) cannot read it: `L-n`, and `LW`
 * inside a list. The calendar math is written differently from cron.ts on purpose: month
 * lengths from a table and the leap rule, weekdays by Sakamoto's formula, and the modifiers by
 * their definitions (the nearest weekday is the closest one, the nth x-day is counted, the last
 * one has no later x-day in its month).
 */

export const isLeapYear = (year: number) => (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
export const monthLength = (year: number, month: number) => [31, isLeapYear(year) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
/** 0 = Sunday (Sakamoto). */
export function weekdayOf(year: number, month: number, day: number): number {
  const y = month < 3 ? year - 1 : year;
  return (y + Math.floor(y / 4) - Math.floor(y / 100) + Math.floor(y / 400) + [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4][month - 1] + day) % 7;
}
const isWeekday = (year: number, month: number, day: number) => weekdayOf(year, month, day) % 6 !== 0;

/** A calendar day with what the day fields look at. */
export interface CalendarDay {
  year: number;
  month: number;
  day: number;
}

/** One field: its text for the kernel and for croner (undefined: croner cannot read it), and its meaning. */
export interface FieldModel {
  kernel: string;
  croner: string | undefined;
  /** A value of the field (for day of week: the weekday) matches, on that day. */
  matches: (value: number, on: CalendarDay) => boolean;
}

export interface ExpressionModel {
  kernel: string;
  croner: string | undefined;
  second: FieldModel;
  minute: FieldModel;
  hour: FieldModel;
  dom: FieldModel;
  month: FieldModel;
  dow: FieldModel;
}

// ---- the modifiers, by definition ----------------------------------------------------------
/** The weekday of the month closest to day n (no ties can occur); undefined if the month has no day n. */
export function nearestWeekdayTo(year: number, month: number, n: number): number | undefined {
  const length = monthLength(year, month);
  if (n > length) return undefined;
  let best: number | undefined;
  for (let k = 1; k <= length; k += 1) if (isWeekday(year, month, k) && (best === undefined || Math.abs(k - n) < Math.abs(best - n))) best = k;
  return best;
}
export function lastWeekdayOf(year: number, month: number): number {
  let k = monthLength(year, month);
  while (!isWeekday(year, month, k)) k -= 1;
  return k;
}
/** Which occurrence of its weekday in its month a day is (1 = the first). */
export function occurrenceOf({ year, month, day }: CalendarDay): number {
  let count = 0;
  for (let k = 1; k <= day; k += 1) if (weekdayOf(year, month, k) === weekdayOf(year, month, day)) count += 1;
  return count;
}
export function isLastOccurrence({ year, month, day }: CalendarDay): boolean {
  for (let k = day + 1; k <= monthLength(year, month); k += 1) if (weekdayOf(year, month, k) === weekdayOf(year, month, day)) return false;
  return true;
}

// ---- generators ------------------------------------------------------------------------------
const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

/** A list item: its texts and the values it stands for (for the plain grammar), or its own test (modifiers). */
interface Part {
  kernel: string;
  croner: string | undefined;
  values?: Set<number>;
  test?: (on: CalendarDay) => boolean;
}
const span = (from: number, to: number, step = 1) => {
  const out = new Set<number>();
  for (let v = from; v <= to; v += step) out.add(v);
  return out;
};
/** Random letter case: the kernel reads names and modifiers case-insensitively. */
const anyCase = (text: string) => fc.constantFrom(text, text.toLowerCase());

/**
 * Plain list items (value, range, steps) of a field min–max. Day of week differs for croner in
 * two ways, so croner is given numbers and `a-7/n`: a range ending in the name SUN ends at 7
 * there (the kernel: SUN is 0, so `0-SUN` is Sunday alone), and `a/n` stops at 6 there (the
 * kernel: at 7, the field's last value, as Vixie cron's `*` spans 0–7).
 */
function plainPart(min: number, max: number, options: { names?: string[]; namesFrom?: number; dayOfWeek?: boolean }): fc.Arbitrary<Part> {
  const { names, namesFrom = min, dayOfWeek = false } = options;
  const value = fc.integer({ min, max });
  const named = (v: number): fc.Arbitrary<{ kernel: string; croner: string }> => {
    const plain = { kernel: String(v), croner: String(v) };
    const name = names?.[v - namesFrom];
    return name ? fc.constantFrom(plain, { kernel: name, croner: dayOfWeek ? String(v) : name }) : fc.constant(plain);
  };
  const step = fc.integer({ min: 1, max: Math.min(max, 30) });
  const range = fc.tuple(value, value).chain(([a, b]) =>
    fc.tuple(named(Math.min(a, b)), named(Math.max(a, b))).map(([lo, hi]) => ({ kernel: `${lo.kernel}-${hi.kernel}`, croner: `${lo.croner}-${hi.croner}`, low: Math.min(a, b), high: Math.max(a, b) })),
  );
  return fc.oneof(
    { arbitrary: value.chain((v) => named(v).map((t) => ({ ...t, values: span(v, v) }))), weight: 4 },
    { arbitrary: range.map((r) => ({ kernel: r.kernel, croner: r.croner, values: span(r.low, r.high) })), weight: 3 },
    { arbitrary: step.map((n) => ({ kernel: `*/${n}`, croner: `*/${n}`, values: span(min, max, n) })), weight: 3 },
    { arbitrary: fc.tuple(range, step).map(([r, n]) => ({ kernel: `${r.kernel}/${n}`, croner: `${r.croner}/${n}`, values: span(r.low, r.high, n) })), weight: 2 },
    {
      arbitrary: fc
        .tuple(value, step)
        .chain(([v, n]) => named(v).map((t) => ({ kernel: `${t.kernel}/${n}`, croner: dayOfWeek ? `${t.croner}-7/${n}` : `${t.croner}/${n}`, values: span(v, max, n) }))),
      weight: 1,
    },
  );
}

/** A number from min–max, often one of `edges` (where month lengths and W's exceptions bite). */
const edgy = (min: number, max: number, edges: number[]) => fc.oneof({ arbitrary: fc.integer({ min, max }), weight: 1 }, { arbitrary: fc.constantFrom(...edges), weight: 2 });

/** Day-of-month modifiers: L, L-n, LW, nW. */
const dayOfMonthModifier: fc.Arbitrary<Part> = fc.oneof(
  fc.constant<Part>({ kernel: 'L', croner: 'L', test: ({ year, month, day }) => day === monthLength(year, month) }),
  edgy(0, 30, [0, 1, 27, 28, 29, 30]).map<Part>((n) => ({ kernel: `L-${n}`, croner: undefined, test: ({ year, month, day }) => day === monthLength(year, month) - n })),
  fc.constant<Part>({ kernel: 'LW', croner: 'LW', test: ({ year, month, day }) => day === lastWeekdayOf(year, month) }),
  edgy(1, 31, [1, 2, 28, 29, 30, 31]).map<Part>((n) => ({ kernel: `${n}W`, croner: `${n}W`, test: ({ year, month, day }) => day === nearestWeekdayTo(year, month, n) })),
);

/** Day-of-week modifiers: xL, x#n (x a number 0–7 or a name; croner is given the number). */
const dayOfWeekModifier: fc.Arbitrary<Part> = fc.integer({ min: 0, max: 7 }).chain((x) => {
  const name = x < 7 ? fc.constantFrom(String(x), DAYS[x]) : fc.constant('7');
  const sameDay = (on: CalendarDay) => weekdayOf(on.year, on.month, on.day) === x % 7;
  return fc.oneof(
    name.map<Part>((text) => ({ kernel: `${text}L`, croner: `${x}L`, test: (on) => sameDay(on) && isLastOccurrence(on) })),
    fc.tuple(name, edgy(1, 5, [4, 5])).map<Part>(([text, n]) => ({ kernel: `${text}#${n}`, croner: `${x}#${n}`, test: (on) => sameDay(on) && occurrenceOf(on) === n })),
  );
});

/** A field from its parts: `*`, one part, or a list; `modifier` adds the day modifiers as parts. */
function field(min: number, max: number, options: { names?: string[]; namesFrom?: number; dayOfWeek?: boolean; modifier?: fc.Arbitrary<Part> } = {}): fc.Arbitrary<FieldModel> {
  const plain = plainPart(min, max, options);
  const withCase = (part: Part) => anyCase(part.kernel).map((kernel) => ({ ...part, kernel }));
  const part = options.modifier ? fc.oneof({ arbitrary: plain, weight: 1 }, { arbitrary: options.modifier.chain(withCase), weight: 1 }) : plain;
  const toField = (parts: Part[]): FieldModel => {
    const dayOfWeek = options.dayOfWeek ?? false;
    return {
      kernel: parts.map((p) => p.kernel).join(','),
      // croner refuses LW in a list.
      croner: parts.every((p) => p.croner !== undefined) && !(parts.length > 1 && parts.some((p) => p.croner === 'LW')) ? parts.map((p) => p.croner).join(',') : undefined,
      matches: (value, on) =>
        parts.some((p) => (p.test ? p.test(on) : p.values!.has(value) || (dayOfWeek && value === 0 && p.values!.has(7)))),
    };
  };
  const star: FieldModel = { kernel: '*', croner: '*', matches: () => true };
  return fc.oneof(
    { arbitrary: fc.constant(star), weight: 3 },
    { arbitrary: part.map((p) => toField([p])), weight: 5 },
    { arbitrary: fc.array(part, { minLength: 2, maxLength: 3 }).map(toField), weight: 2 },
  );
}

/**
 * Random expressions of the kernel's grammar; with `modifiers`, day of month and day of week
 * also draw L, L-n, LW, nW, xL and x#n (half of their parts, when not `*`).
 */
export function expressionArb(options: { modifiers: boolean }): fc.Arbitrary<ExpressionModel> {
  return fc
    .tuple(
      fc.option(field(0, 59), { nil: undefined, freq: 3 }),
      field(0, 59),
      field(0, 23),
      field(1, 31, { modifier: options.modifiers ? dayOfMonthModifier : undefined }),
      field(1, 12, { names: MONTHS, namesFrom: 1 }),
      field(0, 7, { names: DAYS, dayOfWeek: true, modifier: options.modifiers ? dayOfWeekModifier : undefined }),
    )
    .map(([sec, minute, hour, dom, month, dow]) => {
      const fields = sec === undefined ? [minute, hour, dom, month, dow] : [sec, minute, hour, dom, month, dow];
      const croner = fields.every((f) => f.croner !== undefined) ? fields.map((f) => f.croner).join(' ') : undefined;
      const second: FieldModel = sec ?? { kernel: '0', croner: '0', matches: (v) => v === 0 };
      return { kernel: fields.map((f) => f.kernel).join(' '), croner, second, minute, hour, dom, month, dow };
    });
}

/** Start times: anywhere in 2020–2031, or within a few days of a month's end, where L, LW and W fire. */
export const startTimeArb: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2032, 0, 1) }),
  fc
    .tuple(fc.integer({ min: 2020, max: 2031 }), fc.integer({ min: 0, max: 11 }), fc.integer({ min: -4 * 86_400_000, max: 2 * 86_400_000 }))
    .map(([year, month, shift]) => Date.UTC(year, month + 1, 1) + shift),
);

/** Whether any modifier occurs in the expression. */
export const hasModifier = (e: ExpressionModel) => /[LW#]/i.test(`${e.dom.kernel} ${e.dow.kernel.toUpperCase().replace(/WED/g, '')}`);

// ---- time zones (read with Intl here, not with cron.ts) ----------------------------------------
const formatters = new Map<string, Intl.DateTimeFormat>();
/** The zone's UTC offset at an instant (minutes). */
export function offsetMinutes(zone: string, ms: number): number {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    formatters.set(zone, f);
  }
  const p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, Number(x.value)]));
  return (Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000) / 60_000;
}
/**
 * Whether the offset stays the same from `from` to `to`, checked every `stepMs` (15 minutes by
 * default). A DST offset lasts for months, so a window of months may be checked daily: only a
 * change undone within the step could slip through.
 */
export function offsetConstant(zone: string, from: number, to: number, stepMs = 15 * 60_000): boolean {
  const first = offsetMinutes(zone, from);
  for (let t = from; t <= to; t += stepMs) if (offsetMinutes(zone, t) !== first) return false;
  return offsetMinutes(zone, to) === first;
}

// ---- matching wall-clock times -----------------------------------------------------------------
/** The day fields under the Vixie rule: both restricted ⇒ either; otherwise both. */
export function dayMatches(e: ExpressionModel, on: CalendarDay): boolean {
  if (!e.month.matches(on.month, on)) return false;
  const dom = e.dom.matches(on.day, on);
  const dow = e.dow.matches(weekdayOf(on.year, on.month, on.day), on);
  return e.dom.kernel === '*' || e.dow.kernel === '*' ? dom && dow : dom || dow;
}

const DAY_MS = 86_400_000;
const dayOfWall = (wall: number): CalendarDay => {
  const d = new Date(Math.floor(wall / DAY_MS) * DAY_MS);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
};

/** Whether a wall-clock time (its fields as a UTC ms) matches the expression. */
export function matchesWall(e: ExpressionModel, wall: number): boolean {
  const d = new Date(wall);
  return (
    wall % 1000 === 0 &&
    dayMatches(e, dayOfWall(wall)) &&
    e.hour.matches(d.getUTCHours(), dayOfWall(wall)) &&
    e.minute.matches(d.getUTCMinutes(), dayOfWall(wall)) &&
    e.second.matches(d.getUTCSeconds(), dayOfWall(wall))
  );
}

/**
 * The matching wall-clock times in (from, to], at most `limit`, ascending: day by day, and within
 * a matching day hour, minute and second, skipping what ends before `from`.
 */
export function wallsBetween(e: ExpressionModel, from: number, to: number, limit: number): number[] {
  const out: number[] = [];
  for (let dayStart = Math.floor(from / DAY_MS) * DAY_MS; dayStart <= to && out.length < limit; dayStart += DAY_MS) {
    const on = dayOfWall(dayStart);
    if (!dayMatches(e, on)) continue;
    for (let h = 0; h < 24 && out.length < limit; h += 1) {
      const hourStart = dayStart + h * 3600_000;
      if (hourStart + 3599_000 <= from || hourStart > to || !e.hour.matches(h, on)) continue;
      for (let m = 0; m < 60 && out.length < limit; m += 1) {
        const minuteStart = hourStart + m * 60_000;
        if (minuteStart + 59_000 <= from || minuteStart > to || !e.minute.matches(m, on)) continue;
        for (let s = 0; s < 60 && out.length < limit; s += 1) {
          const t = minuteStart + s * 1000;
          if (t > from && t <= to && e.second.matches(s, on)) out.push(t);
        }
      }
    }
  }
  return out;
}

/**
 * Runs `run` (which asks the kernel for fire times from `start`), skipping the case where the
 * kernel gives up: it looks at most five years past a start time, so an expression accepted
 * today — TUE#5 in February alone, next on 29 February 2028 — has "no fire time within the next
 * years" from a start in 2020. The model must then agree that nothing fires within five years.
 */
export function beyondKernelHorizon<T>(e: ExpressionModel, zone: string, start: number, run: () => T): T {
  try {
    return run();
  } catch (error) {
    if (!/has no fire time within the next years/.test((error as Error).message)) throw error;
    const offset = offsetMinutes(zone, start) * 60_000;
    expect([e.kernel, wallsBetween(e, start + offset, start + offset + 5 * 365 * DAY_MS, 1)]).toEqual([e.kernel, []]);
    fc.pre(false);
    throw error;
  }
}
