import path from 'node:path';
import { withOwnerConnection } from '../database/owner-connection';
import type { Logger } from '../observability/logger';
import { applyMigrations, loadMigrations } from './migration-runner';

/** The kernel's SQL migrations (prisma/migrations/<timestamp>_<name>/migration.sql). */
export const MIGRATIONS_DIR = path.resolve(__dirname, '../../../prisma/migrations');

/** Applies pending migrations as the owner (DATABASE_URL), under the runner's advisory lock. */
export async function migrate(ownerUrl: string, log: Logger, appliedBy = 'kernel start-up'): Promise<void> {
  await withOwnerConnection(ownerUrl, 'axis-kernel-migrate', async ({ client }) => {
    const { applied } = await applyMigrations(client, loadMigrations(MIGRATIONS_DIR), {
      appliedBy,
      onProgress: (e) => e.state === 'applied' && log.info({ migration: e.file.directory, duration_ms: e.durationMs }, 'migration applied'),
    });
    if (applied.length) log.info({ count: applied.length }, 'migrations applied');
  });
}
