import { Client } from 'pg';

/** Runs `fn` on a fresh connection to `url` (as the test's superuser), closed afterwards. */
export async function withConnection<T>(url: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** One statement on a fresh connection to `url`: its rows. */
export function superuserQuery<Row extends Record<string, unknown> = Record<string, any>>(url: string, text: string, params: unknown[] = []): Promise<Row[]> {
  return withConnection(url, async (client) => (await client.query<Row>(text, params)).rows);
}
