import { Client } from 'pg';
import type { Sql } from './transaction';

/** One connection as the database owner, with transactions of its own. */
export interface OwnerConnection extends Sql {
  /** The pg client itself (the migration runner drives its own transactions and advisory locks). */
  readonly client: Client;
  transaction<T>(fn: (sql: Sql) => Promise<T>): Promise<T>;
}

/**
 * THE OWNER'S CONNECTION (DATABASE_URL) — the one way the kernel connects as the owner of its
 * schema: migrations, the kernel-wide tables no tenant owns (master-key fingerprints, sealed
 * kernel keys) and the operator commands. It is not an RLS bypass: the tables force row-level
 * security on their owner too, so tenant rows are reached only through tenant transactions
 * (Database.inTenantTransaction) or the system functions (Database.asSystem).
 */
export async function withOwnerConnection<T>(url: string, applicationName: string, fn: (owner: OwnerConnection) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url, application_name: applicationName });
  // A connection the server drops while we work fails the work, not the process.
  client.on('error', () => undefined);
  await client.connect();
  const query: Sql['query'] = async (text, params) => (await client.query(text, params as unknown[])).rows;
  try {
    return await fn({
      client,
      query,
      async transaction(work) {
        await client.query('BEGIN');
        try {
          const result = await work({ query });
          await client.query('COMMIT');
          return result;
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
      },
    });
  } finally {
    await client.end().catch(() => undefined);
  }
}
