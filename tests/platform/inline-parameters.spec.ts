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
