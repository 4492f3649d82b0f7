import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as fc from 'fast-check';
import { ClientError, createChannel, createClient, Metadata, Status, type CallOptions, type Channel } from 'nice-grpc';
import { SecretKind } from '../../gen/proto/axis/kernel/secrets/v1/secret';
import { SecretServiceDefinition } from '../../gen/proto/axis/kernel/secrets/v1/secret_service';
import { CRASH_CODES, errorContractBreaches as breaches, type Outcome } from '../support/error-contract';
import {
  decodes,
  rawMethodDefinitions,
  describeValue,
  encodeHostile,
  hostilePageTokens,
  hostileRequests,
  loadService,
  MintedPageToken,
  probeRequests,
  undecodableBytes,
  type FieldHints,
  type HostileRequest,
  type TsProtoType,
} from '../support/hostile-requests';
import { forgeUnsignedPageToken, kernelPageTokenMinter, type PageTokenMinter } from '../support/page-tokens';
import { startTestKernel, type TestKernel } from '../support/test-kernel';
import { opensslCertificate } from './secret-fixtures';

/**
 * Hostile input to every SecretService RPC (taken from the generated definition): extreme field
 * values one at a time, random field values and undecodable bytes each get a success or a
 * well-formed kernel.axis error (one ErrorInfo, the call's trace id) — never INTERNAL, UNKNOWN or
 * DATA_LOSS — and the kernel keeps serving. HOSTILE_RUNS and HOSTILE_SEED as in
 * tests/platform/hostile-input.spec.ts.
 */
const TENANT = 'fuzz';
const RUNS = Number(process.env.HOSTILE_RUNS ?? 30);
const SEED = process.env.HOSTILE_SEED === undefined ? undefined : Number(process.env.HOSTILE_SEED);
const SERVICE_NAME = SecretServiceDefinition.fullName;
const DESCRIPTORS = loadService(SERVICE_NAME);

const METHODS = Object.values(SecretServiceDefinition.methods).map((m) => {
  const input = DESCRIPTORS.methods.find((d) => d.name === m.name)?.input;
  if (!input) throw new Error(`${m.name} is missing from gen/descriptor.binpb (regenerate it)`);
  return {
    name: m.name,
    path: `/${SERVICE_NAME}/${m.name}`,
    requestType: m.requestType as unknown as TsProtoType<unknown>,
    responseType: m.responseType as unknown as TsProtoType<unknown>,
    input,
  };
});
type FuzzedMethod = (typeof METHODS)[number];

const RAW_DEFINITION = rawMethodDefinitions(METHODS);

const CERTIFICATE = opensslCertificate(30, 'fuzz.example').certificate;
const SECRET_IDS = ['fz-opaque', 'fz-cert', 'fz-rotating'];
const HINTS: FieldHints = {
  secretId: fc.oneof(
    { arbitrary: fc.constantFrom(...SECRET_IDS), weight: 6 },
    { arbitrary: fc.constantFrom('missing', 'x'.repeat(63), 'x'.repeat(64), 'Upper', '-lead', 'a/b'), weight: 1 },
  ),
  version: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constantFrom(-1, 2 ** 31, 2 ** 53)),
  expectedLatestVersion: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constantFrom(-1, 2 ** 31)),
  pageSize: fc.integer({ min: 0, max: 1001 }),
  pageToken: fc.oneof(hostilePageTokens((position) => forgeUnsignedPageToken(position, { versions: 'fz-opaque' })), fc.integer().map((v) => new MintedPageToken(v))),
};

describe('SecretService hostile input', () => {
  let kernel: TestKernel;
  let channel: Channel;
  let client: Record<string, (request: Uint8Array, options?: CallOptions) => Promise<unknown>>;
  let rawClient: grpc.Client;
  let token: string;

  const method = (name: string) => METHODS.find((m) => m.name === name)!;
  const encode = (m: FuzzedMethod, partial: Record<string, unknown>) => m.requestType.encode(m.requestType.fromPartial(partial)).finish();
  const metadata = () => Metadata({ authorization: `Bearer ${token}`, 'x-tenant-id': TENANT, 'idempotency-key': randomUUID() });

  async function send(m: FuzzedMethod, bytes: Uint8Array): Promise<Outcome> {
    let trailer: Metadata | undefined;
    try {
      await client[m.name](bytes, { metadata: metadata(), onTrailer: (t) => (trailer = t), signal: AbortSignal.timeout(20_000) });
      return { ok: true, code: Status.OK, trailer };
    } catch (error) {
      if (error instanceof ClientError) return { ok: false, code: error.code, trailer };
      throw error;
    }
  }

  function expectOk(outcome: Outcome): void {
    if (!outcome.ok) throw new Error(`fixture call failed: ${Status[outcome.code]}`);
  }

  let minter: PageTokenMinter;

  beforeAll(async () => {
    kernel = await startTestKernel();
    minter = await kernelPageTokenMinter(kernel.databaseUrl);
    token = await kernel.token({ tenants: [TENANT] });
    channel = createChannel(kernel.address);
    client = createClient(RAW_DEFINITION, channel) as unknown as typeof client;
    rawClient = new grpc.Client(kernel.address, grpc.credentials.createInsecure());
    const create = method('CreateSecret');
    const add = method('AddSecretVersion');
    expectOk(await send(create, encode(create, { secret: { secretId: 'fz-opaque', kind: SecretKind.SECRET_KIND_OPAQUE } })));
    expectOk(await send(create, encode(create, { secret: { secretId: 'fz-cert', kind: SecretKind.SECRET_KIND_CERTIFICATE, rotationPeriod: { seconds: 3600, nanos: 0 } } })));
    expectOk(await send(create, encode(create, { secret: { secretId: 'fz-rotating', kind: SecretKind.SECRET_KIND_CREDENTIAL } })));
    for (let i = 0; i < 3; i++) {
      expectOk(await send(add, encode(add, { secretId: 'fz-opaque', value: Buffer.from(`v${i}`) })));
      expectOk(await send(add, encode(add, { secretId: 'fz-rotating', value: Buffer.from(`r${i}`) })));
    }
    expectOk(await send(add, encode(add, { secretId: 'fz-cert', value: Buffer.from(CERTIFICATE) })));
  });

  afterAll(async () => {
    rawClient?.close();
    channel?.close();
    await kernel?.stop();
  });

  const options = (runs: number): fc.Parameters<unknown> => ({ numRuns: runs, seed: SEED, plugins: [fc.interruptAfterTimeLimit(40_000)] });

  describe.each(METHODS.map((m) => [m.name, m] as const))('%s', (name, m) => {
    const mint = (request: unknown, position: unknown, otherTenant: boolean) => minter.mint(m, otherTenant ? `${TENANT}-other` : TENANT, request as { pageToken: string }, position);

    async function probe(request: HostileRequest): Promise<string | undefined> {
      const outcome = await send(m, encodeHostile(m.requestType, m.input, request, mint));
      const problems = breaches(outcome);
      return problems.length ? `${name}(${describeValue(request.partial)}): ${problems.join('; ')}` : undefined;
    }

    test('one field at a time at an extreme of its kind, and random field values: never INTERNAL, always a well-formed error', async () => {
      const failures: string[] = [];
      for (const request of probeRequests(DESCRIPTORS, name, { secretId: 'fz-opaque', version: 1, pageToken: '', pageSize: 0, value: Buffer.from('probe') })) {
        const failure = await probe(request);
        if (failure) failures.push(failure);
      }
      if (failures.length) throw new Error(failures.join('\n'));
      await fc.assert(
        fc.asyncProperty(hostileRequests(DESCRIPTORS, name, HINTS), async (request) => {
          const failure = await probe(request);
          if (failure) throw new Error(failure);
        }),
        options(RUNS),
      );
    });

    test('garbage bytes are refused and the server keeps serving', async () => {
      const valid = hostileRequests(DESCRIPTORS, name, HINTS).map((r) => encodeHostile(m.requestType, m.input, r, mint));
      await fc.assert(
        fc.asyncProperty(undecodableBytes(m.requestType, valid), async (garbage) => {
          const result = await rawCall(m.path, Buffer.from(garbage));
          if (!decodes(m.requestType, garbage)) expect(result).not.toBe(grpc.status.OK);
          else expect(CRASH_CODES.has(result as number as Status)).toBe(false);
        }),
        options(10),
      );
      const get = method('GetSecret');
      expect((await send(get, encode(get, { secretId: 'fz-opaque' }))).ok).toBe(true);
    });
  });

  function rawCall(path: string, body: Buffer): Promise<grpc.status> {
    return new Promise((resolve) => {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${token}`);
      md.set('x-tenant-id', TENANT);
      md.set('idempotency-key', randomUUID());
      rawClient.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, body, md, { deadline: Date.now() + 20_000 }, (error) => resolve(error ? error.code : grpc.status.OK));
    });
  }
});
