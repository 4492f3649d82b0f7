import type { KeyObject } from 'node:crypto';

/**
 * Key objects of this node (decrypted private keys; parsed public keys), so that signing does not unwrap and decrypt on every
 * call. Bounded in size (least recently used goes first) and in time (an entry lives at most
 * `ttlMs`), and dropped at once when a version is disabled, scheduled for destruction or
 * destroyed — on this node at commit, on the others through a database notification.
 * Whether a version may sign is always read from the database in the signing transaction; the
 * cache only ever saves decryption work.
 */
export class KeyObjectCache {
  private readonly entries = new Map<string, { key: KeyObject; expiresAt: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
  ) {}

  static id(tenantId: string, alias: string, version: number): string {
    return `${tenantId}\u0000${alias}\u0000${version}`;
  }

  get(id: string): KeyObject | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    this.entries.delete(id);
    if (entry.expiresAt <= Date.now()) return undefined;
    this.entries.set(id, entry); // most recently used last
    return entry.key;
  }

  set(id: string, key: KeyObject): void {
    if (this.maxEntries === 0) return;
    this.entries.delete(id);
    this.entries.set(id, { key, expiresAt: Date.now() + this.ttlMs });
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  drop(id: string): void {
    this.entries.delete(id);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
