// node-postgres' own conversion of JS values to the text form it sends as parameters, so that an
// inlined literal is exactly what the server would have received as an untyped parameter.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { prepareValue } = require('pg/lib/utils') as { prepareValue(value: unknown): string | Buffer | null };

/**
 * The SQL literal for one parameter value: an untyped quoted literal, like an untyped parameter.
 * The text is node-postgres' own (prepareValue, then escapeLiteral), character for character
 * (tests/platform/inline-parameters.spec.ts compares them), built without its per-character
 * loops: strings and the arrays of a commit group's records (ten columns of ~30 values per group)
 * are escaped with one scan each — pg's escapeLiteral concatenating a character at a time was the
 * largest allocation site of a mutating call in a heap profile.
 */
export function sqlLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'string') return quoted(value);
  if (Array.isArray(value)) return quoted(arrayText(value));
  const prepared = prepareValue(value);
  if (prepared === null || prepared === undefined) return 'NULL';
  if (Buffer.isBuffer(prepared)) return `'\\x${prepared.toString('hex')}'`;
  return quoted(prepared);
}

/** pg's escapeLiteral: quotes doubled; with a backslash, the E'' form with backslashes doubled. */
function quoted(text: string): string {
  const doubled = text.includes("'") ? text.replace(/'/g, "''") : text;
  return text.includes('\\') ? ` E'${doubled.replace(/\\/g, '\\\\')}'` : `'${doubled}'`;
}

/** pg's arrayString: the array's text form, each element quoted (NULL, nested arrays, bytes as \\x…). */
function arrayText(values: readonly unknown[]): string {
  let text = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) text += ',';
    const item = values[i];
    if (item === null || item === undefined) text += 'NULL';
    else if (typeof item === 'string') text += element(item);
    else if (Array.isArray(item)) text += arrayText(item);
    else if (ArrayBuffer.isView(item)) text += `\\\\x${Buffer.from(item.buffer, item.byteOffset, item.byteLength).toString('hex')}`;
    else text += element(prepareValue(item) as string);
  }
  return `${text}}`;
}

/** pg's escapeElement: double-quoted, with backslashes and double quotes escaped by a backslash. */
function element(text: string): string {
  return ARRAY_SPECIAL.test(text) ? `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"` : `"${text}"`;
}

const ARRAY_SPECIAL = /["\\]/;

/**
 * Rewrites a parameterised statement (`$1`, `$2`, …) into one with the values inlined as
 * literals, so it can travel in a multi-statement simple query together with statements that
 * must precede it (BEGIN, SAVEPOINT) — one network round trip instead of two. Placeholders
 * inside quoted strings, quoted identifiers, comments and dollar-quoted bodies are left alone.
 * Untyped literals are resolved by the server exactly like the untyped parameters node-postgres
 * sends, so the statement means the same thing.
 *
 * The kernel's statements are a fixed set of texts: each is scanned once and kept as its
 * literal-free pieces and the parameter between each two (building the text a character at a
 * time was a quarter of the kernel's allocations per call in a heap profile).
 */
export function inlineParameters(text: string, params: readonly unknown[]): string {
  const { pieces, slots } = template(text);
  let out = pieces[0];
  for (let k = 0; k < slots.length; k++) {
    const index = slots[k];
    if (index < 0 || index >= params.length) throw new Error(`statement uses $${index + 1} but has ${params.length} parameter(s)`);
    out += sqlLiteral(params[index]) + pieces[k + 1];
  }
  return out;
}

interface Template {
  /** The text around the placeholders: one more piece than there are slots. */
  pieces: string[];
  /** For each placeholder, in order, the index of its parameter. */
  slots: number[];
}

/** Scanned templates; bounded, in case a caller builds texts dynamically (then they are rescanned). */
const templates = new Map<string, Template>();
const MAX_TEMPLATES = 1000;

function template(text: string): Template {
  const known = templates.get(text);
  if (known) return known;
  const scanned = scan(text);
  if (templates.size < MAX_TEMPLATES) templates.set(text, scanned);
  return scanned;
}

function scan(text: string): Template {
  const pieces: string[] = [];
  const slots: number[] = [];
  let pieceStart = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === "'" || c === '"') {
      i = closingQuote(text, i, c, c === "'" && /[Ee]/.test(text[i - 1] ?? ''));
    } else if (c === '-' && text[i + 1] === '-') {
      const end = text.indexOf('\n', i);
      i = end === -1 ? n : end;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end === -1 ? n : end + 2;
    } else if (c === '$') {
      const placeholder = /^\$(\d+)/.exec(text.slice(i, i + 12));
      if (placeholder && !/[A-Za-z0-9_]/.test(text[i - 1] ?? '')) {
        const index = Number(placeholder[1]) - 1;
        pieces.push(text.slice(pieceStart, i));
        slots.push(index);
        i += placeholder[0].length;
        pieceStart = i;
        continue;
      }
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i));
      if (tag) {
        const end = text.indexOf(tag[0], i + tag[0].length);
        i = end === -1 ? n : end + tag[0].length;
      } else {
        i += 1;
      }
    } else {
      i += 1;
    }
  }
  pieces.push(text.slice(pieceStart));
  return { pieces, slots };
}

/** Index just past the quote that closes the one at `start` (a doubled quote is an escaped one; in E'…' so is \'). */
function closingQuote(text: string, start: number, quote: string, backslashEscapes: boolean): number {
  let i = start + 1;
  while (i < text.length) {
    if (backslashEscapes && text[i] === '\\') {
      i += 2;
      continue;
    }
    if (text[i] === quote) {
      if (text[i + 1] === quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i += 1;
  }
  return text.length;
}
