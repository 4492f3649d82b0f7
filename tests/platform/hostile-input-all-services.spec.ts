import { randomUUID } from 'node:crypto';
import * as fc from 'fast-check';
import { ClientError, createChannel, createClient, Metadata, Status, type CallOptions, type Channel } from 'nice-grpc';
import { SequenceServiceDefinition } from '../../gen/proto/axis/kernel/sequences/v1/sequence_service';
import { errorContractBreaches, reasonOf, type Outcome } from '../support/error-contract';
import { decodes, describeValue, encodeHostile, hostileRequests, loadService, rawMethodDefinitions, undecodableBytes, type TsProtoType } from '../support/hostile-requests';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/**
 * Every RPC of every capability the kernel serves — read from the running kernel, never a
 * hand-written list — gets random, malformed and undecodable requests: each must be answered with
 * success or a well-formed kernel.axis error (never INTERNAL/UNKNOWN/UNIMPLEMENTED/DATA_LOSS, see
 * CRASH_CODES),
 * and the kernel keeps serving. (SequenceService has its own deeper fuzzing in
 * hostile-input.spec.ts, with fixtures that reach its ledger.) Server-streaming RPCs are
 * exercised by their capability's own tests. HOSTILE_RUNS changes the runs per method.
 */
const RUNS = Number(process.env.HOSTILE_RUNS ?? 25);
const TENANT = 'fuzz-all';

interface Rpc {
  service: string;
  name: string;
  path: string;
  requestType: TsProtoType<unknown>;
  responseType: TsProtoType<unknown>;
}

describe('hostile input to every capability', () => {
  let kernel: TestKernel;
  let channel: Channel;
  let token: string;
  const rpcs: Rpc[] = [];

  beforeAll(async () => {
    kernel = await startTestKernel();
    token = await kernel.token({ tenants: [TENANT], sub: 'fuzzer' });
    channel = createChannel(kernel.address);
    for (const definition of kernel.kernel.services) {
      if (definition.fullName === SequenceServiceDefinition.fullName) continue;
      for (const m of Object.values(definition.methods)) {
        if (m.requestStream || m.responseStream) continue;
        rpcs.push({
          service: definition.fullName,
          name: m.name,
          path: `/${definition.fullName}/${m.name}`,
          requestType: m.requestType as unknown as TsProtoType<unknown>,
          responseType: m.responseType as unknown as TsProtoType<unknown>,
        });
      }
    }
  });

  afterAll(async () => {
    channel?.close();
    await kernel?.stop();
  });

  async function send(rpc: Rpc, bytes: Uint8Array): Promise<Outcome> {
    const client = createClient(rawMethodDefinitions([{ name: 'call', path: rpc.path, responseType: rpc.responseType }]), channel) as unknown as {
      call(b: Uint8Array, o: CallOptions): Promise<unknown>;
    };
    let trailer: Metadata | undefined;
    const metadata = Metadata({ authorization: `Bearer ${token}`, 'x-tenant-id': TENANT, 'idempotency-key': randomUUID() });
    try {
      const response = await client.call(bytes, { metadata, onTrailer: (t) => (trailer = t), signal: AbortSignal.timeout(30_000) });
      return { ok: true, code: Status.OK, response, trailer };
    } catch (error) {
      if (error instanceof ClientError) return { ok: false, code: error.code, trailer };
      throw error;
    }
  }

  it('finds capabilities besides sequences to fuzz', () => {
    expect(new Set(rpcs.map((r) => r.service)).size).toBeGreaterThanOrEqual(2);
  });

  it('answers random and malformed field values to every RPC with success or a well-formed kernel.axis error', async () => {
    const failures: string[] = [];
    for (const rpc of rpcs) {
      const descriptors = loadService(rpc.service);
      const input = descriptors.methods.find((m) => m.name === rpc.name)!.input;
      await fc.assert(
        fc.asyncProperty(hostileRequests(descriptors, rpc.name, {}), async (request) => {
          const outcome = await send(rpc, encodeHostile(rpc.requestType, input, request));
          const problems = errorContractBreaches(outcome);
          if (problems.length) {
            failures.push(`${rpc.path} answered ${Status[outcome.code]} ${reasonOf(outcome) ?? ''} to ${describeValue(request.partial)}: ${problems.join('; ')}`);
          }
        }),
        { numRuns: RUNS },
      );
    }
    expect(failures).toEqual([]);
  });

  it('refuses undecodable bytes to every RPC with a gRPC error and keeps serving', async () => {
    for (const rpc of rpcs) {
      const descriptors = loadService(rpc.service);
      const input = descriptors.methods.find((m) => m.name === rpc.name)!.input;
      const valid = hostileRequests(descriptors, rpc.name, {}).map((r) => encodeHostile(rpc.requestType, input, r));
      await fc.assert(
        fc.asyncProperty(undecodableBytes(rpc.requestType, valid), async (garbage) => {
          expect(decodes(rpc.requestType, garbage)).toBe(false);
          const outcome = await send(rpc, garbage);
          expect(outcome.ok).toBe(false);
          expect(errorContractBreaches(outcome)).toEqual([]);
        }),
        { numRuns: 5 },
      );
    }
    const masked = kernel.logs.entries().filter((e) => e.msg === 'unhandled error (masked as INTERNAL)');
    expect(masked.map((e) => `${e.method}: ${JSON.stringify(e.err).slice(0, 300)}`)).toEqual([]);
  });
});
