import { generateKeyPairSync } from 'node:crypto';
import { KeyObjectCache } from '../../services/keymaster/key-cache';

describe('KeyObjectCache', () => {
  const key = generateKeyPairSync('ed25519').privateKey;

  it('keeps at most maxEntries, dropping the least recently used', () => {
    const cache = new KeyObjectCache(2, 60_000);
    cache.set('a', key);
    cache.set('b', key);
    expect(cache.get('a')).toBe(key); // a is now the most recently used
    cache.set('c', key);
    expect([cache.get('a'), cache.get('b'), cache.get('c')]).toEqual([key, undefined, key]);
    expect(cache.size).toBe(2);
  });

  it('forgets entries older than the ttl, and on drop or clear', async () => {
    const cache = new KeyObjectCache(10, 30);
    cache.set('a', key);
    cache.set('b', key);
    cache.drop('b');
    expect(cache.get('b')).toBeUndefined();
    await new Promise((r) => setTimeout(r, 50));
    expect(cache.get('a')).toBeUndefined();
    cache.set('c', key);
    cache.clear();
    expect(cache.size).toBe(0);
  });

  it('caches nothing when sized 0', () => {
    const cache = new KeyObjectCache(0, 60_000);
    cache.set('a', key);
    expect(cache.get('a')).toBeUndefined();
  });
});
