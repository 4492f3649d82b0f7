import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { closeKernelClient, createKeymasterClient } from '../../clients/src';
import { Algorithm } from '../../gen/proto/axis/kernel/keymaster/v1/key';
import { MasterKeyError } from '../../services/platform/crypto/master-keys';
import { kernelCli } from '../support/kernel-cli';
import { createTestDatabase, type TestDatabase } from '../support/test-database';
import { TEST_MASTER_KEY_V1 } from '../support/test-master-keys';
import { startTestKernel } from '../support/test-kernel';
import { waitFor } from '../support/wait-for';

/** `kernel keys …` as an operator runs it: its own process, against DATABASE_URL. */
const keysCommand = (databaseUrl: string, masterKeys: string, ...args: string[]) =>
  kernelCli(['keys', ...args], { DATABASE_URL: databaseUrl, KERNEL_MASTER_KEYS: masterKeys });

describe('master-key rotation (kernel keys rewrap)', () => {
  let db: TestDatabase;
  const v1Only = JSON.stringify({ 1: TEST_MASTER_KEY_V1 });
  const v2 = randomBytes(32).toString('base64');
  const both = JSON.stringify({ 1: TEST_MASTER_KEY_V1, 2: v2 });
  const v2Only = JSON.stringify({ 2: v2 });

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('re-wraps every data key of every tenant without exposing values; the old master key can then be retired', async () => {
    const message = { $case: 'message' as const, value: Buffer.from('still me') };
    const signatures = new Map<string, Buffer>();
    const first = await startTestKernel({ databaseUrl: db.url, env: { KERNEL_MASTER_KEYS: v1Only } });
    for (const tenant of ['t1', 't2', 't3']) {
      const client = createKeymasterClient({ address: first.address, tenantId: tenant, token: await first.token({ tenants: [tenant] }) });
      for (let i = 0; i < 4; i++) await client.createKey({ key: { keyId: `k${i}`, algorithm: Algorithm.ALGORITHM_ED25519 } });
      signatures.set(tenant, (await client.sign({ keyId: 'k0', input: message })).signature!.value);
      closeKernelClient(client);
    }
    const sql = new Client({ connectionString: db.url });
    await sql.connect();
    // Each tenant's audit-log key (docs/capabilities/audit.md) is a keymaster key too, sealed once its first checkpoint is signed.
    await waitFor(async () => (await sql.query(`SELECT 1 FROM keymaster_key_version WHERE alias = 'kernel.audit'`)).rows.length === 3);
    await first.stop();

    const before = await sql.query(`SELECT tenant_id, alias, ciphertext FROM keymaster_key_version ORDER BY 1, 2`);

    // Dropping v1 while data keys still use it is refused at start-up, with what to do.
    await expect(startTestKernel({ databaseUrl: db.url, env: { KERNEL_MASTER_KEYS: v2Only } })).rejects.toThrow(MasterKeyError);

    const status = await keysCommand(db.url, both, 'status');
    expect(status.stdout).toContain('active master key version: 2');
    expect(status.stdout).toMatch(/keymaster_key_version\s+kek v1\s+15 data key/); // 12 + 3 audit keys
    expect(status.stdout).toMatch(/kernel_sealed_key\s+kek v1\s+1 data key/); // the request-digest key
    const rewrap = await keysCommand(db.url, both, 'rewrap', '--batch', '5');
    expect(rewrap.stdout).toContain('re-wrapped 16 data key(s) under master key version 2');
    const again = await keysCommand(db.url, both, 'rewrap');
    expect(again.stdout).toContain('re-wrapped 0 data key(s)');

    const after = await sql.query(`SELECT tenant_id, alias, ciphertext, kek_version FROM keymaster_key_version ORDER BY 1, 2`);
    expect(after.rows.map((r) => r.kek_version)).toEqual(Array(15).fill(2));
    // The values themselves were never re-encrypted: only their data keys were re-wrapped.
    expect(after.rows.map((r) => r.ciphertext.toString('hex'))).toEqual(before.rows.map((r) => r.ciphertext.toString('hex')));
    const audit = await sql.query(`SELECT tenant_id, detail->>'rewrapped' AS n FROM kernel_audit_event WHERE action = 'kernel.cli/keys.rewrap' ORDER BY tenant_id`);
    expect(audit.rows.reduce((sum, r) => sum + Number(r.n), 0)).toBe(15);
    await sql.end();

    // v1 retired: every key still signs, and old signatures still verify.
    const retired = await startTestKernel({ databaseUrl: db.url, env: { KERNEL_MASTER_KEYS: v2Only } });
    try {
      for (const tenant of ['t1', 't2', 't3']) {
        const client = createKeymasterClient({ address: retired.address, tenantId: tenant, token: await retired.token({ tenants: [tenant] }) });
        for (let i = 0; i < 4; i++) expect((await client.sign({ keyId: `k${i}`, input: message })).signature!.value).toHaveLength(64);
        expect((await client.verify({ keyId: 'k0', input: message, signature: signatures.get(tenant)! })).valid).toBe(true);
        closeKernelClient(client);
      }
    } finally {
      await retired.stop();
    }
  });
});
