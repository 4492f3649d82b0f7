import { hostname, userInfo } from 'node:os';
import type { KernelConfig } from '../platform/config';
import { openEnvelope } from '../platform/crypto/master-key-registry';
import { ENVELOPE_TABLES } from '../platform/crypto/envelope-tables';
import { countStaleDataKeys, dataKeyInventory, rewrapTableBatch } from '../platform/crypto/rewrap';
import { Client } from 'pg';
import type { Sql } from '../platform/database/database';
import { startEmbeddedPostgres } from '../platform/database/embedded-postgres';
import { ProgressBar } from '../platform/cli/progress-bar';
import { migrate } from '../platform/kernel';
import { createLogger } from '../platform/observability/logger';

const USAGE = 'usage: kernel keys status | kernel keys rewrap [--batch N]\n';

/**
 * `kernel keys status` lists the data keys per master-key version; `kernel keys rewrap` moves
 * every data key of every tenant to the active master key, a batch per transaction (each with
 * an audit entry per tenant), so it can be interrupted and run again. Runs as the database owner
 * (DATABASE_URL), which must bypass RLS like the migrating role; values are never decrypted.
 */
export async function keysCommand(config: KernelConfig, args: string[]): Promise<number> {
  const [action, ...rest] = args;
  if (action !== 'status' && action !== 'rewrap') {
    process.stderr.write(USAGE);
    return 2;
  }
  const batchArg = rest[0] === '--batch' ? Number(rest[1]) : 500;
  if (!Number.isInteger(batchArg) || batchArg < 1 || batchArg > 10_000) {
    process.stderr.write(`--batch must be 1–10000\n${USAGE}`);
    return 2;
  }
  const log = createLogger(config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL);
  const embedded = config.DATABASE_URL
    ? undefined
    : await startEmbeddedPostgres({ dataDir: config.KERNEL_EMBEDDED_STORAGE === 'disk' ? `${config.KERNEL_DATA_DIR}/pgdata` : undefined });
  const url = config.DATABASE_URL ?? embedded!.url;
  // The owner's connection: the rotation spans every tenant, which RLS hides from the app role.
  const client = new Client({ connectionString: url, application_name: 'axis-kernel-keys' });
  const sql: Sql = { query: async (text, params) => (await client.query(text, params as unknown[])).rows };
  const inTransaction = async <T>(fn: () => Promise<T>): Promise<T> => {
    await client.query('BEGIN');
    try {
      const result = await fn();
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    }
  };
  try {
    await migrate(url, log);
    const { envelope } = await openEnvelope(config, url, log);
    await client.connect();
    const inventory = () => dataKeyInventory(sql);
    const print = (rows: Awaited<ReturnType<typeof inventory>>) => {
      process.stdout.write(`active master key version: ${envelope.activeKekVersion}\n`);
      for (const row of rows) process.stdout.write(`${row.table.padEnd(28)} kek v${row.kekVersion}  ${row.count} data key(s)\n`);
    };
    if (action === 'status') {
      print(await inventory());
      return 0;
    }

    const total = await countStaleDataKeys(sql, envelope);
    const principal = `operator:${userInfo().username}@${hostname()}`;
    const progress = new ProgressBar({ label: 'rewrap' });
    let done = 0;
    for (const table of ENVELOPE_TABLES) {
      for (;;) {
        const batch = await inTransaction(async () => {
          const result = await rewrapTableBatch(sql, table, envelope, log, batchArg);
          for (const [tenantId, count] of result.byTenant) {
            if (tenantId === '') continue; // kernel-wide keys belong to no tenant's log
            await sql.query(
              `INSERT INTO kernel_audit_event (tenant_id, principal, action, resource, outcome, trace_id, detail)
               VALUES ($1, $2, 'kernel.cli/keys.rewrap', 'data-keys', 'OK', 'kernel-keys-rewrap', $3)`,
              [tenantId, principal, JSON.stringify({ table: table.table, rewrapped: count, active_kek_version: envelope.activeKekVersion })],
            );
          }
          return result;
        });
        if (batch.rewrapped === 0) break;
        done += batch.rewrapped;
        progress.update({ done, total, detail: table.table });
      }
    }
    progress.finish({ done, total }, `re-wrapped ${done} data key(s) under master key version ${envelope.activeKekVersion}`);
    print(await inventory());
    return 0;
  } finally {
    await client.end().catch(() => undefined);
    await embedded?.stop();
  }
}
