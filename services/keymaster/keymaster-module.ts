import { KeymasterServiceDefinition } from '../../gen/proto/axis/kernel/keymaster/v1/keymaster_service';
import type { Database } from '../platform/database/database';
import type { Logger } from '../platform/observability/logger';
import type { KernelDependencies, CapabilityModule } from '../platform/capability-module';
import { KeyObjectCache } from './key-cache';
import { KEY_CACHE_CHANNEL, keymasterService } from './keymaster-service';

/**
 * Keymaster (docs/capabilities/keymaster.md) as the kernel serves it: the service, its scopes, and this node's private-key cache,
 * which drops a version when any node disables or schedules its destruction (NOTIFY), and
 * empties itself when the notification connection was lost (an invalidation may have been missed).
 */
export function keymasterModule(deps: KernelDependencies): CapabilityModule {
  const privateKeys = new KeyObjectCache(deps.config.KERNEL_KEY_CACHE_SIZE, deps.config.KERNEL_KEY_CACHE_TTL_MS);
  deps.notifications.subscribe(KEY_CACHE_CHANNEL, (payload) => {
    const [tenantId, alias, version] = JSON.parse(payload) as [string, string, number];
    privateKeys.drop(KeyObjectCache.id(tenantId, alias, version));
    deps.metrics.increment('keymaster_private_key_cache_drops_total', { source: 'notification' });
  });
  deps.notifications.onReconnect(() => privateKeys.clear());
  return {
    definition: KeymasterServiceDefinition,
    implementation: keymasterService({
      envelope: deps.envelope,
      log: deps.log,
      metrics: deps.metrics,
      privateKeys,
      minRestoreWindowSeconds: deps.config.KERNEL_KEY_DESTRUCTION_MIN_WINDOW_SECONDS,
    }),
    scopes: { Sign: 'keymaster:sign', RewrapDataKeys: 'keymaster:admin' },
    systemJobs: [
      {
        name: 'kernel.keymaster.destroy-due-versions',
        everySeconds: deps.config.KERNEL_KEY_DESTRUCTION_SWEEP_MS / 1000,
        run: async (job) => void (await destroyDueKeyVersions(job.db, job.log)),
      },
    ],
  };
}

/** Erases the key versions whose restore window has passed (every tenant); returns how many. */
export async function destroyDueKeyVersions(db: Database, log: Logger): Promise<number> {
  const [row] = await db.asSystem((sql) => sql.query<{ n: number }>(`SELECT keymaster_destroy_due_versions(500, 'system-key-destruction') AS n`));
  if (row.n > 0) log.info({ destroyed: row.n }, 'key versions destroyed after their restore window');
  return row.n;
}
