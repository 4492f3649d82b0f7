import { hostname, userInfo } from 'node:os';
import { AuditLog } from '../platform/audit/audit-log';
import { ProgressBar } from '../platform/cli/progress-bar';
import type { KernelConfig } from '../platform/config';
import type { Envelope } from '../platform/crypto/envelope';
import { ENVELOPE_TABLES, type EnvelopeTable } from '../platform/crypto/envelope-tables';
import { openEnvelope } from '../platform/crypto/master-key-registry';
import { dataKeyInventory, rewrapTableBatch, tenantsWithStaleDataKeys } from '../platform/crypto/rewrap';
import { Database } from '../platform/database/database';
import { startEmbeddedPostgres } from '../platform/database/embedded-postgres';
import { withOwnerConnection, type OwnerConnection } from '../platform/database/owner-connection';
import { migrate } from '../platform/migrations/migrate';
import { createLogger, type Logger } from '../platform/observability/logger';

const USAGE = 'usage: kernel keys status | kernel keys rewrap [--batch N]\n';

/**
 * `kernel keys status` lists the data keys per master-key version; `kernel keys rewrap` moves
 * every data key to the active master key — values are never decrypted — a batch per transaction,
 * so it can be interrupted and run again. Kernel-wide keys are re-wrapped on the owner's
 * connection; tenants' data keys tenant by tenant, in tenant transactions as the application role
 * (the tenants holding stale keys come from a system function), each batch with its audit entry
 * in that tenant's log. Nothing here needs to bypass row-level security.
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
  try {
    await migrate(url, log, 'kernel keys');
    const { envelope } = await openEnvelope(config, url, log);
    return await withOwnerConnection(url, 'axis-kernel-keys', async (owner) => {
      const print = async () => {
        process.stdout.write(`active master key version: ${envelope.activeKekVersion}\n`);
        for (const table of ENVELOPE_TABLES) {
          for (const row of await dataKeyInventory(owner, table)) {
            process.stdout.write(`${table.table.padEnd(28)} kek v${row.kekVersion}  ${row.count} data key(s)\n`);
          }
        }
      };
      if (action === 'rewrap') await rewrapEverything(config, url, owner, envelope, log, batchArg);
      await print();
      return 0;
    });
  } finally {
    await embedded?.stop();
  }
}

async function rewrapEverything(config: KernelConfig, url: string, owner: OwnerConnection, envelope: Envelope, log: Logger, batch: number): Promise<void> {
  const stale = async (table: EnvelopeTable) => (await dataKeyInventory(owner, table)).filter((r) => r.kekVersion !== envelope.activeKekVersion).reduce((n, r) => n + r.count, 0);
  let total = 0;
  for (const table of ENVELOPE_TABLES) total += await stale(table);
  const progress = new ProgressBar({ label: 'rewrap' });
  let done = 0;
  const advance = (n: number, table: EnvelopeTable) => {
    done += n;
    progress.update({ done, total, detail: table.table });
  };
  const db = new Database(
    { connectionString: config.KERNEL_APP_DATABASE_URL ?? url, application_name: 'axis-kernel-keys' },
    { poolSize: 1, connectionsPerTenant: 1, statementTimeoutMs: 60_000, lockTimeoutMs: config.KERNEL_DB_LOCK_TIMEOUT_MS, acquireTimeoutMs: 10_000, log },
  );
  const audit = new AuditLog(db, log);
  const principal = `operator:${userInfo().username}@${hostname()}`;
  try {
    for (const table of ENVELOPE_TABLES) {
      if (table.system) {
        // Kernel-wide keys belong to no tenant's log.
        for (let n = -1; n !== 0; advance(n, table)) n = (await owner.transaction((sql) => rewrapTableBatch(sql, table, envelope, log, batch))).rewrapped;
        continue;
      }
      for (const tenantId of await tenantsWithStaleDataKeys(owner, table, envelope.activeKekVersion)) {
        for (let n = -1; n !== 0; advance(n, table)) {
          n = await db.inTenantTransaction(tenantId, async (tx) => {
            const { rewrapped } = await rewrapTableBatch(tx, table, envelope, log, batch);
            if (rewrapped > 0) {
              audit.append(tx, {
                tenantId,
                principal,
                action: 'kernel.cli/keys.rewrap',
                resource: 'data-keys',
                outcome: 'OK',
                traceId: 'kernel-keys-rewrap',
                detail: { table: table.table, rewrapped, active_kek_version: envelope.activeKekVersion },
              });
            }
            return rewrapped;
          });
        }
      }
    }
  } finally {
    await db.close();
  }
  progress.finish({ done, total }, `re-wrapped ${done} data key(s) under master key version ${envelope.activeKekVersion}`);
}
