import { Pool, type PoolClient, type PoolConfig } from 'pg';
import { translateDatabaseError } from './postgres-errors';

/** The non-owner role every kernel transaction runs as; RLS applies to it (law 2). */
export const APP_ROLE = 'axis_kernel_app';
/** The transaction-local setting the RLS policies compare tenant_id with. */
export const TENANT_SETTING = 'axis.tenant_id';

/** Parameterised SQL on one connection. */
export interface Sql {
  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<Row[]>;
}

/** A transaction bound to one tenant, running as the application role. */
export interface TenantTransaction extends Sql {
  readonly tenantId: string;
}

export interface TransactionOptions {
  readOnly?: boolean;
}

/**
 * The kernel's only way to the database for request work. Every transaction switches to the
 * application role and sets the tenant with transaction-local settings, in the same round trip
 * as BEGIN, so that nothing can leak between calls sharing a pooled connection — nor between
 * connections of the embedded database, which are one backend session.
 */
export class Database {
  readonly pool: Pool;

  constructor(config: PoolConfig) {
    this.pool = new Pool(config);
    // An idle client's connection can drop (server restart); that must not crash the process.
    this.pool.on('error', () => undefined);
  }

  /** Runs `fn` in a transaction scoped to `tenantId`; commits when it resolves, rolls back when it throws. */
  async inTenantTransaction<T>(tenantId: string, fn: (tx: TenantTransaction) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    return this.transaction(tenantId, fn, options);
  }

  /**
   * Runs `fn` as the application role with no tenant: RLS hides every tenant row, so this is only
   * good for calling the SECURITY DEFINER system functions (audit sequencing, reservation expiry).
   */
  async asSystem<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    return this.transaction('', fn, {});
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async transaction<T>(tenantId: string, fn: (tx: TenantTransaction) => Promise<T>, options: TransactionOptions): Promise<T> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw translateDatabaseError(error);
    }
    const tx = new PooledTransaction(client, tenantId);
    let broken = false;
    try {
      await client.query(
        `BEGIN${options.readOnly ? ' READ ONLY' : ''}; SELECT set_config('role', '${APP_ROLE}', true), set_config('${TENANT_SETTING}', ${client.escapeLiteral(tenantId)}, true)`,
      );
      const result = await fn(tx);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true;
      }
      throw translateDatabaseError(error);
    } finally {
      client.release(broken);
    }
  }
}

class PooledTransaction implements TenantTransaction {
  constructor(
    private readonly client: PoolClient,
    readonly tenantId: string,
  ) {}

  async query<Row>(text: string, params?: readonly unknown[]): Promise<Row[]> {
    const result = await this.client.query(text, params as unknown[] | undefined);
    return result.rows as Row[];
  }
}
