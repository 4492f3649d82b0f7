import { closeKernelClient, createKeymasterClient, type KeymasterClient } from '../../clients/src';
import { Algorithm } from '../../gen/proto/axis/kernel/keymaster/v1/key';
import { refusal } from '../support/refusal';
import { createBackendDatabase, startTestKernel, TEST_BACKEND, type TestBackendDatabase, type TestKernel } from '../support/test-kernel';

/** Two kernel nodes on one database: a version disabled on one node leaves the other's memory promptly. */
describe('private-key cache across nodes', () => {
  let db: TestBackendDatabase;
  let a: TestKernel;
  let b: TestKernel;
  const clients: KeymasterClient[] = [];
  const message = { $case: 'message' as const, value: Buffer.from('cached') };

  beforeAll(async () => {
    db = await createBackendDatabase();
    a = await startTestKernel({ databaseUrl: db.url });
    b = await startTestKernel({ databaseUrl: db.url });
  });
  afterAll(async () => {
    clients.forEach(closeKernelClient);
    await b?.stop();
    await a?.stop();
    await db?.close();
  });

  const client = async (node: TestKernel) => {
    const c = createKeymasterClient({ address: node.address, tenantId: 'tenant-c', token: await node.token({ tenants: ['tenant-c'] }) });
    clients.push(c);
    return c;
  };
  const decryptions = (node: TestKernel) => node.kernel.metrics.total('keymaster_private_key_decryptions_total');

  it('drops a disabled version on every node, and the database, not the cache, decides', async () => {
    const onA = await client(a);
    const onB = await client(b);
    await onA.createKey({ key: { keyId: 'k', algorithm: Algorithm.ALGORITHM_ED25519 } });
    await onA.rotateKey({ keyId: 'k' });

    await onB.sign({ keyId: 'k', version: 1, input: message });
    await onB.sign({ keyId: 'k', version: 1, input: message });
    expect(decryptions(b)).toBe(1); // the second signature came from B's cache

    await onA.disableKeyVersion({ keyId: 'k', version: 1 });
    // B refuses at once (the state is read in the signing transaction) …
    const refused = await refusal(onB.sign({ keyId: 'k', version: 1, input: message }));
    expect(refused.reason).toBe('KEY_VERSION_DISABLED');
    // … and forgets the private key when A's notification arrives.
    const deadline = Date.now() + 10_000;
    while (b.kernel.metrics.counter('keymaster_private_key_cache_drops_total', { source: 'notification' }) === 0) {
      if (Date.now() > deadline) throw new Error(`node B never heard of the disabled version (backend ${TEST_BACKEND})`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await onA.enableKeyVersion({ keyId: 'k', version: 1 });
    await onB.sign({ keyId: 'k', version: 1, input: message });
    expect(decryptions(b)).toBe(2); // decrypted again: the cached key was gone
  });
});
