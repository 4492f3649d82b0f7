import type { Logger } from '../observability/logger';
import type { TrafficPolicy } from './policy';

interface Entry {
  policy: TrafficPolicy;
  loadedAt: number;
  refreshing?: Promise<void>;
}

/**
 * Every tenant's traffic policy on this node, so that the limiter decides without a database
 * round trip (docs/capabilities/traffic.md). A tenant's policy is loaded on its first call (that
 * one call waits for it; concurrent first calls share the load), then served from memory: an
 * entry older than `refreshMs` is still served while one background reload replaces it. SetPolicy
 * replaces the entry on its own node at commit and, through a database notification, on every
 * other node (the way the keymaster's key cache is invalidated). A load that fails keeps the
 * entry it had — or, for a tenant never loaded, the configured defaults, retried on the next
 * refresh: limits are never silently off.
 */
export class PolicyCache {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<TrafficPolicy>>();

  constructor(
    private readonly load: (tenantId: string) => Promise<TrafficPolicy | undefined>,
    private readonly defaults: TrafficPolicy,
    private readonly refreshMs: number,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  /** The policy at once when cached (no promise, no await on the hot path), else its load. */
  get(tenantId: string): TrafficPolicy | Promise<TrafficPolicy> {
    const entry = this.entries.get(tenantId);
    if (entry) {
      if (!entry.refreshing && this.clock() - entry.loadedAt > this.refreshMs) this.refresh(tenantId, entry);
      return entry.policy;
    }
    let pending = this.loading.get(tenantId);
    if (!pending) {
      pending = this.fetch(tenantId).then((policy) => {
        this.entries.set(tenantId, { policy, loadedAt: this.clock() });
        this.loading.delete(tenantId);
        return policy;
      });
      this.loading.set(tenantId, pending);
    }
    return pending;
  }

  /** The committed policy of a tenant (SetPolicy at commit, on the node that ran it). */
  set(tenantId: string, policy: TrafficPolicy): void {
    this.entries.set(tenantId, { policy, loadedAt: this.clock() });
  }

  /** Another node changed a tenant's policy: reload it now (the old one serves meanwhile). */
  invalidate(tenantId: string): void {
    const entry = this.entries.get(tenantId);
    if (entry) this.refresh(tenantId, entry, true);
  }

  /** Notifications may have been missed: every entry reloads on its next use. */
  expireAll(): void {
    for (const entry of this.entries.values()) entry.loadedAt = -Infinity;
  }

  private refresh(tenantId: string, entry: Entry, force = false): void {
    if (entry.refreshing && !force) return;
    const run = this.fetch(tenantId, entry.policy).then((policy) => {
      if (this.entries.get(tenantId) === entry) this.entries.set(tenantId, { policy, loadedAt: this.clock() });
    });
    entry.refreshing = run;
  }

  private async fetch(tenantId: string, fallback?: TrafficPolicy): Promise<TrafficPolicy> {
    try {
      return (await this.load(tenantId)) ?? this.defaults;
    } catch (error) {
      this.log.warn({ err: error, tenant: tenantId }, 'could not load the tenant traffic policy; keeping the last known one (or the configured defaults)');
      // Served, but retried on the next use past a short delay.
      const policy = fallback ?? this.defaults;
      setTimeout(() => this.expire(tenantId), 1000).unref();
      return policy;
    }
  }

  private expire(tenantId: string): void {
    const entry = this.entries.get(tenantId);
    if (entry) {
      entry.loadedAt = -Infinity;
      entry.refreshing = undefined;
    }
  }
}
