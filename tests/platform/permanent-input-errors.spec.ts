import { createHash, randomUUID } from 'node:crypto';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import { ClientError, createChannel, createClient, Metadata, Status, type CallOptions, type Channel } from 'nice-grpc';
import { BadRequest, ErrorInfo, RetryInfo } from 'nice-grpc-error-details';
import { Status as RpcStatus } from 'nice-grpc-error-details/lib/proto/google/rpc/status';
import { Client } from 'pg';
import { AuditServiceDefinition } from '../../gen/proto/axis/kernel/audit/v1/audit_service';
import { SchedulerServiceDefinition } from '../../gen/proto/axis/kernel/scheduler/v1/scheduler_service';
import { SecretServiceDefinition } from '../../gen/proto/axis/kernel/secrets/v1/secret_service';
import { ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { SequenceServiceDefinition } from '../../gen/proto/axis/kernel/sequences/v1/sequence_service';
import { mintDevelopmentToken } from '../../services/platform/auth/token-verifier';
import { translateDatabaseError } from '../../services/platform/database/postgres-errors';
import { KernelError } from '../../services/platform/kernel-error';
import { authenticationMiddleware } from '../../services/platform/middleware/authentication';
import { errorMappingMiddleware } from '../../services/platform/middleware/error-mapping';
import { Metrics } from '../../services/platform/observability/metrics';
import { errorContractBreaches } from '../support/error-contract';
import { rawMethodDefinitions, type TsProtoType } from '../support/hostile-requests';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/**
 * Issue 11 §2: permanent input errors that were answered as retryable (UNAVAILABLE with
 * RetryInfo, so clients retried forever) or as a masked INTERNAL, or that were silently
 * normalised and stored. Each test names the input; each must be refused as a permanent,
 * well-formed kernel.axis error (or, for the SQLSTATE mapping, mapped honestly).
 */

const TENANT = 'perm';
const OTHER_TENANT = 'perm-other';

interface Rpc {
  path: string;
  requestType: TsProtoType<unknown>;
  responseType: TsProtoType<unknown>;
}

type Definition = { fullName: string; methods: Record<string, { name: string; requestType: unknown; responseType: unknown }> };
const rpc = (definition: Definition, name: string): Rpc => {
  const m = Object.values(definition.methods).find((x) => x.name === name)!;
  return { path: `/${definition.fullName}/${name}`, requestType: m.requestType as TsProtoType<unknown>, responseType: m.responseType as TsProtoType<unknown> };
};

const LIST_JOBS = rpc(SchedulerServiceDefinition, 'ListJobs');
const ENQUEUE_JOB = rpc(SchedulerServiceDefinition, 'EnqueueJob');
const LIST_EXPIRING = rpc(SecretServiceDefinition, 'ListExpiring');
const APPEND_EVENTS = rpc(AuditServiceDefinition, 'AppendEvents');
const CREATE_SERIES = rpc(SequenceServiceDefinition, 'CreateSeries');
const ISSUE_NUMBER = rpc(SequenceServiceDefinition, 'IssueNumber');
const RESERVE_NUMBER = rpc(SequenceServiceDefinition, 'ReserveNumber');
const LIST_SERIES = rpc(SequenceServiceDefinition, 'ListSeries');

interface Answer {
  ok: boolean;
  code: Status;
  response?: unknown;
  trailer?: Metadata;
  reason?: string;
  fields: string[];
  retryInfo: boolean;
  breaches: string[];
}

/** Decodes the rich status of a refusal: reason, BadRequest fields, whether RetryInfo is present. */
function answer(ok: boolean, code: Status, trailer: Metadata | undefined, response?: unknown): Answer {
  const result: Answer = { ok, code, trailer, response, fields: [], retryInfo: false, breaches: errorContractBreaches({ ok, code, trailer, response }) };
  const raw = trailer?.get('grpc-status-details-bin');
  if (raw) {
    for (const detail of RpcStatus.decode(raw).details) {
      if (detail.typeUrl.endsWith('/google.rpc.ErrorInfo')) result.reason = ErrorInfo.decode(detail.value).reason;
      if (detail.typeUrl.endsWith('/google.rpc.BadRequest')) result.fields.push(...BadRequest.decode(detail.value).fieldViolations.map((v) => v.field));
      if (detail.typeUrl.endsWith('/google.rpc.RetryInfo')) result.retryInfo = RetryInfo.decode(detail.value) !== undefined;
    }
  }
  return result;
}

/** The page tokens the kernel issued before this change: base64url JSON bound by a plain SHA-256 anyone can compute. */
function forgeUnsignedPageToken(position: unknown, query: unknown): string {
  const fingerprint = createHash('sha256').update(JSON.stringify(query)).digest('base64url').slice(0, 12);
  return Buffer.from(JSON.stringify({ p: position, q: fingerprint })).toString('base64url');
}

/** A google.protobuf.Timestamp or Duration as raw wire bytes (field 1 seconds, field 2 nanos). */
const secondsNanos = (seconds: number, nanos: number) => new BinaryWriter().tag(1, WireType.Varint).int64(seconds).tag(2, WireType.Varint).int32(nanos).finish();

describe('permanent input errors are answered as permanent (issue 11 §2)', () => {
  let kernel: TestKernel;
  let channel: Channel;
  let token: string;

  beforeAll(async () => {
    kernel = await startTestKernel();
    token = await kernel.token({ tenants: [TENANT, OTHER_TENANT], sub: 'perm-tester' });
    channel = createChannel(kernel.address);
    const created = await call(CREATE_SERIES, encode(CREATE_SERIES, { series: { seriesId: 'inv', pattern: '{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } }));
    expect(created.breaches).toEqual([]);
    expect(created.ok).toBe(true);
  });

  afterAll(async () => {
    channel?.close();
    await kernel?.stop();
  });

  const encode = (r: Rpc, partial: Record<string, unknown>) => r.requestType.encode(r.requestType.fromPartial(partial)).finish();

  const metadataFor = (overrides: Record<string, string> = {}) =>
    Metadata({ authorization: `Bearer ${token}`, 'x-tenant-id': TENANT, 'idempotency-key': randomUUID(), ...overrides });

  async function call(r: Rpc, bytes: Uint8Array, metadata: Metadata = metadataFor()): Promise<Answer> {
    const client = createClient(rawMethodDefinitions([{ name: 'call', path: r.path, responseType: r.responseType }]), channel) as unknown as {
      call(b: Uint8Array, o: CallOptions): Promise<unknown>;
    };
    let trailer: Metadata | undefined;
    try {
      const response = await client.call(bytes, { metadata, onTrailer: (t) => (trailer = t), signal: AbortSignal.timeout(30_000) });
      return answer(true, Status.OK, trailer, response);
    } catch (error) {
      if (error instanceof ClientError) return answer(false, error.code, trailer);
      throw error;
    }
  }

  const summary = (a: Answer) => ({ code: Status[a.code], reason: a.reason, retryInfo: a.retryInfo, breaches: a.breaches });
  const refusedWith = (code: Status, reason: string) => ({ code: Status[code], reason, retryInfo: false, breaches: [] });

  describe('SQLSTATEs that a request caused are not outages', () => {
    let db: Client;
    beforeAll(async () => {
      db = new Client({ connectionString: kernel.databaseUrl });
      await db.connect();
    });
    afterAll(async () => {
      await db?.end();
    });

    const failure = async (text: string, params?: unknown[]) => {
      try {
        await db.query(text, params);
      } catch (error) {
        return error;
      }
      throw new Error(`${text} did not fail`);
    };
    const mapped = (error: unknown) => {
      const e = translateDatabaseError(error);
      return e instanceof KernelError ? { code: Status[e.code], reason: e.reason, retryable: e.options.retryDelayMs !== undefined } : { code: 'not a KernelError', reason: String(e), retryable: false };
    };

    test.each([
      ['08P01 (U+0000 inside a simple-protocol query)', () => failure("SELECT 'a\u0000b'")],
      ['22003 (bigint out of range)', () => failure('SELECT $1::bigint', ['99999999999999999999'])],
      ['22021 (U+0000 in a text parameter)', () => failure('SELECT $1::text', ['a\u0000b'])],
      ['22P05 (U+0000 in jsonb)', () => failure('SELECT $1::jsonb', ['{"a\\u0000": 1}'])],
      ['22P02 (invalid text representation)', () => failure('SELECT $1::int', ['x'])],
    ])('%s is INVALID_ARGUMENT VALUE_REJECTED without RetryInfo', async (_label, fail) => {
      const error = await fail();
      expect(mapped(error)).toEqual({ code: 'INVALID_ARGUMENT', reason: 'VALUE_REJECTED', retryable: false });
    });

    test.each([
      ['08006 (connection failure)', { code: '08006', message: 'connection failure' }],
      ['08001 (cannot connect)', { code: '08001', message: 'cannot connect' }],
      ['57P01 (admin shutdown)', { code: '57P01', message: 'terminating connection due to administrator command' }],
      ['57P02 (crash shutdown)', { code: '57P02', message: 'terminating connection because of crash of another server process' }],
      ['57P03 (cannot connect now)', { code: '57P03', message: 'the database system is starting up' }],
      ['ECONNRESET', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })],
      ['ECONNREFUSED', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })],
      ['Connection terminated', new Error('Connection terminated unexpectedly')],
    ])('%s stays UNAVAILABLE DATABASE_UNAVAILABLE with RetryInfo', (_label, error) => {
      expect(mapped(error)).toEqual({ code: 'UNAVAILABLE', reason: 'DATABASE_UNAVAILABLE', retryable: true });
    });
  });

  describe('token claims', () => {
    const denialsOf = async (tenant: string, reason: string) => {
      const db = new Client({ connectionString: kernel.databaseUrl });
      await db.connect();
      try {
        const { rows } = await db.query(`SELECT count(*)::int AS n FROM kernel_audit_event WHERE tenant_id = $1 AND outcome = 'DENIED' AND detail->>'reason' = $2`, [tenant, reason]);
        return rows[0].n as number;
      } finally {
        await db.end();
      }
    };

    test.each([
      ['sub holding U+0000', { sub: 'mallory\u0000' }],
      ['sub with a bidi override', { sub: 'admin\u202egpj' }],
      ['sub with a line break', { sub: 'a\nb' }],
      ['sub with a space', { sub: 'a b' }],
      ['sub of 256 characters', { sub: 's'.repeat(256) }],
      ['a tenant entry outside the tenant id pattern', { tenants: [TENANT, 'Perm'] }],
      ['a tenant entry holding U+0000', { tenants: [TENANT, 'x\u0000'] }],
      ['scope holding U+0000', { scope: 'sequences:write\u0000' }],
      ['scope with a control character', { scope: 'sequences:write\u001b[31m' }],
      ['scope beyond 4096 characters', { scope: `sequences:write ${'x'.repeat(4096)}` }],
    ])('a signed token with %s is UNAUTHENTICATED TOKEN_CLAIMS_INVALID (IssueNumber), and the denial is audited', async (_label, claims) => {
      const before = await denialsOf(TENANT, 'TOKEN_CLAIMS_INVALID');
      const hostile = await mintDevelopmentToken({
        secret: kernel.secret,
        subject: 'sub' in claims ? claims.sub : 'perm-tester',
        tenants: 'tenants' in claims ? claims.tenants : [TENANT],
        scope: 'scope' in claims ? claims.scope : kernel.kernel.scopes.join(' '),
      });
      const refused = await call(ISSUE_NUMBER, encode(ISSUE_NUMBER, { seriesId: 'inv' }), metadataFor({ authorization: `Bearer ${hostile}` }));
      expect(summary(refused)).toEqual(refusedWith(Status.UNAUTHENTICATED, 'TOKEN_CLAIMS_INVALID'));
      expect(await denialsOf(TENANT, 'TOKEN_CLAIMS_INVALID')).toBe(before + 1);
      expect(kernel.logs.entries().filter((e) => String(e.msg).includes('could not record denied attempt'))).toEqual([]);
    });

    test('the operator wildcard and printable subjects are still accepted', async () => {
      for (const [sub, tenants] of [
        ['user@example.com', ['*']],
        ['auth0|5f7c8ec7c33c6c004bbafe82', [TENANT]],
        ['system:billing-worker', [TENANT, OTHER_TENANT]],
      ] as const) {
        const good = await mintDevelopmentToken({ secret: kernel.secret, subject: sub, tenants: [...tenants], scope: kernel.kernel.scopes.join(' ') });
        expect(summary(await call(LIST_SERIES, encode(LIST_SERIES, {}), metadataFor({ authorization: `Bearer ${good}` })))).toEqual({ code: 'OK', reason: undefined, retryInfo: false, breaches: [] });
      }
    });
  });

  describe('ambiguous metadata', () => {
    const twice = (key: string, a: string, b: string) => {
      const metadata = metadataFor();
      metadata.delete(key);
      metadata.append(key, a);
      metadata.append(key, b);
      return metadata;
    };

    test('two x-tenant-id entries are INVALID_ARGUMENT TENANT_AMBIGUOUS', async () => {
      expect(summary(await call(LIST_SERIES, encode(LIST_SERIES, {}), twice('x-tenant-id', TENANT, OTHER_TENANT)))).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'TENANT_AMBIGUOUS'));
      expect(summary(await call(LIST_SERIES, encode(LIST_SERIES, {}), twice('x-tenant-id', TENANT, TENANT)))).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'TENANT_AMBIGUOUS'));
    });

    test('two idempotency-key entries are INVALID_ARGUMENT IDEMPOTENCY_KEY_AMBIGUOUS', async () => {
      const refused = await call(ISSUE_NUMBER, encode(ISSUE_NUMBER, { seriesId: 'inv' }), twice('idempotency-key', randomUUID(), randomUUID()));
      expect(summary(refused)).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_AMBIGUOUS'));
    });
  });

});

/** Middleware-level checks: inputs the HTTP/2 transport never delivers to the kernel as such. */
describe('middleware (no transport in between)', () => {
  const drive = async (generator: AsyncGenerator<unknown, unknown, unknown>) => {
    try {
      return { value: (await generator.next()).value };
    } catch (error) {
      return { error };
    }
  };

  test('two authorization entries are UNAUTHENTICATED TOKEN_AMBIGUOUS, whichever comes first', async () => {
    // Node's HTTP/2 server keeps only the first `authorization` header (a single-value header
    // to it), so over the wire the kernel never sees two; any transport that does deliver both
    // must not let the first silently win.
    const verified: string[] = [];
    const middleware = authenticationMiddleware({
      verifier: { verify: async (t) => (verified.push(t), { subject: t, tenants: ['*'], scopes: new Set<string>() }) },
      audit: { recordDenial: async () => undefined } as never,
    });
    const metadata = Metadata();
    metadata.append('authorization', 'Bearer a.b.c');
    metadata.append('authorization', 'Bearer d.e.f');
    const context = { metadata, method: { action: 'x/Y' }, trace: { traceId: '0'.repeat(32) }, parties: {} };
    const call = { request: {}, next: async function* () { return 'handled'; } };
    const outcome = await drive(middleware(call as never, context as never) as AsyncGenerator<unknown, unknown, unknown>);
    expect(outcome.error).toBeInstanceOf(KernelError);
    expect([Status[(outcome.error as KernelError).code], (outcome.error as KernelError).reason]).toEqual(['UNAUTHENTICATED', 'TOKEN_AMBIGUOUS']);
    expect(verified).toEqual([]);
  });

  test('VALUE_REJECTED is logged at error level (a validation gap must not pass silently)', async () => {
    const logged: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = [];
    const log = {
      error: (fields: Record<string, unknown>, msg: string) => logged.push({ level: 'error', fields, msg }),
      warn: (fields: Record<string, unknown>, msg: string) => logged.push({ level: 'warn', fields, msg }),
    };
    const metrics = new Metrics();
    const middleware = errorMappingMiddleware({ metrics });
    const cause = Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), { code: '22021' });
    const call = {
      request: {},
      next: async function* () {
        throw translateDatabaseError(cause);
      },
    };
    const context = { method: { action: 'x/Y' }, trace: { traceId: 'f'.repeat(32) }, log };
    const outcome = await drive(middleware(call as never, context as never) as AsyncGenerator<unknown, unknown, unknown>);
    expect((outcome.error as { code?: Status }).code).toBe(Status.INVALID_ARGUMENT);
    expect(logged.map((l) => ({ level: l.level, reason: l.fields.reason, sqlstate: l.fields.sqlstate }))).toEqual([{ level: 'error', reason: 'VALUE_REJECTED', sqlstate: '22021' }]);
    expect(metrics.counter('rpc_validation_gaps_total', { method: 'x/Y' })).toBe(1);
  });
});
