/**
 * Series patterns: literals and the tokens {YYYY} {YY} {MM} {DD} {SEQ:n} ({SEQ} = {SEQ:1}).
 * Pure functions, no I/O: parsed once per series, rendered per number.
 */
export type ResetPolicyName = 'NEVER' | 'YEARLY' | 'MONTHLY';

export type PatternPart =
  | { kind: 'literal'; text: string }
  | { kind: 'year4' | 'year2' | 'month' | 'day' }
  | { kind: 'seq'; width: number };

export class PatternError extends Error {}

const TOKEN = /\{([^{}]*)\}/g;

export function parsePattern(pattern: string): PatternPart[] {
  if (pattern.length === 0 || pattern.length > 100) throw new PatternError('the pattern must be 1–100 characters');
  const parts: PatternPart[] = [];
  let last = 0;
  let seqCount = 0;
  for (const match of pattern.matchAll(TOKEN)) {
    const index = match.index ?? 0;
    if (index > last) parts.push(literal(pattern.slice(last, index)));
    parts.push(token(match[1]));
    if (match[1].startsWith('SEQ')) seqCount += 1;
    last = index + match[0].length;
  }
  if (last < pattern.length) parts.push(literal(pattern.slice(last)));
  if (seqCount !== 1) throw new PatternError('the pattern needs exactly one {SEQ} or {SEQ:n} token');
  return parts;
}

function literal(text: string): PatternPart {
  if (/[{}]/.test(text)) throw new PatternError(`unbalanced brace in "${text}"`);
  if (/[\x00-\x1f\x7f]/.test(text)) throw new PatternError('control characters are not allowed in a pattern');
  return { kind: 'literal', text };
}

function token(name: string): PatternPart {
  switch (name) {
    case 'YYYY':
      return { kind: 'year4' };
    case 'YY':
      return { kind: 'year2' };
    case 'MM':
      return { kind: 'month' };
    case 'DD':
      return { kind: 'day' };
    case 'SEQ':
      return { kind: 'seq', width: 1 };
  }
  const seq = /^SEQ:(\d{1,2})$/.exec(name);
  if (seq) {
    const width = Number(seq[1]);
    if (width >= 1 && width <= 18) return { kind: 'seq', width };
  }
  throw new PatternError(`unknown token {${name}}; use {YYYY} {YY} {MM} {DD} {SEQ:n} (n 1–18)`);
}

/**
 * A formatted number must be unique for the life of the series, so a pattern must name the
 * period its counter resets in: YEARLY needs a year token, MONTHLY a year and {MM}.
 */
export function checkPatternFitsPolicy(parts: PatternPart[], policy: ResetPolicyName): void {
  const has = (kind: PatternPart['kind']) => parts.some((p) => p.kind === kind);
  const hasYear = has('year4') || has('year2');
  if (policy === 'YEARLY' && !hasYear) throw new PatternError('a YEARLY series needs {YYYY} or {YY} in its pattern');
  if (policy === 'MONTHLY' && (!hasYear || !has('month'))) throw new PatternError('a MONTHLY series needs a year token and {MM} in its pattern');
}

/** A calendar date in the series' time zone. */
export interface LocalDate {
  year: number;
  month: number;
  day: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-CA', { timeZone, era: 'short', year: 'numeric', month: '2-digit', day: '2-digit' });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** True when the IANA time zone is known to this runtime. */
export function isKnownTimeZone(timeZone: string): boolean {
  if (timeZone.length === 0 || timeZone.length > 64) return false;
  try {
    formatterFor(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** The calendar date of `instant` in `timeZone`; years before 1 AD are astronomical (1 BC = 0). */
export function localDate(instant: Date, timeZone: string): LocalDate {
  const parts = formatterFor(timeZone).formatToParts(instant);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  const yearOfEra = Number(get('year'));
  const beforeChrist = get('era') === 'BC' || get('era') === 'B';
  return { year: beforeChrist ? 1 - yearOfEra : yearOfEra, month: Number(get('month')), day: Number(get('day')) };
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');

export const isoDate = (d: LocalDate) => `${pad(d.year, 4)}-${pad(d.month, 2)}-${pad(d.day, 2)}`;

export function parseIsoDate(text: string): LocalDate {
  const [year, month, day] = text.split('-').map(Number);
  return { year, month, day };
}

/** The counter period a document date falls in: "" (NEVER), "2026" (YEARLY), "2026-11" (MONTHLY). */
export function periodOf(date: LocalDate, policy: ResetPolicyName): string {
  if (policy === 'YEARLY') return pad(date.year, 4);
  if (policy === 'MONTHLY') return `${pad(date.year, 4)}-${pad(date.month, 2)}`;
  return '';
}

export function renderNumber(parts: PatternPart[], value: number, date: LocalDate): string {
  let out = '';
  for (const part of parts) {
    switch (part.kind) {
      case 'literal':
        out += part.text;
        break;
      case 'year4':
        out += pad(date.year, 4);
        break;
      case 'year2':
        out += pad(date.year % 100, 2);
        break;
      case 'month':
        out += pad(date.month, 2);
        break;
      case 'day':
        out += pad(date.day, 2);
        break;
      case 'seq':
        out += pad(value, part.width);
        break;
    }
  }
  return out;
}
