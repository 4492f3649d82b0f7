import { randomUUID } from 'node:crypto';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { ClientError, createChannel, createClient, Metadata, Status, type CallOptions, type Channel } from 'nice-grpc';
import { BadRequest, ErrorInfo, RetryInfo } from 'nice-grpc-error-details';
import { Status as RpcStatus } from 'nice-grpc-error-details/lib/proto/google/rpc/status';
import { Client } from 'pg';
import { AuditServiceDefinition } from '../../gen/proto/axis/kernel/audit/v1/audit_service';
import { JobState } from '../../gen/proto/axis/kernel/scheduler/v1/job';
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
import { forgeUnsignedPageToken, kernelPageTokenMinter, type PageTokenMinter } from '../support/page-tokens';
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
const LIST_NUMBERS = rpc(SequenceServiceDefinition, 'ListNumbers');

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

  describe('the request digest is taken over the bytes that arrived', () => {
    test('the same key with the same bytes replays; with an unknown field added it is another request (IDEMPOTENCY_KEY_REUSED)', async () => {
      const bytes = encode(ISSUE_NUMBER, { seriesId: 'inv', subjectRef: 'digest-1' });
      const key = randomUUID();
      const first = await call(ISSUE_NUMBER, bytes, metadataFor({ 'idempotency-key': key }));
      expect(first.ok).toBe(true);
      const replayed = await call(ISSUE_NUMBER, bytes, metadataFor({ 'idempotency-key': key }));
      expect(replayed.ok).toBe(true);
      expect(replayed.trailer?.get('idempotent-replayed')).toBe('true');
      expect(replayed.response).toEqual(first.response);
      // Field 99 (varint 1): decoded, it is the same request; as bytes, it is not what was asked.
      const withUnknown = new Uint8Array([...bytes, 0x98, 0x06, 0x01]);
      expect(summary(await call(ISSUE_NUMBER, withUnknown, metadataFor({ 'idempotency-key': key })))).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_REUSED'));
    });
  });

  describe('page tokens are opaque, tamper-evident and validated', () => {
    test('ListJobs with a forged token holding U+0000 is PAGE_TOKEN_INVALID, not UNAVAILABLE with RetryInfo', async () => {
      const forged = forgeUnsignedPageToken('\u0000', { st: 0 });
      expect(summary(await call(LIST_JOBS, encode(LIST_JOBS, { pageToken: forged })))).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'PAGE_TOKEN_INVALID'));
    });

    test('ListExpiring with a forged token whose dueMicros exceeds int64 is PAGE_TOKEN_INVALID, not INTERNAL', async () => {
      const within = { seconds: 30 * 86400, nanos: 0 };
      const forged = forgeUnsignedPageToken({ dueMicros: '99999999999999999999', secretId: 'a', reason: 'ROTATION_DUE' }, { expiring: within.seconds });
      expect(summary(await call(LIST_EXPIRING, encode(LIST_EXPIRING, { within, pageToken: forged })))).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'PAGE_TOKEN_INVALID'));
    });

    test('a valid token is refused when altered, truncated, or sent with another query, tenant or method; untouched it pages on', async () => {
      for (const seriesId of ['s1', 's2', 's3']) {
        expect((await call(CREATE_SERIES, encode(CREATE_SERIES, { series: { seriesId, pattern: '{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } }))).ok).toBe(true);
      }
      const first = await call(LIST_SERIES, encode(LIST_SERIES, { pageSize: 1 }));
      const next = (first.response as { nextPageToken: string }).nextPageToken;
      expect(next).not.toBe('');
      const listed = await call(LIST_SERIES, encode(LIST_SERIES, { pageSize: 1, pageToken: next }));
      expect(summary(listed)).toEqual({ code: 'OK', reason: undefined, retryInfo: false, breaches: [] });

      const flip = (t: string, at: number) => t.slice(0, at) + (t[at] === 'A' ? 'B' : 'A') + t.slice(at + 1);
      const refused = refusedWith(Status.INVALID_ARGUMENT, 'PAGE_TOKEN_INVALID');
      for (const altered of [flip(next, 0), flip(next, next.length - 1), flip(next, next.length >> 1), next.slice(0, -2), `${next}AA`, `${next}=`, ` ${next}`]) {
        expect({ altered, ...summary(await call(LIST_SERIES, encode(LIST_SERIES, { pageSize: 1, pageToken: altered }))) }).toEqual({ altered, ...refused });
      }
      // The same position and query in another tenant, and another query (ListJobs) of the same tenant.
      expect(summary(await call(LIST_SERIES, encode(LIST_SERIES, { pageSize: 1, pageToken: next }), metadataFor({ 'x-tenant-id': OTHER_TENANT })))).toEqual(refused);
      expect(summary(await call(LIST_JOBS, encode(LIST_JOBS, { pageToken: next })))).toEqual(refused);
    });

    test('a token of one query is refused for another query of the same method; page_size may change', async () => {
      for (let i = 0; i < 3; i++) expect((await call(ENQUEUE_JOB, encode(ENQUEUE_JOB, { job: { jobType: 'perm.unhandled', runTime: new Date(Date.now() + 86_400_000) } }))).ok).toBe(true);
      const queued = { state: JobState.JOB_STATE_QUEUED };
      const first = await call(LIST_JOBS, encode(LIST_JOBS, { ...queued, pageSize: 1 }));
      const next = (first.response as { nextPageToken: string }).nextPageToken;
      expect(next).not.toBe('');
      expect(summary(await call(LIST_JOBS, encode(LIST_JOBS, { ...queued, pageSize: 5, pageToken: next })))).toEqual({ code: 'OK', reason: undefined, retryInfo: false, breaches: [] });
      for (const state of [JobState.JOB_STATE_UNSPECIFIED, JobState.JOB_STATE_RUNNING]) {
        expect(summary(await call(LIST_JOBS, encode(LIST_JOBS, { state, pageSize: 1, pageToken: next })))).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'PAGE_TOKEN_INVALID'));
      }
    });

    describe('what a genuinely MAC-ed token decodes to is validated like any other input', () => {
      let minter: PageTokenMinter;
      beforeAll(async () => {
        minter = await kernelPageTokenMinter(kernel.databaseUrl);
      });

      /** Sends `partial` with a page token minted for exactly that request (so the MAC verifies) carrying `position`. */
      const withPosition = (r: Rpc, partial: Record<string, unknown>, position: unknown) => {
        const decoded = r.requestType.decode(encode(r, partial)) as { pageToken: string };
        return call(r, encode(r, { ...partial, pageToken: minter.mint(r, TENANT, decoded, position) }));
      };
      const refused = refusedWith(Status.INVALID_ARGUMENT, 'PAGE_TOKEN_INVALID');

      test('the minter makes tokens the kernel accepts (a job id position pages on)', async () => {
        expect(summary(await withPosition(LIST_JOBS, { pageSize: 1 }, 'ffffffff-ffff-7fff-bfff-ffffffffffff'))).toEqual({ code: 'OK', reason: undefined, retryInfo: false, breaches: [] });
      });

      test.each([
        ['U+0000', '\u0000'],
        ['a UUID with U+0000', '0190b5a0-0000-7000-8000-00000000000\u0000'],
        ['not a UUID', 'x'],
        ['a number', 42],
        ['an object', { id: 'x' }],
        ['null', null],
      ])('ListJobs position %s is PAGE_TOKEN_INVALID', async (_label, position) => {
        expect(summary(await withPosition(LIST_JOBS, { state: JobState.JOB_STATE_QUEUED }, position))).toEqual(refused);
      });

      const within = { seconds: 30 * 86400, nanos: 0 };
      test.each([
        ['dueMicros beyond int64', { dueMicros: '99999999999999999999', secretId: 'a', reason: 'ROTATION_DUE' }],
        ['dueMicros beyond 9999-12-31', { dueMicros: '253402300800000000', secretId: 'a', reason: 'ROTATION_DUE' }],
        ['dueMicros before 0001-01-01', { dueMicros: '-62135596800000001', secretId: 'a', reason: 'ROTATION_DUE' }],
        ['dueMicros as a JSON number', { dueMicros: 1e20, secretId: 'a', reason: 'ROTATION_DUE' }],
        ['dueMicros "-0"', { dueMicros: '-0', secretId: 'a', reason: 'ROTATION_DUE' }],
        ['dueMicros with a leading zero', { dueMicros: '01', secretId: 'a', reason: 'ROTATION_DUE' }],
        ['secretId with U+0000', { dueMicros: '1', secretId: 'a\u0000', reason: 'ROTATION_DUE' }],
        ['an unknown reason', { dueMicros: '1', secretId: 'a', reason: 'OTHER' }],
        ['an extra key', { dueMicros: '1', secretId: 'a', reason: 'ROTATION_DUE', extra: true }],
      ])('ListExpiring position with %s is PAGE_TOKEN_INVALID', async (_label, position) => {
        expect(summary(await withPosition(LIST_EXPIRING, { within }, position))).toEqual(refused);
      });

      test.each([
        ['value 2^62', { period: '', value: 2 ** 62 }],
        ['value 1.5', { period: '', value: 1.5 }],
        ['value -1', { period: '', value: -1 }],
        ['value as a string', { period: '', value: '1' }],
        ['a period with U+0000', { period: '2026\u0000', value: 1 }],
      ])('ListNumbers position with %s is PAGE_TOKEN_INVALID', async (_label, position) => {
        expect(summary(await withPosition(LIST_NUMBERS, { seriesId: 'inv' }, position))).toEqual(refused);
      });

      test('the same position minted for another tenant is refused', async () => {
        const decoded = LIST_JOBS.requestType.decode(encode(LIST_JOBS, {})) as { pageToken: string };
        const foreign = minter.mint(LIST_JOBS, OTHER_TENANT, decoded, 'ffffffff-ffff-7fff-bfff-ffffffffffff');
        expect(summary(await call(LIST_JOBS, encode(LIST_JOBS, { pageToken: foreign })))).toEqual(refused);
      });
    });
  });

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

  describe('the request guard', () => {
    test('a Struct key holding U+0000 (AppendEvents detail) is FIELD_INVALID naming the field, not INTERNAL', async () => {
      const refused = await call(APPEND_EVENTS, encode(APPEND_EVENTS, { events: [{ action: 'app.thing', resource: 'r', detail: { 'a\u0000b': 1 } }] }));
      expect(summary(refused)).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'FIELD_INVALID'));
      expect(refused.fields).toEqual(['events.0.detail']);
    });

    test('a Struct key holding U+0000 at depth (EnqueueJob payload) is FIELD_INVALID', async () => {
      const refused = await call(ENQUEUE_JOB, encode(ENQUEUE_JOB, { job: { jobType: 'perm.job', payload: { list: [{ ok: { 'x\u0000': true } }] } } }));
      expect(summary(refused)).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'FIELD_INVALID'));
      expect(refused.fields).toEqual(['job.payload.list.0.ok']);
    });

    test.each([
      ['NaN', Number.NaN],
      ['Infinity', Number.POSITIVE_INFINITY],
      ['-Infinity', Number.NEGATIVE_INFINITY],
    ])('%s in a Struct number (AppendEvents detail) is FIELD_INVALID, not stored as null', async (_label, value) => {
      const refused = await call(APPEND_EVENTS, encode(APPEND_EVENTS, { events: [{ action: 'app.thing', resource: 'r', detail: { nested: { n: value } } }] }));
      expect(summary(refused)).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'FIELD_INVALID'));
      expect(refused.fields).toEqual(['events.0.detail.nested.n']);
    });

    test('NaN as a job payload (a bare google.protobuf.Value) is FIELD_INVALID', async () => {
      const refused = await call(ENQUEUE_JOB, encode(ENQUEUE_JOB, { job: { jobType: 'perm.job', payload: Number.NaN } }));
      expect(summary(refused)).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'FIELD_INVALID'));
      expect(refused.fields).toEqual(['job.payload']);
    });
  });

  describe('decode time: invalid UTF-8, out-of-range Timestamp and Duration, oversized requests', () => {
    const INVALID_UTF8 = [
      ['a lone continuation byte', [0x61, 0x80]],
      ['a truncated sequence', [0xe2, 0x82]],
      ['an overlong NUL', [0xc0, 0x80]],
      ['a UTF-16 surrogate (CESU-8)', [0xed, 0xa0, 0x80]],
      ['a code point beyond U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
      ['0xFF', [0xff]],
    ] as const;

    test.each(INVALID_UTF8)('IssueNumber subject_ref with %s is FIELD_INVALID naming subject_ref, not stored as U+FFFD', async (_label, bytes) => {
      const request = new BinaryWriter().tag(1, WireType.LengthDelimited).string('inv').tag(3, WireType.LengthDelimited).bytes(Uint8Array.from(bytes)).finish();
      const refused = await call(ISSUE_NUMBER, request);
      expect(summary(refused)).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'FIELD_INVALID'));
      expect(refused.fields).toEqual(['subject_ref']);
    });

    test('invalid UTF-8 in a nested string (CreateSeries series.pattern) names the nested field', async () => {
      const series = new BinaryWriter().tag(1, WireType.LengthDelimited).string('utf8').tag(3, WireType.LengthDelimited).bytes(Uint8Array.from([0x7b, 0xff, 0x7d])).finish();
      const refused = await call(CREATE_SERIES, new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(series).finish());
      expect(summary(refused)).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'FIELD_INVALID'));
      expect(refused.fields).toEqual(['series.pattern']);
    });

    test('invalid UTF-8 in a Struct key (AppendEvents detail) names the Struct field', async () => {
      // AppendEventsRequest.events[0] = AuditEventInput{action, detail: Struct{fields: {<bad key>: Value{bool_value: true}}}}
      const value = new BinaryWriter().tag(4, WireType.Varint).bool(true).finish();
      const entry = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(Uint8Array.from([0x6b, 0xc3])).tag(2, WireType.LengthDelimited).bytes(value).finish();
      const struct = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(entry).finish();
      const event = new BinaryWriter().tag(1, WireType.LengthDelimited).string('app.thing').tag(4, WireType.LengthDelimited).bytes(struct).finish();
      const refused = await call(APPEND_EVENTS, new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(event).finish());
      expect(summary(refused)).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'FIELD_INVALID'));
      expect(refused.fields).toEqual(['events.0.detail']);
    });

    const withDocumentTime = (seconds: number, nanos: number) =>
      new BinaryWriter().tag(1, WireType.LengthDelimited).string('inv').tag(2, WireType.LengthDelimited).bytes(secondsNanos(seconds, nanos)).finish();

    test.each([
      ['nanos 2e9 (was numbered in 1970)', 0, 2_000_000_000],
      ['nanos -1', 1_700_000_000, -1],
      ['nanos 1e9', 1_700_000_000, 1_000_000_000],
      ['seconds before 0001-01-01', -62_135_596_801, 0],
      ['seconds after 9999-12-31', 253_402_300_800, 0],
    ])('IssueNumber document_time with %s is FIELD_INVALID naming document_time', async (_label, seconds, nanos) => {
      const refused = await call(ISSUE_NUMBER, withDocumentTime(seconds, nanos));
      expect(summary(refused)).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'FIELD_INVALID'));
      expect(refused.fields).toEqual(['document_time']);
    });

    test('the edges of the Timestamp range are accepted (to the millisecond: ts-proto rounds the last nanoseconds of 9999 into 10000)', async () => {
      for (const [seconds, nanos] of [
        [-62_135_596_800, 0],
        [253_402_300_799, 999_000_000],
      ]) {
        const answered = await call(ISSUE_NUMBER, withDocumentTime(seconds, nanos));
        // NEVER series: any date inside the range is numbered.
        expect(summary(answered)).toEqual({ code: 'OK', reason: undefined, retryInfo: false, breaches: [] });
      }
      // Valid on the wire, but the generated decoder's floating-point conversion makes it 10000-01-01: refused by the decoded check.
      const last = await call(ISSUE_NUMBER, withDocumentTime(253_402_300_799, 999_999_999));
      expect(summary(last)).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'FIELD_INVALID'));
      expect(last.fields).toEqual(['document_time']);
    });

    test.each([
      ['seconds and nanos of opposite signs', 60, -1],
      ['negative seconds with positive nanos', -60, 1],
      ['nanos 1e9', 60, 1_000_000_000],
      ['nanos -1e9', -60, -1_000_000_000],
      ['seconds beyond ±315,576,000,000', 315_576_000_001, 0],
    ])('ReserveNumber ttl with %s is FIELD_INVALID naming ttl', async (_label, seconds, nanos) => {
      const request = new BinaryWriter().tag(1, WireType.LengthDelimited).string('inv').tag(4, WireType.LengthDelimited).bytes(secondsNanos(seconds, nanos)).finish();
      const refused = await call(RESERVE_NUMBER, request);
      expect(summary(refused)).toEqual(refusedWith(Status.INVALID_ARGUMENT, 'FIELD_INVALID'));
      expect(refused.fields).toEqual(['ttl']);
    });

    test('a request above the kernel limit but below the transport cap is RESOURCE_EXHAUSTED REQUEST_TOO_LARGE with ErrorInfo and x-trace-id', async () => {
      const big = new BinaryWriter().tag(1, WireType.LengthDelimited).string('inv').tag(3, WireType.LengthDelimited).bytes(new Uint8Array(5 * 1024 * 1024).fill(0x61)).finish();
      expect(summary(await call(ISSUE_NUMBER, big))).toEqual(refusedWith(Status.RESOURCE_EXHAUSTED, 'REQUEST_TOO_LARGE'));
      expect((await call(LIST_SERIES, encode(LIST_SERIES, {}))).ok).toBe(true);
    });

    test('beyond the transport cap grpc-js answers RESOURCE_EXHAUSTED itself (documented: no ErrorInfo) and the kernel keeps serving', async () => {
      const huge = new BinaryWriter().tag(3, WireType.LengthDelimited).bytes(new Uint8Array(17 * 1024 * 1024)).finish();
      const refused = await call(ISSUE_NUMBER, huge);
      expect(Status[refused.code]).toBe('RESOURCE_EXHAUSTED');
      expect((await call(LIST_SERIES, encode(LIST_SERIES, {}))).ok).toBe(true);
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

  describe('transport errors', () => {
    test('an unknown method is UNIMPLEMENTED from grpc-js itself (documented: no ErrorInfo, no x-trace-id)', async () => {
      const raw = new grpc.Client(kernel.address, grpc.credentials.createInsecure());
      try {
        const code = await new Promise<grpc.status>((resolve) => {
          const c = raw.makeUnaryRequest('/axis.kernel.sequences.v1.SequenceService/NoSuchMethod', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), new grpc.Metadata(), () => undefined);
          c.on('status', (s: grpc.StatusObject) => resolve(s.code));
        });
        expect(grpc.status[code]).toBe('UNIMPLEMENTED');
      } finally {
        raw.close();
      }
    });
  });

  test('afterwards the kernel never masked an error as INTERNAL', async () => {
    expect((await call(LIST_SERIES, encode(LIST_SERIES, {}))).ok).toBe(true);
    const masked = kernel.logs.entries().filter((e) => e.msg === 'unhandled error (masked as INTERNAL)');
    expect(masked.map((e) => `${e.method}: ${JSON.stringify(e.err).slice(0, 200)}`)).toEqual([]);
  });
});

/** Middleware-level checks: inputs the HTTP/2 transport never delivers to the kernel as such. */
describe('middleware (no transport in between)', () => {
  const settle = async (result: Promise<unknown>) => {
    try {
      return { value: await result };
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
    const call = { request: {}, next: async () => 'handled' };
    const outcome = await settle(middleware(call as never, context as never));
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
      next: async () => {
        throw translateDatabaseError(cause);
      },
    };
    const context = { method: { action: 'x/Y' }, trace: { traceId: 'f'.repeat(32) }, otel: ROOT_CONTEXT, log, trailer: Metadata() };
    const outcome = await settle(middleware(call as never, context as never));
    expect((outcome.error as { code?: Status }).code).toBe(Status.INVALID_ARGUMENT);
    expect(logged.map((l) => ({ level: l.level, reason: l.fields.reason, sqlstate: l.fields.sqlstate }))).toEqual([{ level: 'error', reason: 'VALUE_REJECTED', sqlstate: '22021' }]);
    expect(metrics.counter('rpc_validation_gaps_total', { method: 'x/Y' })).toBe(1);
  });
});
