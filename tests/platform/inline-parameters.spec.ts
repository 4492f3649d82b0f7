import * as fc from 'fast-check';
import { Client } from 'pg';
import { inlineParameters, sqlLiteral } from '../../services/platform/database/inline-parameters';
import { adminDatabaseUrl } from '../support/test-database';

/** Inlined statements must mean exactly what the parameterised ones mean. */
describe('inlineParameters', () => {
  test('replaces placeholders but not look-alikes inside strings, identifiers, comments and dollar quotes', () => {
    const sql = `SELECT $1, '$1 it''s', "col$2", $2 -- $1\n/* $2 */ $$ $1 $$, $tag$ $2 $tag$, E'\\'$1', $10`;
    const params = ['a', 2, 3, 4, 5, 6, 7, 8, 9, 'ten'];
    expect(inlineParameters(sql, params)).toBe(`SELECT 'a', '$1 it''s', "col$2", '2' -- $1\n/* $2 */ $$ $1 $$, $tag$ $2 $tag$, E'\\'$1', 'ten'`);
  });

  test('refuses a placeholder without a value', () => {
    expect(() => inlineParameters('SELECT $2', ['only one'])).toThrow();
  });

  /*
   * DB-free properties. A statement is built from segments whose inlined form is known by
   * construction: placeholders become their literal, everything else — plain text, quoted
   * strings (also E'…' with backslash escapes), quoted identifiers, comments, dollar-quoted
   * bodies, identifiers containing '$' — comes out unchanged, whatever look-alikes it holds.
   */
  const lookAlikes = fc.constantFrom('$1', '$2', '$10', '$$', '$t$', "''", '--', '/*', '*/', '"', '\\', 'x', ' ', '\n', 'é');
  const inner = (exclude: string[]) => fc.array(lookAlikes.filter((t) => !exclude.some((e) => t.includes(e))), { maxLength: 6 }).map((parts) => parts.join(' ')); // spaced: no two look-alikes fuse into a terminator
  type Segment = { text: string; placeholder?: number };
  const segment = (params: number): fc.Arbitrary<Segment> =>
    fc.oneof(
      fc.constantFrom('SELECT', ',', '(', ')', '+', '=', 'FROM t', '\n', '$ ', 'col$1', 'a_$2').map((text) => ({ text })),
      fc.integer({ min: 1, max: params }).map((n) => ({ text: `$${n}`, placeholder: n })),
      fc.string({ unit: fc.constantFrom('a', "'", '$', '1', '"', '-', '\\', '*', '/') }).map((t) => ({ text: `'${t.replace(/'/g, "''")}'` })),
      fc.string({ unit: fc.constantFrom('a', "'", '$', '2', '\\') }).map((t) => ({ text: `E'${t.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'` })),
      inner(['"']).map((t) => ({ text: `"${t}"` })),
      inner(['\n']).map((t) => ({ text: `-- ${t}\n` })),
      inner(['*/']).map((t) => ({ text: `/* ${t} */` })),
      inner(['$$']).map((t) => ({ text: `$$${t}$$` })),
      inner(['$t$']).map((t) => ({ text: `$t$${t}$t$` })),
    );
  const valueArb = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)), fc.array(fc.oneof(fc.string(), fc.constant(null)), { maxLength: 3 }));

  test('property: placeholders become their literals, and nothing else changes', () => {
    fc.assert(
      fc.property(
        fc.array(valueArb, { minLength: 1, maxLength: 12 }).chain((params) => fc.tuple(fc.constant(params), fc.array(segment(params.length), { maxLength: 12 }))),
        ([params, segments]) => {
          // Segments are separated by a space, so none runs into the next (a placeholder into a digit, a word into a quote).
          const sql = segments.map((s) => s.text).join(' ');
          const expected = segments.map((s) => (s.placeholder === undefined ? s.text : sqlLiteral(params[s.placeholder - 1]))).join(' ');
          expect(inlineParameters(sql, params)).toBe(expected);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('property: a string literal reads back as the string (standard and E\'…\' forms)', () => {
    const unquote = (literal: string) => {
      const e = /^ E'(.*)'$/s.exec(literal);
      if (e) return e[1].replace(/\\(.)/gs, '$1').replace(/''/g, "'");
      const plain = /^'(.*)'$/s.exec(literal);
      if (!plain) throw new Error(`not a literal: ${literal}`);
      expect(plain[1].replace(/''/g, '')).not.toContain("'");
      return plain[1].replace(/''/g, "'");
    };
    fc.assert(fc.property(fc.string({ unit: fc.constantFrom('a', "'", '\\', '"', '$', ' ', 'é', '\n') }), (text) => expect(unquote(sqlLiteral(text))).toBe(text)));
    expect([sqlLiteral(null), sqlLiteral(undefined), sqlLiteral(42), sqlLiteral(true), sqlLiteral(Buffer.from([0, 255]))]).toEqual(['NULL', 'NULL', "'42'", "'true'", "'\\x00ff'"]);
    expect(sqlLiteral(["a'b", null])).toBe(`'{"a''b",NULL}'`);
  });

  test('property: a literal is the text node-postgres itself makes of the value (prepareValue, then escapeLiteral)', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pg = require('pg/lib/utils') as { prepareValue(value: unknown): string | Buffer | null; escapeLiteral(text: string): string };
    const text = fc.string({ unit: fc.constantFrom('a', "'", '\\', '"', '{', ',', ' ', 'é', '\n', 'N') });
    const scalar = fc.oneof(text, fc.integer(), fc.double({ noNaN: false }), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.uint8Array({ maxLength: 6 }), fc.date({ noInvalidDate: true }), fc.dictionary(text, text, { maxKeys: 2 }));
    const value = fc.oneof(scalar, fc.array(scalar, { maxLength: 5 }), fc.array(fc.array(scalar, { maxLength: 3 }), { maxLength: 3 }));
    fc.assert(
      fc.property(value, (v) => {
        const prepared = pg.prepareValue(v);
        const expected = prepared === null || prepared === undefined ? 'NULL' : Buffer.isBuffer(prepared) ? `'\\x${prepared.toString('hex')}'` : pg.escapeLiteral(prepared);
        expect(sqlLiteral(v)).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });

  test('unterminated quotes, comments and dollar quotes run to the end of the statement untouched', () => {
    for (const tail of ["'open $1", '"open $1', '/* open $1', '$$ open $1', "E'open \\' $1"]) {
      expect(inlineParameters(`SELECT $1, ${tail}`, ['v'])).toBe(`SELECT 'v', ${tail}`);
    }
    expect(inlineParameters('SELECT $1 -- trailing $1', ['v'])).toBe("SELECT 'v' -- trailing $1");
    expect(() => inlineParameters('SELECT $0', ['v'])).toThrow('statement uses $0 but has 1 parameter(s)');
    expect(inlineParameters('SELECT $1::int', [7])).toBe("SELECT '7'::int");
  });

  test('literals round-trip through PostgreSQL like parameters do', async () => {
    const client = new Client({ connectionString: adminDatabaseUrl });
    await client.connect();
    try {
      const values: unknown[] = [
        "it's \\ a \"test\" ; DROP TABLE x; --",
        'ünïcødé ✓ 𝄞',
        -42,
        2 ** 53 - 1,
        3.25,
        true,
        null,
        Buffer.from([0, 1, 254, 255]),
        ['a', "b'c", null, 'd"e', '{x}'],
        [Buffer.from('xy'), Buffer.from([0])],
        new Date('2026-11-26T08:00:00.123Z'),
        { nested: ["q'uote"] },
      ];
      const sql = 'SELECT $1::text AS a, $2::text AS b, $3::int AS c, $4::bigint AS d, $5::float8 AS e, $6::boolean AS f, $7::text AS g, $8::bytea AS h, $9::text[] AS i, $10::bytea[] AS j, $11::timestamptz AS k, $12::jsonb AS l';
      const parameterised = (await client.query(sql, values)).rows[0];
      const inlined = (await client.query(inlineParameters(sql, values))).rows[0];
      expect(inlined).toEqual(parameterised);
      expect(sqlLiteral(null)).toBe('NULL');
    } finally {
      await client.end();
    }
  });
});
