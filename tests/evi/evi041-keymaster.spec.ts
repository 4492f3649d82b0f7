import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, randomUUID, verify as verifySignature } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Metadata, Status } from 'nice-grpc-common';
import { Client } from 'pg';
import { closeKernelClient, createKeymasterClient, type KeymasterClient } from '../../clients/src';
import { Algorithm, KeyVersionState } from '../../gen/proto/axis/kernel/keymaster/v1/key';
import { Envelope } from '../../services/platform/crypto/envelope';
import { masterKeyRing, masterKeysSchema } from '../../services/platform/crypto/master-keys';
import { createLogger } from '../../services/platform/observability/logger';
import { refusal } from '../support/refusal';
import { TEST_MASTER_KEYS } from '../support/test-master-keys';
import { createBackendDatabase, startTestKernel, type TestBackendDatabase, type TestKernel } from '../support/test-kernel';
import { waitFor } from '../support/wait-for';

const ALGORITHMS = [
  { algorithm: Algorithm.ALGORITHM_ED25519, name: 'ED25519' },
  { algorithm: Algorithm.ALGORITHM_ECDSA_P256_SHA256, name: 'ECDSA_P256_SHA256' },
  { algorithm: Algorithm.ALGORITHM_RSA_PSS_3072_SHA256, name: 'RSA_PSS_3072_SHA256' },
] as const;

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();

/** Verifies with the OpenSSL command-line tool and nothing but the PEM: not the kernel's code. */
function opensslVerifies(algorithm: Algorithm, pem: string, input: { message?: Buffer; digest?: Buffer }, signature: Buffer): boolean {
  const dir = mkdtempSync(path.join(tmpdir(), 'axis-openssl-'));
  try {
    const file = (name: string, data: string | Buffer) => {
      writeFileSync(path.join(dir, name), data);
      return path.join(dir, name);
    };
    const pub = file('pub.pem', pem);
    const sig = file('sig.bin', signature);
    const pss = algorithm === Algorithm.ALGORITHM_RSA_PSS_3072_SHA256 ? ['rsa_padding_mode:pss', 'rsa_pss_saltlen:32'] : [];
    let args: string[];
    if (algorithm === Algorithm.ALGORITHM_ED25519) {
      args = ['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', file('msg.bin', input.message!), '-sigfile', sig];
    } else if (input.message) {
      args = ['dgst', '-sha256', '-verify', pub, ...pss.flatMap((o) => ['-sigopt', o]), '-signature', sig, file('msg.bin', input.message)];
    } else {
      args = ['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-in', file('digest.bin', input.digest!), '-sigfile', sig, '-pkeyopt', 'digest:sha256', ...pss.flatMap((o) => ['-pkeyopt', o])];
    }
    try {
      execFileSync('openssl', args, { stdio: 'pipe' });
      return true;
    } catch {
      return false;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('EVI041 Keymaster / Signing (K-M4)', () => {
  let db: TestBackendDatabase;
  let kernel: TestKernel;
  let sql: Client;
  const clients: KeymasterClient[] = [];
  // The test knows the master key (it configured it), so it can look inside the ciphertext.
  const envelope = new Envelope(masterKeyRing(masterKeysSchema.parse(TEST_MASTER_KEYS)));
  const quiet = createLogger('silent');

  beforeAll(async () => {
    db = await createBackendDatabase();
    kernel = await startTestKernel({
      databaseUrl: db.url,
      env: { KERNEL_KEY_DESTRUCTION_MIN_WINDOW_SECONDS: '1', KERNEL_KEY_DESTRUCTION_SWEEP_MS: '200' },
    });
    sql = new Client({ connectionString: db.url });
    await sql.connect();
  });

  afterAll(async () => {
    clients.forEach(closeKernelClient);
    await sql?.end();
    await kernel?.stop();
    await db?.close();
  });

  const clientFor = async (tenant: string, scope?: string) => {
    const client = createKeymasterClient({ address: kernel.address, tenantId: tenant, token: await kernel.token({ tenants: [tenant], scope }) });
    clients.push(client);
    return client;
  };

  /** The private key behind a stored version, opened with the test's own copy of the master key. */
  const storedPrivateKey = async (tenant: string, keyId: string, version: number) => {
    const { rows } = await sql.query(`SELECT ciphertext, wrapped_key, kek_version FROM keymaster_key_version WHERE tenant_id = $1 AND alias = $2 AND version = $3`, [
      tenant,
      keyId,
      version,
    ]);
    const row = rows[0];
    return envelope.open(
      { ciphertext: row.ciphertext, wrappedKey: row.wrapped_key, kekVersion: row.kek_version },
      { tenantId: tenant, purpose: 'signing-key', resource: `keys/${keyId}`, version },
      { traceId: 'test', log: quiet },
    );
  };

  test('[A] create answers metadata only; the database holds the private key only as ciphertext', async () => {
    const client = await clientFor('tenant-a');
    for (const { algorithm, name } of ALGORITHMS) {
      const keyId = `a-${name.toLowerCase().replace(/_/g, '-')}`;
      const { key } = await client.createKey({ key: { keyId, algorithm } });
      expect(key).toEqual({
        keyId,
        algorithm,
        primaryVersion: 1,
        minSignVersion: 1,
        minVerifyVersion: 1,
        versions: [{ version: 1, state: KeyVersionState.KEY_VERSION_STATE_ENABLED, createTime: expect.any(Date), destroyTime: undefined }],
        createTime: expect.any(Date),
        updateTime: expect.any(Date),
      });
      expect((await client.getKey({ keyId })).key).toEqual(key);

      const privateDer = await storedPrivateKey('tenant-a', keyId, 1);
      // The ciphertext really is this key's private key (its public half is what GetPublicKey serves)…
      const { pem } = (await client.getPublicKey({ keyId })).publicKey!;
      expect(createPublicKey(createPrivateKey({ key: privateDer, format: 'der', type: 'pkcs8' })).export({ type: 'spki', format: 'pem' })).toBe(pem);
      // …and no column of any keymaster row holds it, or its raw private scalar, in the clear.
      const privateJwk = createPrivateKey({ key: privateDer, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' });
      const secrets = [privateDer.toString('hex'), Buffer.from(String(privateJwk.d), 'base64url').toString('hex')];
      const { rows } = await sql.query(`SELECT t::text AS text FROM keymaster_key_version t WHERE alias = $1`, [keyId]);
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) for (const secret of secrets) expect(row.text.toLowerCase()).not.toContain(secret);
    }
    const { keys } = await client.listKeys({});
    // (kernel.audit, the tenant's audit-log key, appears once its first checkpoint is signed.)
    expect(keys.map((k) => k.keyId).filter((a) => !a.startsWith('kernel.'))).toEqual(['a-ecdsa-p256-sha256', 'a-ed25519', 'a-rsa-pss-3072-sha256']);
  });

  test('[B] signatures verify outside the kernel: OpenSSL with only the PEM from GetPublicKey', async () => {
    const client = await clientFor('tenant-b');
    const message = Buffer.from(`invoice 2026-00042 total 1234.56 EUR ${randomUUID()}`);
    for (const { algorithm, name } of ALGORITHMS) {
      const keyId = `b-${name.toLowerCase().replace(/_/g, '-')}`;
      await client.createKey({ key: { keyId, algorithm } });
      const { pem, jwk, version } = (await client.getPublicKey({ keyId, version: 0 })).publicKey!;
      expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
      expect(JSON.parse(jwk)).toMatchObject({ kid: `${keyId}/1`, use: 'sig' });
      expect(version).toBe(1);

      const signed = (await client.sign({ keyId, input: { $case: 'message', value: message } })).signature!;
      expect(signed).toMatchObject({ version: 1, algorithm });
      expect(opensslVerifies(algorithm, pem, { message }, signed.value)).toBe(true);
      expect(opensslVerifies(algorithm, pem, { message: Buffer.concat([message, Buffer.from('!')]) }, signed.value)).toBe(false);
      expect((await client.verify({ keyId, version: 1, input: { $case: 'message', value: message }, signature: signed.value })).valid).toBe(true);

      if (algorithm !== Algorithm.ALGORITHM_ED25519) {
        // A pre-hashed digest: OpenSSL checks it against the message it was the digest of.
        const byDigest = (await client.sign({ keyId, input: { $case: 'digest', value: sha256(message) } })).signature!;
        expect(opensslVerifies(algorithm, pem, { message }, byDigest.value)).toBe(true);
        expect(opensslVerifies(algorithm, pem, { digest: sha256(message) }, byDigest.value)).toBe(true);
      } else {
        const refused = await refusal(client.sign({ keyId, input: { $case: 'digest', value: sha256(message) } }));
        expect([refused.code, refused.reason]).toEqual([Status.INVALID_ARGUMENT, 'DIGEST_UNSUPPORTED']);
      }
      // Garbage is simply not a valid signature.
      const garbage = await client.verify({ keyId, version: 1, input: { $case: 'message', value: message }, signature: Buffer.from('not a signature') });
      expect(garbage).toEqual({ valid: false, version: 1, refusal: '' });
    }
  });

  test('[C] rotation: new signatures use v2, v1 signatures verify until the minimum verify version passes them, signing below the minimum sign version is refused', async () => {
    const client = await clientFor('tenant-c');
    const keyId = 'rotating';
    const message = Buffer.from('ledger batch 7');
    const input = { $case: 'message' as const, value: message };
    await client.createKey({ key: { keyId, algorithm: Algorithm.ALGORITHM_ECDSA_P256_SHA256 } });
    const v1 = (await client.sign({ keyId, input })).signature!;
    expect(v1.version).toBe(1);

    const { key } = await client.rotateKey({ keyId });
    expect(key).toMatchObject({ primaryVersion: 2, versions: [expect.objectContaining({ version: 1 }), expect.objectContaining({ version: 2 })] });
    const v2 = (await client.sign({ keyId, input })).signature!;
    expect(v2.version).toBe(2);
    const pem1 = (await client.getPublicKey({ keyId, version: 1 })).publicKey!.pem;
    const pem2 = (await client.getPublicKey({ keyId, version: 2 })).publicKey!.pem;
    expect(pem2).not.toBe(pem1);
    expect(opensslVerifies(Algorithm.ALGORITHM_ECDSA_P256_SHA256, pem2, { message }, v2.value)).toBe(true);
    expect(opensslVerifies(Algorithm.ALGORITHM_ECDSA_P256_SHA256, pem1, { message }, v2.value)).toBe(false);

    // v1 still verifies, and may still sign when asked for explicitly.
    expect((await client.verify({ keyId, version: 1, input, signature: v1.value })).valid).toBe(true);
    expect((await client.sign({ keyId, version: 1, input })).signature!.version).toBe(1);

    await client.updateKeyPolicy({ keyId, minSignVersion: 2, minVerifyVersion: 1 });
    const below = await refusal(client.sign({ keyId, version: 1, input }));
    expect([below.code, below.reason]).toEqual([Status.FAILED_PRECONDITION, 'BELOW_MIN_SIGN_VERSION']);
    expect((await client.verify({ keyId, version: 1, input, signature: v1.value })).valid).toBe(true);

    await client.updateKeyPolicy({ keyId, minSignVersion: 2, minVerifyVersion: 2 });
    expect(await client.verify({ keyId, version: 1, input, signature: v1.value })).toEqual({ valid: false, version: 1, refusal: 'BELOW_MIN_VERIFY_VERSION' });
    expect((await client.verify({ keyId, version: 2, input, signature: v2.value })).valid).toBe(true);

    const invalid = await refusal(client.updateKeyPolicy({ keyId, minSignVersion: 3, minVerifyVersion: 1 }));
    expect([invalid.code, invalid.reason]).toEqual([Status.INVALID_ARGUMENT, 'POLICY_INVALID']);

    // A disabled version neither signs nor verifies (its private key may still sit in this
    // node's cache: the state is read in the signing transaction); enabled again, it signs again.
    await client.updateKeyPolicy({ keyId, minSignVersion: 1, minVerifyVersion: 1 });
    expect((await client.sign({ keyId, version: 1, input })).signature!.version).toBe(1); // warms the cache with v1
    await client.disableKeyVersion({ keyId, version: 1 });
    const disabled = await refusal(client.sign({ keyId, version: 1, input }));
    expect([disabled.code, disabled.reason]).toEqual([Status.FAILED_PRECONDITION, 'KEY_VERSION_DISABLED']);
    expect(await client.verify({ keyId, version: 1, input, signature: v1.value })).toEqual({ valid: false, version: 1, refusal: 'KEY_VERSION_DISABLED' });
    expect((await client.sign({ keyId, input })).signature!.version).toBe(2); // the primary is untouched
    await client.enableKeyVersion({ keyId, version: 1 });
    const again = (await client.sign({ keyId, version: 1, input })).signature!;
    expect(again.version).toBe(1);
    expect(opensslVerifies(Algorithm.ALGORITHM_ECDSA_P256_SHA256, pem1, { message }, again.value)).toBe(true);
    expect((await client.verify({ keyId, version: 1, input, signature: v1.value })).valid).toBe(true);
  });

  test("[D] tenant B cannot use tenant A's key_id (NOT_FOUND), and RLS hides A's keys from raw SQL under the application role", async () => {
    const owner = await clientFor('tenant-d-a');
    const other = await clientFor('tenant-d-b');
    const signature = await owner.createKey({ key: { keyId: 'shared-name', algorithm: Algorithm.ALGORITHM_ED25519 } }).then(async () =>
      (await owner.sign({ keyId: 'shared-name', input: { $case: 'message', value: Buffer.from('x') } })).signature!.value,
    );
    const attempts = [
      other.getKey({ keyId: 'shared-name' }),
      other.getPublicKey({ keyId: 'shared-name' }),
      other.sign({ keyId: 'shared-name', input: { $case: 'message', value: Buffer.from('x') } }),
      other.verify({ keyId: 'shared-name', input: { $case: 'message', value: Buffer.from('x') }, signature }),
      other.rotateKey({ keyId: 'shared-name' }),
      other.disableKeyVersion({ keyId: 'shared-name', version: 1 }),
    ];
    for (const attempt of attempts) {
      const refused = await refusal(attempt);
      expect([refused.code, refused.reason]).toEqual([Status.NOT_FOUND, 'KEY_NOT_FOUND']);
    }
    expect((await other.listKeys({})).keys).toEqual([]);
    // B may create its own key under the same key_id: key ids are tenant-relative.
    await other.createKey({ key: { keyId: 'shared-name', algorithm: Algorithm.ALGORITHM_ED25519 } });
    // Each tenant's signatures are made with its own private key, whatever this node has cached
    // for the other tenant's key of the same key_id (A's key was used, and cached, above): each
    // verifies with its own tenant's public key only, checked here with node:crypto.
    const message = Buffer.from('same key_id, two tenants');
    const pemOf = async (client: KeymasterClient) => (await client.getPublicKey({ keyId: 'shared-name', version: 1 })).publicKey!.pem;
    const [pemA, pemB] = [await pemOf(owner), await pemOf(other)];
    expect(pemB).not.toBe(pemA);
    for (const [signer, own, foreign] of [
      [other, pemB, pemA],
      [owner, pemA, pemB],
    ] as const) {
      const sig = (await signer.sign({ keyId: 'shared-name', input: { $case: 'message', value: message } })).signature!.value;
      expect(verifySignature(null, message, createPublicKey(own), sig)).toBe(true);
      expect(verifySignature(null, message, createPublicKey(foreign), sig)).toBe(false);
    }

    const tenantToken = await kernel.token({ tenants: ['tenant-d-a'] });
    const intruder = createKeymasterClient({ address: kernel.address, tenantId: 'tenant-d-b', token: tenantToken });
    clients.push(intruder);
    const denied = await refusal(intruder.getKey({ keyId: 'shared-name' }));
    expect([denied.code, denied.reason]).toEqual([Status.PERMISSION_DENIED, 'TENANT_NOT_ALLOWED']);

    await sql.query('BEGIN');
    try {
      await sql.query(`SET LOCAL ROLE axis_kernel_app`);
      await sql.query(`SELECT set_config('axis.tenant_id', 'tenant-d-b', true)`);
      const { rows } = await sql.query(`SELECT tenant_id, alias, version FROM keymaster_key_version WHERE alias = 'shared-name'`);
      expect(rows).toEqual([{ tenant_id: 'tenant-d-b', alias: 'shared-name', version: 1 }]);
      const keys = await sql.query(`SELECT tenant_id FROM keymaster_key`);
      expect(new Set(keys.rows.map((r) => r.tenant_id))).toEqual(new Set(['tenant-d-b']));
    } finally {
      await sql.query('ROLLBACK');
    }
  });

  test('[E] every create/sign/rotate/policy change is audited with the trace id; a destroyed version neither signs nor verifies; restore inside the window works', async () => {
    const client = await clientFor('tenant-e');
    const keyId = 'audited';
    const input = { $case: 'message' as const, value: Buffer.from('audit me') };
    const traced = () => {
      const traceId = randomUUID().replace(/-/g, '');
      return { traceId, metadata: Metadata({ traceparent: `00-${traceId}-${'2'.repeat(16)}-01` }) };
    };
    const calls: Array<{ traceId: string; action: string; resource: string }> = [];
    const audited = async (action: string, resource: string, call: (metadata: Metadata) => Promise<unknown>) => {
      const { traceId, metadata } = traced();
      await call(metadata);
      calls.push({ traceId, action: `axis.kernel.keymaster.v1.KeymasterService/${action}`, resource });
    };
    await audited('CreateKey', 'keys/audited', (metadata) => client.createKey({ key: { keyId, algorithm: Algorithm.ALGORITHM_ED25519 } }, { metadata }));
    await audited('Sign', 'keys/audited/versions/1', (metadata) => client.sign({ keyId, input }, { metadata }));
    await audited('RotateKey', 'keys/audited', (metadata) => client.rotateKey({ keyId }, { metadata }));
    await audited('UpdateKeyPolicy', 'keys/audited', (metadata) => client.updateKeyPolicy({ keyId, minSignVersion: 1, minVerifyVersion: 1 }, { metadata }));
    const v1 = (await client.sign({ keyId, version: 1, input })).signature!;

    // Restore inside the window: the version is back, signing and verifying as before.
    await audited('ScheduleKeyVersionDestruction', 'keys/audited/versions/1', (metadata) =>
      client.scheduleKeyVersionDestruction({ keyId, version: 1, restoreWindow: { seconds: 600, nanos: 0 } }, { metadata }),
    );
    const scheduled = await refusal(client.sign({ keyId, version: 1, input }));
    expect([scheduled.code, scheduled.reason]).toEqual([Status.FAILED_PRECONDITION, 'KEY_VERSION_DESTRUCTION_SCHEDULED']);
    expect(await client.verify({ keyId, version: 1, input, signature: v1.value })).toEqual({ valid: false, version: 1, refusal: 'KEY_VERSION_DESTRUCTION_SCHEDULED' });
    await audited('RestoreKeyVersion', 'keys/audited/versions/1', (metadata) => client.restoreKeyVersion({ keyId, version: 1 }, { metadata }));
    expect((await client.verify({ keyId, version: 1, input, signature: v1.value })).valid).toBe(true);
    expect((await client.sign({ keyId, version: 1, input })).signature!.version).toBe(1);

    // Past the window the version is destroyed: no signing, no verifying, no material, no restore.
    await client.scheduleKeyVersionDestruction({ keyId, version: 1, restoreWindow: { seconds: 1, nanos: 0 } });
    await waitFor(async () => {
      const { rows } = await sql.query(`SELECT state, ciphertext IS NULL AS erased FROM keymaster_key_version WHERE tenant_id = 'tenant-e' AND alias = $1 AND version = 1`, [keyId]);
      return rows[0].state === 'DESTROYED' && rows[0].erased === true;
    });
    const { key } = await client.getKey({ keyId });
    expect(key!.versions[0]).toMatchObject({ version: 1, state: KeyVersionState.KEY_VERSION_STATE_DESTROYED });
    const destroyed = await refusal(client.sign({ keyId, version: 1, input }));
    expect([destroyed.code, destroyed.reason]).toEqual([Status.FAILED_PRECONDITION, 'KEY_VERSION_DESTROYED']);
    expect(await client.verify({ keyId, version: 1, input, signature: v1.value })).toEqual({ valid: false, version: 1, refusal: 'KEY_VERSION_DESTROYED' });
    const noRestore = await refusal(client.restoreKeyVersion({ keyId, version: 1 }));
    expect([noRestore.code, noRestore.reason]).toEqual([Status.FAILED_PRECONDITION, 'KEY_VERSION_DESTROYED']);
    const noPublicKey = await refusal(client.getPublicKey({ keyId, version: 1 }));
    expect([noPublicKey.code, noPublicKey.reason]).toEqual([Status.FAILED_PRECONDITION, 'KEY_VERSION_DESTROYED']);

    // One audit entry per change, carrying the caller's trace id; the destruction by the kernel too.
    for (const call of calls) {
      const { rows } = await sql.query(`SELECT action, resource, outcome, principal FROM kernel_audit_event WHERE tenant_id = 'tenant-e' AND trace_id = $1`, [call.traceId]);
      expect(rows).toEqual([{ action: call.action, resource: call.resource, outcome: 'OK', principal: 'tester' }]);
    }
    const { rows: destruction } = await sql.query(
      `SELECT principal FROM kernel_audit_event WHERE tenant_id = 'tenant-e' AND action = 'axis.kernel.keymaster.v1.KeymasterService/DestroyKeyVersion' AND resource = 'keys/audited/versions/1'`,
    );
    expect(destruction).toEqual([{ principal: 'system:kernel' }]);
  });

  test('no log line and no audit row of the run contains private key material', async () => {
    const { rows: versions } = await sql.query(`SELECT tenant_id, alias, version FROM keymaster_key_version WHERE ciphertext IS NOT NULL`);
    expect(versions.length).toBeGreaterThan(10);
    const needles: string[] = [];
    for (const v of versions) {
      const der = await storedPrivateKey(v.tenant_id, v.alias, v.version);
      const keyObject = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
      const d = String(keyObject.export({ format: 'jwk' }).d);
      needles.push(der.toString('base64'), der.toString('hex'), d, Buffer.from(d, 'base64url').toString('hex'), Buffer.from(d, 'base64url').toString('base64'));
      needles.push(...String(keyObject.export({ type: 'pkcs8', format: 'pem' })).split('\n').filter((line) => line.length >= 60));
    }
    const { rows: audit } = await sql.query(`SELECT t::text AS text FROM kernel_audit_event t`);
    const haystacks = [kernel.logs.text(), ...audit.map((r) => r.text)];
    for (const needle of needles) for (const haystack of haystacks) expect(haystack.includes(needle)).toBe(false);
  });
});
