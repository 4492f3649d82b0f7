import { randomUUID } from 'node:crypto';
import * as fc from 'fast-check';
import { SignJWT } from 'jose';
import { ClientError, createChannel, createClient, Metadata, Status, type CallOptions, type Channel } from 'nice-grpc';
import { SequenceServiceDefinition } from '../../gen/proto/axis/kernel/sequences/v1/sequence_service';
import { errorContractBreaches, reasonOf, type Outcome } from '../support/error-contract';
import {
  decodes,
  describeValue,
  encodeHostile,
  HostileRequest,
  hostilePageTokens,
  hostileRequests,
  hostileString,
  loadService,
  MintedPageToken,
  mustBeRefused,
  NASTY_CHARACTERS,
  probeRequests,
  rawMethodDefinitions,
  undecodableBytes,
  type EncodingReport,
  type FieldHints,
  type TsProtoType,
} from '../support/hostile-requests';
import { forgeUnsignedPageToken, kernelPageTokenMinter, type PageTokenMinter } from '../support/page-tokens';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/**
 * Every RPC of every capability the kernel serves — read from the running kernel, never a
 * hand-written list — gets random, malformed and undecodable requests: each must be answered with
 * success or a well-formed kernel.axis error (never INTERNAL/UNKNOWN/UNIMPLEMENTED/DATA_LOSS, see
 * CRASH_CODES, and never UNAVAILABLE: the database is up, so an UNAVAILABLE here is a bad input
 * answered as an outage, which clients retry forever), and the kernel keeps serving.
 * (SequenceService has its own deeper fuzzing in hostile-input.spec.ts, with fixtures that reach
 * its ledger.) Server-streaming RPCs are exercised by their capability's own tests.
 *
 * Besides random field values the requests carry what the generated code cannot express and the
 * kernel must refuse by name (tests/support/hostile-requests.ts): strings that are not UTF-8 at
 * any depth, Struct keys with U+0000 and other nasty characters, NaN and ±Infinity in Struct
 * values, Timestamps and Durations outside their protobuf range as raw wire values, and page
 * tokens of every kind — forged (the unsigned pre-MAC format among them), altered, truncated,
 * minted with the kernel's key for another tenant or request, minted for the very request so
 * that a hostile position (U+0000, huge numbers, wrong types) reaches the handler's schema, and
 * genuine tokens from a first page fed back with another query. Signed JWTs with hostile `sub`,
 * `tenants` and `scope` claims are refused as TOKEN_CLAIMS_INVALID, and their denials recorded.
 * HOSTILE_RUNS changes the runs per method.
 */
const RUNS = Number(process.env.HOSTILE_RUNS ?? 25);
const TENANT = 'fuzz-all';
const OTHER_TENANT = 'fuzz-all-other';

/** The outcomes that mean the kernel did not cope with the input (the database is up all along). */
const unhandled = (outcome: Outcome) => [
  ...errorContractBreaches(outcome),
  ...(outcome.code === Status.UNAVAILABLE ? ['UNAVAILABLE for a request the kernel could have refused'] : []),
  ...(outcome.code === Status.DEADLINE_EXCEEDED && !outcome.trailer ? ['no answer within 30 s'] : []),
  // Well-formed, but it means PostgreSQL refused what the kernel's validation let through.
  ...(reasonOf(outcome) === 'VALUE_REJECTED' ? ['VALUE_REJECTED: a validation gap'] : []),
];

interface Rpc {
  service: string;
  name: string;
  path: string;
  requestType: TsProtoType<unknown>;
  responseType: TsProtoType<unknown>;
}

const HINTS: FieldHints = {
  pageToken: hostilePageTokens((position) => forgeUnsignedPageToken(position, 'x')),
};

describe('hostile input to every capability', () => {
  let kernel: TestKernel;
  let channel: Channel;
  let token: string;
  let minter: PageTokenMinter;
  const rpcs: Rpc[] = [];

  beforeAll(async () => {
    kernel = await startTestKernel();
    minter = await kernelPageTokenMinter(kernel.databaseUrl);
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

  async function send(rpc: Rpc, bytes: Uint8Array, bearer = token): Promise<Outcome> {
    const client = createClient(rawMethodDefinitions([{ name: 'call', path: rpc.path, responseType: rpc.responseType }]), channel) as unknown as {
      call(b: Uint8Array, o: CallOptions): Promise<unknown>;
    };
    let trailer: Metadata | undefined;
    const metadata = Metadata({ authorization: `Bearer ${bearer}`, 'x-tenant-id': TENANT, 'idempotency-key': randomUUID() });
    try {
      const response = await client.call(bytes, { metadata, onTrailer: (t) => (trailer = t), signal: AbortSignal.timeout(30_000) });
      return { ok: true, code: Status.OK, response, trailer };
    } catch (error) {
      if (error instanceof ClientError) return { ok: false, code: error.code, trailer };
      // No answer within 30 s (say, a long-poll told to wait longer than meant): reported like any other breach.
      const name = (error as { name?: unknown } | null)?.name;
      if (name === 'AbortError' || name === 'TimeoutError') return { ok: false, code: Status.DEADLINE_EXCEEDED, trailer };
      throw error;
    }
  }

  const inputOf = (rpc: Rpc) => loadService(rpc.service).methods.find((m) => m.name === rpc.name)!.input;
  const mintFor = (rpc: Rpc) => (request: unknown, position: unknown, otherTenant: boolean) =>
    minter.mint(rpc, otherTenant ? OTHER_TENANT : TENANT, request as { pageToken: string }, position);
  const encode = (rpc: Rpc, request: HostileRequest, report?: EncodingReport) => encodeHostile(rpc.requestType, inputOf(rpc), request, mintFor(rpc), report);

  /** Sends a hostile request; its breaches, including a success for a request every RPC must refuse (stored normalised otherwise). */
  async function judge(rpc: Rpc, request: HostileRequest): Promise<{ outcome: Outcome; problems: string[] }> {
    const report: EncodingReport = { mustRefuse: [] };
    const bytes = encode(rpc, request, report);
    const outcome = await send(rpc, bytes);
    const problems = unhandled(outcome);
    if (outcome.ok) {
      let decoded: unknown;
      try {
        decoded = rpc.requestType.decode(bytes);
      } catch {
        problems.push('accepted bytes the generated decoder refuses');
      }
      const why = [...report.mustRefuse, mustBeRefused(inputOf(rpc), decoded)].filter(Boolean);
      if (why.length) problems.push(`accepted (and would store normalised) what must be refused: ${why.join(', ')}`);
    }
    return { outcome, problems };
  }
  const failure = (rpc: Rpc, outcome: Outcome, request: HostileRequest, problems: string[]) =>
    `${rpc.path} answered ${Status[outcome.code]} ${reasonOf(outcome) ?? ''} to ${describeValue(request.partial)}: ${problems.join('; ')}`;
  const hasPageToken = (rpc: Rpc) => inputOf(rpc).fields.some((f) => f.localName === 'pageToken');

  it('finds capabilities besides sequences to fuzz', () => {
    expect(new Set(rpcs.map((r) => r.service)).size).toBeGreaterThanOrEqual(2);
  });

  it('answers one field at a time at an extreme of its kind (not UTF-8, NaN, Struct keys with U+0000, raw Timestamps and Durations out of range, page tokens) with success or a well-formed error', async () => {
    const failures: string[] = [];
    const pageTokenExtras = [
      forgeUnsignedPageToken('\u0000', 'x'),
      ...['\u0000', 2 ** 62, '99999999999999999999', { dueMicros: '99999999999999999999', secretId: 'a', reason: 'ROTATION_DUE' }, { nested: [[[]]] }, null].map((p) => new MintedPageToken(p)),
      new MintedPageToken(1, 'flip'),
      new MintedPageToken(1, 'other-tenant'),
      new MintedPageToken(1, 'other-request'),
    ];
    for (const rpc of rpcs) {
      // LeaseJobs long-polls for `wait`: a zero wait keeps the probes quick.
      for (const request of probeRequests(loadService(rpc.service), rpc.name, { wait: { seconds: 0, nanos: 0 } }, { pageToken: pageTokenExtras })) {
        const { outcome, problems } = await judge(rpc, request);
        if (problems.length) failures.push(failure(rpc, outcome, request, problems));
      }
    }
    expect(failures).toEqual([]);
  });

  it('answers random and malformed field values to every RPC with success or a well-formed kernel.axis error', async () => {
    const failures: string[] = [];
    for (const rpc of rpcs) {
      await fc.assert(
        fc.asyncProperty(hostileRequests(loadService(rpc.service), rpc.name, HINTS), async (request) => {
          const { outcome, problems } = await judge(rpc, request);
          if (problems.length) failures.push(failure(rpc, outcome, request, problems));
        }),
        { numRuns: RUNS },
      );
    }
    expect(failures).toEqual([]);
  });

  it('refuses a genuine page token fed back with another query, and with another method', async () => {
    const listRpcs = rpcs.filter(hasPageToken);
    const failures: string[] = [];
    let genuine = 0;
    for (const rpc of listRpcs) {
      const descriptors = loadService(rpc.service);
      await fc.assert(
        fc.asyncProperty(hostileRequests(descriptors, rpc.name, {}), hostileRequests(descriptors, rpc.name, {}), async (first, second) => {
          const firstPage = await send(rpc, encode(rpc, new HostileRequest(rpc.name, { ...first.partial, pageToken: '', pageSize: 1 })));
          const next = (firstPage.response as { nextPageToken?: string } | undefined)?.nextPageToken;
          if (!next) return;
          genuine += 1;
          const again = new HostileRequest(rpc.name, { ...second.partial, pageToken: next });
          const outcome = await send(rpc, encode(rpc, again));
          const problems = unhandled(outcome);
          if (problems.length) failures.push(failure(rpc, outcome, again, problems));
          for (const other of listRpcs.filter((r) => r !== rpc)) {
            const elsewhere = await send(other, encode(other, new HostileRequest(other.name, { pageToken: next })));
            if (elsewhere.ok || unhandled(elsewhere).length) failures.push(failure(other, elsewhere, new HostileRequest(other.name, { pageToken: next }), ['a token of another method was not refused', ...unhandled(elsewhere)]));
          }
        }),
        { numRuns: Math.max(5, Math.round(RUNS / 3)) },
      );
    }
    expect(failures).toEqual([]);
    // The random phase above left audit entries (at least), so some list RPC had a second page.
    expect(genuine).toBeGreaterThan(0);
  });

  it('refuses signed tokens with hostile sub, tenants or scope claims as TOKEN_CLAIMS_INVALID and records the denial', async () => {
    const visibleAscii = /^[\x21-\x7e]{1,255}$/;
    const tenantEntry = /^(\*|[a-z0-9][a-z0-9_-]{0,62})$/;
    const printableScope = /^[\x20-\x7e]{0,4096}$/;
    const nasty = fc.constantFrom(...NASTY_CHARACTERS);
    // Kept well below 64 KiB of metadata: beyond it Node's HTTP/2 layer resets the stream before
    // any kernel code runs (README, error model).
    const hostileClaim = (plausible: string) => hostileString(fc.constant(plausible)).map((text) => text.slice(0, 2000));
    const sub = fc.oneof(fc.constantFrom('fuzzer', 'user@example.com'), hostileClaim('fuzzer'), nasty.map((c) => `sub${c}`), fc.constant('s'.repeat(256)), fc.constant(''));
    const tenants = fc.oneof(
      fc.constant([TENANT]),
      fc.constant(['*']),
      fc.array(fc.oneof(fc.constant(TENANT), hostileClaim(TENANT), nasty.map((c) => `${TENANT}${c}`), fc.constantFrom('Fuzz', '', '*x', 'a'.repeat(64))), { minLength: 0, maxLength: 3 }),
    );
    const scope = fc.oneof(fc.constant(kernel.kernel.scopes.join(' ')), hostileClaim('audit:read'), nasty.map((c) => `${kernel.kernel.scopes.join(' ')}${c}`), fc.constant('x'.repeat(4097)));
    // Wrong JSON types too (a jose claim check may refuse some of them first: TOKEN_INVALID).
    const claims = fc.oneof(
      { arbitrary: fc.record({ sub, tenants, scope }), weight: 6 },
      { arbitrary: fc.record({ sub: fc.constantFrom<unknown>(42, null, ['fuzzer'], { s: 1 }), tenants: fc.constant<unknown>([TENANT]), scope: fc.constant<unknown>('') }), weight: 1 },
      { arbitrary: fc.record({ sub: fc.constant<unknown>('fuzzer'), tenants: fc.constantFrom<unknown>(TENANT, [42], [null], {}, [[TENANT]]), scope: fc.constantFrom<unknown>(42, ['audit:read'], null) }), weight: 1 },
    );
    const valid = (c: { sub: unknown; tenants: unknown; scope: unknown }) =>
      typeof c.sub === 'string' &&
      visibleAscii.test(c.sub) &&
      Array.isArray(c.tenants) &&
      c.tenants.length >= 1 &&
      c.tenants.every((t) => typeof t === 'string' && tenantEntry.test(t)) &&
      typeof c.scope === 'string' &&
      printableScope.test(c.scope);
    const secret = new TextEncoder().encode(kernel.secret);
    const failures: string[] = [];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...rpcs), claims, async (rpc, c) => {
        const jwt = await new SignJWT(c as never).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setExpirationTime('1h').sign(secret);
        const outcome = await send(rpc, rpc.requestType.encode(rpc.requestType.fromPartial({})).finish(), jwt);
        const problems = unhandled(outcome);
        const reason = reasonOf(outcome);
        if (!valid(c) && !(outcome.code === Status.UNAUTHENTICATED && (reason === 'TOKEN_CLAIMS_INVALID' || reason === 'TOKEN_INVALID'))) {
          problems.push('claims outside the documented rules were not refused as TOKEN_CLAIMS_INVALID');
        }
        if (problems.length) failures.push(`${rpc.path} with claims ${describeValue(c)} answered ${Status[outcome.code]} ${reason ?? ''}: ${problems.join('; ')}`);
      }),
      { numRuns: RUNS * 4 },
    );
    expect(failures).toEqual([]);
    // Every refusal naming a well-formed tenant was recorded: none failed to be written.
    expect(kernel.logs.entries().filter((e) => String(e.msg).includes('could not record denied attempt'))).toEqual([]);
  });

  it('refuses undecodable bytes to every RPC with a gRPC error and keeps serving', async () => {
    for (const rpc of rpcs) {
      const descriptors = loadService(rpc.service);
      const valid = hostileRequests(descriptors, rpc.name, HINTS).map((r) => encode(rpc, r));
      await fc.assert(
        fc.asyncProperty(undecodableBytes(rpc.requestType, valid), async (garbage) => {
          expect(decodes(rpc.requestType, garbage)).toBe(false);
          const outcome = await send(rpc, garbage);
          expect(outcome.ok).toBe(false);
          expect(unhandled(outcome)).toEqual([]);
        }),
        { numRuns: 5 },
      );
    }
    const masked = kernel.logs.entries().filter((e) => e.msg === 'unhandled error (masked as INTERNAL)');
    expect(masked.map((e) => `${e.method}: ${JSON.stringify(e.err).slice(0, 300)}`)).toEqual([]);
    const gaps = kernel.logs.entries().filter((e) => e.reason === 'VALUE_REJECTED');
    expect(gaps.map((e) => `${e.method}: ${e.sqlstate} ${JSON.stringify(e.err).slice(0, 300)}`)).toEqual([]);
  });
});
