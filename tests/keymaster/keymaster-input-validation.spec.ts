import { Status } from 'nice-grpc-common';
import { closeKernelClient, createKeymasterClient, type KeymasterClient } from '../../clients/src';
import { Algorithm } from '../../gen/proto/axis/kernel/keymaster/v1/key';
import { refusal } from '../support/refusal';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

describe('Keymaster refuses bad input precisely and changes nothing', () => {
  let kernel: TestKernel;
  let client: KeymasterClient;
  const message = { $case: 'message' as const, value: Buffer.from('m') };

  beforeAll(async () => {
    kernel = await startTestKernel();
    client = createKeymasterClient({ address: kernel.address, tenantId: 'tenant-v', token: await kernel.token({ tenants: ['tenant-v'] }) });
    await client.createKey({ key: { keyId: 'ed', algorithm: Algorithm.ALGORITHM_ED25519 } });
    await client.createKey({ key: { keyId: 'ec', algorithm: Algorithm.ALGORITHM_ECDSA_P256_SHA256 } });
  });

  afterAll(async () => {
    closeKernelClient(client);
    await kernel?.stop();
  });

  const expectRefusal = async (call: Promise<unknown>, code: Status, reason: string) => {
    const refused = await refusal(call);
    expect([Status[refused.code], refused.reason]).toEqual([Status[code], reason]);
    return refused;
  };

  it('refuses unknown key ids and versions with NOT_FOUND', async () => {
    await expectRefusal(client.getKey({ keyId: 'nope' }), Status.NOT_FOUND, 'KEY_NOT_FOUND');
    await expectRefusal(client.sign({ keyId: 'nope', input: message }), Status.NOT_FOUND, 'KEY_NOT_FOUND');
    await expectRefusal(client.sign({ keyId: 'ed', version: 9, input: message }), Status.NOT_FOUND, 'KEY_VERSION_NOT_FOUND');
    await expectRefusal(client.getPublicKey({ keyId: 'ed', version: 9 }), Status.NOT_FOUND, 'KEY_VERSION_NOT_FOUND');
    await expectRefusal(client.verify({ keyId: 'ed', version: 9, input: message, signature: Buffer.alloc(64) }), Status.NOT_FOUND, 'KEY_VERSION_NOT_FOUND');
  });

  it('refuses malformed creation requests', async () => {
    await expectRefusal(client.createKey({ key: { keyId: 'k', algorithm: Algorithm.ALGORITHM_UNSPECIFIED } }), Status.INVALID_ARGUMENT, 'ENUM_UNSPECIFIED');
    await expectRefusal(client.createKey({ key: { keyId: 'k', algorithm: 42 as Algorithm } }), Status.INVALID_ARGUMENT, 'ENUM_UNSPECIFIED');
    for (const keyId of ['', 'Upper', '-lead', 'x'.repeat(64), 'sp ace', 'ümlaut']) {
      const refused = await expectRefusal(client.createKey({ key: { keyId, algorithm: Algorithm.ALGORITHM_ED25519 } }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
      expect(refused.fieldViolations.map((v) => v.field)).toEqual(['key.key_id']);
    }
    await expectRefusal(client.createKey({ key: { keyId: 'ed', algorithm: Algorithm.ALGORITHM_ED25519 } }), Status.ALREADY_EXISTS, 'KEY_EXISTS');
  });

  it('refuses signing input that does not fit the algorithm', async () => {
    await expectRefusal(client.sign({ keyId: 'ec', input: undefined }), Status.INVALID_ARGUMENT, 'INPUT_MISSING');
    await expectRefusal(client.sign({ keyId: 'ec', input: { $case: 'digest', value: Buffer.alloc(31) } }), Status.INVALID_ARGUMENT, 'DIGEST_LENGTH_INVALID');
    await expectRefusal(client.sign({ keyId: 'ec', input: { $case: 'digest', value: Buffer.alloc(64) } }), Status.INVALID_ARGUMENT, 'DIGEST_LENGTH_INVALID');
    await expectRefusal(client.sign({ keyId: 'ed', input: { $case: 'digest', value: Buffer.alloc(32) } }), Status.INVALID_ARGUMENT, 'DIGEST_UNSUPPORTED');
    await expectRefusal(client.sign({ keyId: 'ec', input: { $case: 'message', value: Buffer.alloc(64 * 1024 + 1) } }), Status.INVALID_ARGUMENT, 'MESSAGE_TOO_LARGE');
    await expectRefusal(client.sign({ keyId: 'ec', version: -1, input: message }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
  });

  it('answers garbage signatures with valid = false and refuses oversized ones', async () => {
    for (const signature of [Buffer.alloc(0), Buffer.from('garbage'), Buffer.alloc(64, 0xff), Buffer.alloc(72)]) {
      expect(await client.verify({ keyId: 'ec', input: message, signature })).toEqual({ valid: false, version: 1, refusal: '' });
      expect(await client.verify({ keyId: 'ed', input: message, signature })).toEqual({ valid: false, version: 1, refusal: '' });
    }
    expect((await client.verify({ keyId: 'ec', input: { $case: 'digest', value: Buffer.alloc(32) }, signature: Buffer.from('x') })).valid).toBe(false);
    await expectRefusal(client.verify({ keyId: 'ec', input: message, signature: Buffer.alloc(1025) }), Status.INVALID_ARGUMENT, 'SIGNATURE_TOO_LARGE');
  });

  it('refuses version transitions that do not apply', async () => {
    await expectRefusal(client.disableKeyVersion({ keyId: 'ed', version: 1 }), Status.FAILED_PRECONDITION, 'KEY_VERSION_IS_PRIMARY');
    await expectRefusal(client.scheduleKeyVersionDestruction({ keyId: 'ed', version: 1 }), Status.FAILED_PRECONDITION, 'KEY_VERSION_IS_PRIMARY');
    await expectRefusal(client.enableKeyVersion({ keyId: 'ed', version: 1 }), Status.FAILED_PRECONDITION, 'KEY_VERSION_NOT_DISABLED');
    await expectRefusal(client.restoreKeyVersion({ keyId: 'ed', version: 1 }), Status.FAILED_PRECONDITION, 'KEY_VERSION_NOT_SCHEDULED');
    await expectRefusal(client.disableKeyVersion({ keyId: 'ed', version: 0 }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefusal(
      client.scheduleKeyVersionDestruction({ keyId: 'ed', version: 1, restoreWindow: { seconds: 1, nanos: 0 } }),
      Status.INVALID_ARGUMENT,
      'RESTORE_WINDOW_INVALID',
    );
    await expectRefusal(
      client.scheduleKeyVersionDestruction({ keyId: 'ed', version: 1, restoreWindow: { seconds: 91 * 24 * 3600, nanos: 0 } }),
      Status.INVALID_ARGUMENT,
      'RESTORE_WINDOW_INVALID',
    );
    await expectRefusal(client.updateKeyPolicy({ keyId: 'ed', minSignVersion: 0, minVerifyVersion: 0 }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    // Nothing of it changed the key.
    const { key } = await client.getKey({ keyId: 'ed' });
    expect(key).toMatchObject({ primaryVersion: 1, minSignVersion: 1, minVerifyVersion: 1, versions: [expect.objectContaining({ version: 1, state: 1 })] });
  });

  it('disables and enables a non-primary version', async () => {
    await client.rotateKey({ keyId: 'ec' });
    await client.disableKeyVersion({ keyId: 'ec', version: 1 });
    await expectRefusal(client.sign({ keyId: 'ec', version: 1, input: message }), Status.FAILED_PRECONDITION, 'KEY_VERSION_DISABLED');
    await expectRefusal(client.disableKeyVersion({ keyId: 'ec', version: 1 }), Status.FAILED_PRECONDITION, 'KEY_VERSION_NOT_ENABLED');
    await client.enableKeyVersion({ keyId: 'ec', version: 1 });
    expect((await client.sign({ keyId: 'ec', version: 1, input: message })).signature!.version).toBe(1);
  });

  it('needs keymaster:sign to sign and keymaster:admin to re-wrap', async () => {
    const reader = createKeymasterClient({
      address: kernel.address,
      tenantId: 'tenant-v',
      token: await kernel.token({ tenants: ['tenant-v'], scope: 'keymaster:read keymaster:write' }),
    });
    try {
      await expectRefusal(reader.sign({ keyId: 'ed', input: message }), Status.PERMISSION_DENIED, 'SCOPE_MISSING');
      await expectRefusal(reader.rewrapDataKeys({ limit: 10 }), Status.PERMISSION_DENIED, 'SCOPE_MISSING');
      expect((await reader.verify({ keyId: 'ed', input: message, signature: Buffer.alloc(64) })).valid).toBe(false);
    } finally {
      closeKernelClient(reader);
    }
    expect(await client.rewrapDataKeys({ limit: 10 })).toEqual({ rewrapped: 0, remaining: 0, activeKekVersion: 1 });
    await expectRefusal(client.rewrapDataKeys({ limit: 10_001 }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
  });
});
