import { Status } from 'nice-grpc-common';
import type { CancelSignal } from '../cancel-signal';
import { KernelError } from '../kernel-error';

interface Waiter {
  tenant: string;
  grant(): void;
  fail(error: KernelError): void;
}

/**
 * Admission to the connection pool: at most `capacity` transactions at once on this node, and at
 * most `perTenant` of them for any one tenant, first come first served among the tenants still
 * under their share. One tenant's transactions stuck behind a lock (or a burst of its reads)
 * therefore never take the whole pool, and a waiter gives up at its deadline, when its call is
 * cancelled, or after `timeoutMs` (UNAVAILABLE DATABASE_BUSY with RetryInfo) — a wait for a
 * connection is never unbounded.
 */
export class ConnectionGate {
  private active = 0;
  private readonly byTenant = new Map<string, number>();
  private readonly waiters: Waiter[] = [];

  constructor(
    private readonly capacity: number,
    private readonly perTenant: number,
    private readonly timeoutMs: number,
  ) {}

  /** Resolves with the release function once admitted. */
  acquire(tenant: string, signal?: CancelSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(cancelled());
    if (this.waiters.length === 0 && this.admissible(tenant)) return Promise.resolve(this.admit(tenant));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        tenant,
        grant: () => {
          cleanup();
          resolve(this.admit(tenant));
        },
        fail: (error) => {
          cleanup();
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.remove(waiter);
        waiter.fail(
          new KernelError(Status.UNAVAILABLE, 'DATABASE_BUSY', `no database connection became free within ${this.timeoutMs} ms; retry`, {
            retryDelayMs: 200,
          }),
        );
      }, this.timeoutMs);
      const onAbort = () => {
        this.remove(waiter);
        waiter.fail(cancelled());
      };
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Transactions running now (all tenants). */
  get inUse(): number {
    return this.active;
  }

  private admissible(tenant: string): boolean {
    return this.active < this.capacity && (this.byTenant.get(tenant) ?? 0) < this.perTenant;
  }

  private admit(tenant: string): () => void {
    this.active += 1;
    this.byTenant.set(tenant, (this.byTenant.get(tenant) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active -= 1;
      const left = this.byTenant.get(tenant)! - 1;
      if (left === 0) this.byTenant.delete(tenant);
      else this.byTenant.set(tenant, left);
      this.admitWaiting();
    };
  }

  /** Admits, in arrival order, every waiter whose tenant is under its share while room is left. */
  private admitWaiting(): void {
    for (let i = 0; i < this.waiters.length && this.active < this.capacity; ) {
      const waiter = this.waiters[i];
      if (this.admissible(waiter.tenant)) {
        this.waiters.splice(i, 1);
        waiter.grant();
      } else {
        i += 1;
      }
    }
  }

  private remove(waiter: Waiter): void {
    const at = this.waiters.indexOf(waiter);
    if (at >= 0) this.waiters.splice(at, 1);
  }
}

const cancelled = () => new KernelError(Status.CANCELLED, 'CANCELLED', 'the call was cancelled (or its deadline passed) while waiting for the database');
