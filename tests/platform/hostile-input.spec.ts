import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as fc from 'fast-check';
import { ClientError, createChannel, createClient, Metadata, Status, type CallOptions, type Channel } from 'nice-grpc';
import { Client } from 'pg';
import { ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { SequenceServiceDefinition, type GetGapReportResponse } from '../../gen/proto/axis/kernel/sequences/v1/sequence_service';
import { mintDevelopmentToken } from '../../services/platform/auth/token-verifier';
import { errorContractBreaches as breaches, reasonOf, type Outcome } from '../support/error-contract';
import {
  decodes,
  rawMethodDefinitions,
  describeValue,
  encodeHostile,
  hostileRequests,
  hostileString,
  HostileRequest,
  hostilePageTokens,
  loadService,
  MintedPageToken,
  probeRequests,
  undecodableBytes,
  type CanonicalValues,
  type FieldHints,
  type TsProtoType,
} from '../support/hostile-requests';
import { forgeUnsignedPageToken, kernelPageTokenMinter, type PageTokenMinter } from '../support/page-tokens';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/**
 * Issue requirement: malformed and random requests (bad enums, empty and oversized strings,
 * wrong tenant, missing or forged tokens, garbage bytes) to every RPC each get a well-formed
 * error, the process stays up, and nothing half-writes.
 *
 * Requests go through a bare nice-grpc client carrying pre-encoded bytes (built with the
 * generated fromPartial/encode), so no client-side validation filters them. Set
 * HOSTILE_SEED to replay a run, HOSTILE_RUNS to change the number of runs per method and
 * HOSTILE_REPORT=1 to print the status codes seen, HOSTILE_EXPLORE=1 to list every kind of
 * breach found instead of stopping at the first.
 */

const TENANT = 'fuzz';
const SUBJECT = 'fuzzer';
const RUNS = Number(process.env.HOSTILE_RUNS ?? 50);
const SEED = process.env.HOSTILE_SEED === undefined ? undefined : Number(process.env.HOSTILE_SEED);
/** HOSTILE_EXPLORE=1: do not stop at the first breach; print one request per kind of breach (and the kernel's masked errors). */
const EXPLORE = process.env.HOSTILE_EXPLORE === '1';
const SERVICE_NAME = SequenceServiceDefinition.fullName;

type AnyTsProtoType = TsProtoType<unknown>;
const DESCRIPTORS = loadService(SERVICE_NAME);

/** Every RPC of the service, from the generated definition (never a hand-written list). */
const METHODS = Object.values(SequenceServiceDefinition.methods).map((m) => {
  const input = DESCRIPTORS.methods.find((d) => d.name === m.name)?.input;
  if (!input) throw new Error(`${m.name} is missing from gen/descriptor.binpb (regenerate it)`);
  return {
    name: m.name,
    path: `/${SERVICE_NAME}/${m.name}`,
    mutating: (m.options as { idempotencyLevel?: string }).idempotencyLevel !== 'NO_SIDE_EFFECTS',
    requestType: m.requestType as unknown as AnyTsProtoType,
    responseType: m.responseType as unknown as AnyTsProtoType,
    input,
  };
});
type KernelMethod = (typeof METHODS)[number];
const method = (name: string) => METHODS.find((m) => m.name === name)!;

/** A nice-grpc definition whose requests are already-encoded bytes: what goes on the wire is exactly what we built. */
const RAW_DEFINITION = rawMethodDefinitions(METHODS);

/** Fixtures the fuzzer aims at, so hostile requests also reach the ledger and not only validation. */
const SERIES = [
  { seriesId: 'fz-never', pattern: 'N-{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' },
  { seriesId: 'fz-yearly', pattern: 'INV-{YYYY}-{SEQ:5}', resetPolicy: ResetPolicy.RESET_POLICY_YEARLY, timeZone: 'Europe/Berlin' },
  { seriesId: 'fz-monthly', pattern: '{YY}{MM}/{SEQ:3}', resetPolicy: ResetPolicy.RESET_POLICY_MONTHLY, timeZone: 'Pacific/Kiritimati', startValue: 1000 },
];
const now = new Date();
const THIS_YEAR = String(now.getUTCFullYear());
const THIS_MONTH = `${THIS_YEAR}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`;

const HINTS: FieldHints = {
  seriesId: fc.oneof(
    { arbitrary: fc.constantFrom(...SERIES.map((s) => s.seriesId)), weight: 6 },
    { arbitrary: fc.constantFrom('missing', '0', 'x'.repeat(63), 'x'.repeat(64), 'Upper', '-lead', '.dot', 'a b', 'a/b'), weight: 1 },
    { arbitrary: fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/), weight: 2 },
  ),
  period: fc.constantFrom('', '', THIS_YEAR, THIS_MONTH, '2026', '2026-11', '0000', '9999-99', '2026-1', '-', '275760'),
  value: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 998, max: 1008 })),
  startValue: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.constantFrom(1e15, 1e15 + 1)),
  pageSize: fc.integer({ min: 0, max: 1001 }),
  pattern: fc.constantFrom('{SEQ}', 'INV-{YYYY}-{SEQ:5}', '{YY}{MM}-{SEQ:18}', '{DD}.{MM}.{YYYY}/{SEQ:2}', '{SEQ:19}', '{SEQ:0}', '{SEQ}{SEQ}', '{YYYY}', '{', 'x'.repeat(101)),
  timeZone: fc.constantFrom('UTC', 'Europe/Berlin', 'Pacific/Kiritimati', 'Etc/GMT+12', 'America/St_Johns', 'Mars/Olympus', 'utc', '+05:30', 'Europe/../UTC'),
  // Forged tokens (the unsigned pre-MAC format among them) and tokens minted with the kernel's key
  // for the request they travel with: a hostile position then reaches the handler's schema.
  pageToken: fc.oneof(
    hostilePageTokens((position) => forgeUnsignedPageToken(position, 'series')),
    fc
      .tuple(fc.constantFrom(...SERIES.map((s) => s.seriesId)), hostileString(fc.constantFrom('', THIS_YEAR)), fc.integer())
      .map(([s, period, value]) => forgeUnsignedPageToken({ period, value }, { s, st: 0 })),
    fc.tuple(hostileString(fc.constantFrom('', THIS_YEAR)), fc.oneof(fc.integer(), fc.constantFrom(2 ** 62, 1.5, -1))).map(([period, value]) => new MintedPageToken({ period, value })),
  ),
};

/**
 * The otherwise-valid request every probe starts from: series fz-probe, whose values 1..PROBE_POOL
 * are reserved up front so that each CommitReservation/VoidNumber probe gets a number of its
 * own that its change would actually apply to.
 */
const PROBE_SERIES = 'fz-probe';
const PROBE_POOL = 120;
let nextProbeValue = 0;
const CANONICAL: CanonicalValues = {
  seriesId: PROBE_SERIES,
  period: '',
  value: () => (nextProbeValue = (nextProbeValue % PROBE_POOL) + 1),
  pattern: '{SEQ}',
  timeZone: 'UTC',
  pageToken: '',
  pageSize: 0,
  status: 0,
};
/** Page tokens carrying a hostile position: forged in the unsigned pre-MAC format, and minted with the kernel's key (so the schema sees them). */
const PROBE_EXTRAS: Record<string, unknown[]> = {
  pageToken: [
    forgeUnsignedPageToken('\u0000', 'series'),
    forgeUnsignedPageToken({ period: '', value: 2 ** 62 }, { s: PROBE_SERIES, st: 0 }),
    ...['\u0000', { nested: true }, { period: '\u0000', value: 1 }, { period: '', value: 2 ** 62 }, { period: '', value: 1.5 }, { period: '', value: '1' }, 'fz-never\u0000'].map(
      (position) => new MintedPageToken(position),
    ),
    new MintedPageToken({ period: '', value: 1 }, 'flip'),
    new MintedPageToken({ period: '', value: 1 }, 'other-tenant'),
  ],
};

describe('hostile input', () => {
  let kernel: TestKernel;
  let channel: Channel;
  let client: Record<string, (request: Uint8Array, options?: CallOptions) => Promise<unknown>>;
  let rawClient: grpc.Client;
  let token: string;
  /** Successful mutating calls made by this file: each must have left exactly one OK audit entry. */
  let mutationsOk = 0;
  const seen = new Map<string, number>();
  const note = (key: string) => seen.set(key, (seen.get(key) ?? 0) + 1);
  const findings = new Map<string, string>();

  let minter: PageTokenMinter;

  beforeAll(async () => {
    kernel = await startTestKernel();
    minter = await kernelPageTokenMinter(kernel.databaseUrl);
    token = await kernel.token({ tenants: [TENANT], sub: SUBJECT });
    channel = createChannel(kernel.address);
    client = createClient(RAW_DEFINITION, channel) as unknown as typeof client;
    rawClient = new grpc.Client(kernel.address, grpc.credentials.createInsecure());
    for (const series of SERIES) {
      expectOk(await send(method('CreateSeries'), encode(method('CreateSeries'), { series })));
      for (let i = 0; i < 3; i++) {
        expectOk(await send(method('IssueNumber'), encode(method('IssueNumber'), { seriesId: series.seriesId, subjectRef: `doc-${i}` })));
        expectOk(await send(method('ReserveNumber'), encode(method('ReserveNumber'), { seriesId: series.seriesId, ttl: { seconds: 3600, nanos: 0 } })));
      }
      // One reservation per series that the expiry sweep voids while the fuzzer runs (period "" included).
      expectOk(await send(method('ReserveNumber'), encode(method('ReserveNumber'), { seriesId: series.seriesId, subjectRef: 'lapses', ttl: { seconds: 1, nanos: 0 } })));
    }
  });

  beforeAll(async () => {
    const reserve = method('ReserveNumber');
    expectOk(await send(method('CreateSeries'), encode(method('CreateSeries'), { series: { seriesId: PROBE_SERIES, pattern: '{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } })));
    for (let i = 0; i < PROBE_POOL; i++) expectOk(await send(reserve, encode(reserve, { seriesId: PROBE_SERIES, ttl: { seconds: 3600, nanos: 0 } })));
  });

  afterAll(async () => {
    if (process.env.HOSTILE_REPORT || EXPLORE) {
      console.log([...seen.entries()].sort().map(([k, n]) => `${String(n).padStart(5)}  ${k}`).join('\n'));
    }
    if (EXPLORE) {
      console.log([...findings.entries()].map(([signature, request]) => `${signature}\n    ${request}`).join('\n'));
      const masked = kernel?.logs.entries().filter((e) => e.msg === 'unhandled error (masked as INTERNAL)') ?? [];
      console.log(masked.map((e) => `${e.method}: ${JSON.stringify(e.err).slice(0, 400)}`).join('\n'));
    }
    rawClient?.close();
    channel?.close();
    await kernel?.stop();
  });

  const validMetadata = () => Metadata({ authorization: `Bearer ${token}`, 'x-tenant-id': TENANT, 'idempotency-key': randomUUID() });
  const encode = (m: KernelMethod, partial: Record<string, unknown>) => m.requestType.encode(m.requestType.fromPartial(partial)).finish();

  async function send(m: KernelMethod, bytes: Uint8Array, metadata: Metadata = validMetadata()): Promise<Outcome> {
    let trailer: Metadata | undefined;
    const options: CallOptions = { metadata, onTrailer: (t) => (trailer = t), signal: AbortSignal.timeout(20_000) };
    try {
      const response = await client[m.name](bytes, options);
      if (m.mutating) mutationsOk += 1;
      return { ok: true, code: Status.OK, response, trailer };
    } catch (error) {
      if (error instanceof ClientError) return { ok: false, code: error.code, trailer };
      throw error;
    }
  }

  function expectOk(outcome: Outcome): void {
    if (!outcome.ok) throw new Error(`fixture call failed: ${Status[outcome.code]} ${reasonOf(outcome)}`);
  }

  const summary = (outcome: Outcome) => (outcome.ok ? 'OK' : `${Status[outcome.code]} ${reasonOf(outcome) ?? '(no ErrorInfo)'}`);

  const assertOptions = (runs = RUNS): fc.Parameters<unknown> => ({
    numRuns: runs,
    seed: SEED,
    // A live server behind every shrink step: keep the reproducer search bounded.
    plugins: [fc.interruptAfterTimeLimit(40_000)],
  });

  describe.each(METHODS.map((m) => [m.name, m] as const))('%s', (name, m) => {
    /** Sends one hostile request; returns a description of each contract breach (none when the kernel coped). */
    const mint = (request: unknown, position: unknown, otherTenant: boolean) => minter.mint(m, otherTenant ? `${TENANT}-other` : TENANT, request as { pageToken: string }, position);

    async function probe(request: HostileRequest, kind: string): Promise<string | undefined> {
      const bytes = encodeHostile(m.requestType, m.input, request, mint);
      const outcome = await send(m, bytes);
      note(`${kind.padEnd(8)} ${name.padEnd(17)} ${summary(outcome)}`);
      const problems = breaches(outcome);
      if (!problems.length) return undefined;
      const signature = `${name} answered ${summary(outcome)}: ${problems.join('; ')}`;
      if (EXPLORE && !findings.has(signature)) findings.set(signature, describeValue(request.partial));
      return (
        `${signature}\n` +
        `  request: ${describeValue(request.partial)}\n` +
        `  wire bytes (${bytes.length}): ${Buffer.from(bytes.slice(0, 160)).toString('hex')}${bytes.length > 160 ? '…' : ''}`
      );
    }

    test('one field at a time at an extreme of its kind: a success or a well-formed kernel.axis error, never INTERNAL', async () => {
      const failures: string[] = [];
      for (const request of probeRequests(DESCRIPTORS, name, CANONICAL, PROBE_EXTRAS)) {
        const failure = await probe(request, 'probe');
        if (failure) failures.push(failure);
      }
      if (failures.length) throw new Error(`${failures.length} probe(s) of ${name} broke the error contract:\n${failures.join('\n')}`);
    });

    test('random and malformed field values get a success or a well-formed kernel.axis error, never INTERNAL', async () => {
      await fc.assert(
        fc.asyncProperty(hostileRequests(DESCRIPTORS, name, HINTS), async (request: HostileRequest) => {
          const failure = await probe(request, 'fields');
          if (failure && !EXPLORE) throw new Error(failure);
        }),
        assertOptions(),
      );
    });

    test('garbage bytes are refused with a gRPC error and the server keeps serving', async () => {
      const valid = hostileRequests(DESCRIPTORS, name, HINTS).map((r) => encodeHostile(m.requestType, m.input, r, mint));
      const payloads = fc.oneof({ arbitrary: undecodableBytes(m.requestType, valid), weight: 3 }, { arbitrary: fc.uint8Array({ minLength: 1, maxLength: 512 }), weight: 1 });
      await fc.assert(
        fc.asyncProperty(payloads, async (garbage) => {
          const result = await rawCall(m.path, Buffer.from(garbage));
          const decodable = decodes(m.requestType, garbage);
          const shown = `${Buffer.from(garbage.slice(0, 64)).toString('hex')}${garbage.length > 64 ? `… (${garbage.length} bytes)` : ''}`;
          if (!decodable) {
            const hasDetails = result.trailer.get('grpc-status-details-bin').length > 0;
            const hasTrace = result.trailer.get('x-trace-id').length > 0;
            note(`garbage  ${name.padEnd(17)} ${grpc.status[result.code]} details=${hasDetails} x-trace-id=${hasTrace}`);
            if (result.code === grpc.status.OK) throw new Error(`${name} accepted undecodable bytes ${shown}`);
          } else {
            // Random bytes that happen to be a valid encoding reach the handler: the full contract applies.
            const outcome: Outcome = { ok: result.code === grpc.status.OK, code: result.code as number as Status, trailer: toNiceMetadata(result.trailer) };
            if (outcome.ok && m.mutating) mutationsOk += 1;
            note(`decodes  ${name.padEnd(17)} ${summary(outcome)}`);
            const problems = breaches(outcome);
            if (problems.length) throw new Error(`${name} answered ${summary(outcome)} to decodable bytes ${shown}: ${problems.join('; ')}`);
          }
        }),
        assertOptions(30),
      );
      // Larger than the server's 4 MiB receive limit.
      const oversized = await rawCall(m.path, Buffer.alloc(5 * 1024 * 1024, 0x0a));
      note(`oversize ${name.padEnd(17)} ${grpc.status[oversized.code]} details=${oversized.trailer.get('grpc-status-details-bin').length > 0}`);
      expect(oversized.code).not.toBe(grpc.status.OK);
      expect(summary(await send(method('ListSeries'), new Uint8Array()))).toBe('OK');
    });

    test('missing, malformed, forged and expired tokens and bad tenants get the documented refusals', async () => {
      const expectRefusal = async (label: string, metadata: Record<string, string>, code: Status, reason: string | string[]) => {
        const reasons = typeof reason === 'string' ? [reason] : reason;
        await expectOneOf(label, metadata, reasons.map((r) => `${Status[code]} ${r}`));
      };
      const expectOneOf = async (label: string, metadata: Record<string, string>, wanted: string[]) => {
        const outcome = await send(m, encode(m, {}), Metadata(metadata));
        const problems = breaches(outcome);
        if (!wanted.includes(summary(outcome))) problems.unshift(`want ${wanted.join(' | ')}`);
        if (problems.length) throw new Error(`${name}, ${label}: got ${summary(outcome)}: ${problems.join('; ')}`);
      };
      const key = { 'idempotency-key': randomUUID() };
      const tenant = { 'x-tenant-id': TENANT, ...key };
      const bearer = (t: string) => ({ authorization: `Bearer ${t}`, ...tenant });
      const [header, payload, signature] = token.split('.');
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const U = Status.UNAUTHENTICATED;

      await expectRefusal('no token', tenant, U, 'TOKEN_MISSING');
      await expectRefusal('empty authorization', { authorization: '', ...tenant }, U, 'TOKEN_MISSING');
      await expectRefusal('Bearer garbage', bearer('garbage'), U, 'TOKEN_MALFORMED');
      await expectRefusal('token without the Bearer scheme', { authorization: token, ...tenant }, U, 'TOKEN_MALFORMED');
      await expectRefusal('Basic credentials', { authorization: 'Basic dXNlcjpwYXNz', ...tenant }, U, 'TOKEN_MALFORMED');
      await expectRefusal('two Bearer tokens', { authorization: `Bearer ${token} Bearer ${token}`, ...tenant }, U, 'TOKEN_MALFORMED');
      await expectRefusal('JWT-shaped garbage', bearer('a.b.c'), U, 'TOKEN_INVALID');
      await expectRefusal('alg none', bearer(`${b64({ alg: 'none', typ: 'JWT' })}.${payload}.x`), U, 'TOKEN_INVALID');
      await expectRefusal('payload swapped under the signature', bearer(`${header}.${b64({ sub: 'mallory', tenants: ['*'], scope: 'sequences:read sequences:write', exp: 4e9 })}.${signature}`), U, 'TOKEN_INVALID');
      const forged = await mintDevelopmentToken({ secret: `${kernel.secret}-not`, subject: 'mallory', tenants: [TENANT], scope: kernel.kernel.scopes.join(' ') });
      await expectRefusal('token signed with another secret', bearer(forged), U, 'TOKEN_INVALID');
      await expectRefusal('expired token', bearer(await kernel.token({ tenants: [TENANT], ttlSeconds: -60 })), U, 'TOKEN_EXPIRED');
      await expectRefusal('token without tenants', bearer(await kernel.token({ tenants: [] })), U, 'TOKEN_CLAIMS_INVALID');
      // The kernel's own principals: a token posing as the kernel, an operator or an anonymous attempt.
      for (const sub of ['system:kernel', 'System:Kernel', 'operator:root@kernel-1', 'anonymous']) {
        await expectRefusal(`token with the reserved subject ${sub}`, bearer(await kernel.token({ tenants: [TENANT], sub })), U, 'TOKEN_SUBJECT_RESERVED');
      }
      await expectRefusal('tenant the token does not allow', { authorization: `Bearer ${token}`, 'x-tenant-id': 'globex', ...key }, Status.PERMISSION_DENIED, 'TENANT_NOT_ALLOWED');
      await expectRefusal('token without the scope', bearer(await kernel.token({ tenants: [TENANT], scope: 'other:read' })), Status.PERMISSION_DENIED, 'SCOPE_MISSING');
      for (const [label, value] of [
        ['path traversal', '../x'],
        ['500 characters', 'a'.repeat(500)],
        ['upper case', 'FUZZ'],
        ['SQL', "fuzz'; --"],
        ['wildcard', '*'],
      ] as const) {
        await expectRefusal(`tenant ${label}`, { authorization: `Bearer ${token}`, 'x-tenant-id': value, ...key }, Status.INVALID_ARGUMENT, 'TENANT_INVALID');
      }
      await expectRefusal('no tenant', { authorization: `Bearer ${token}`, ...key }, Status.INVALID_ARGUMENT, 'TENANT_MISSING');
      await expectRefusal('empty tenant', { authorization: `Bearer ${token}`, 'x-tenant-id': '', ...key }, Status.INVALID_ARGUMENT, 'TENANT_MISSING');
      await expectRefusal('blank tenant', { authorization: `Bearer ${token}`, 'x-tenant-id': '   ', ...key }, Status.INVALID_ARGUMENT, 'TENANT_MISSING');
      if (m.mutating) {
        const auth = { authorization: `Bearer ${token}`, 'x-tenant-id': TENANT };
        await expectRefusal('no idempotency-key', auth, Status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_MISSING');
        await expectRefusal('idempotency-key of 256 characters', { ...auth, 'idempotency-key': 'k'.repeat(256) }, Status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_INVALID');
        await expectRefusal('idempotency-key with a space', { ...auth, 'idempotency-key': 'a b' }, Status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_INVALID');
      }

      // Random printable authorization headers and tenants.
      const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 600 });
      await fc.assert(
        fc.asyncProperty(printable, printable, async (authorization, tenantId) => {
          await expectRefusal(`authorization ${JSON.stringify(authorization)}`, { authorization, ...tenant }, U, ['TOKEN_MISSING', 'TOKEN_MALFORMED', 'TOKEN_AMBIGUOUS', 'TOKEN_INVALID']);
          fc.pre(tenantId !== TENANT);
          // HTTP/2 drops header values with surrounding whitespace, so those arrive as no tenant at all.
          await expectOneOf(`x-tenant-id ${JSON.stringify(tenantId)}`, { authorization: `Bearer ${token}`, 'x-tenant-id': tenantId, ...key }, [
            'INVALID_ARGUMENT TENANT_INVALID',
            'INVALID_ARGUMENT TENANT_AMBIGUOUS',
            'INVALID_ARGUMENT TENANT_MISSING',
            'PERMISSION_DENIED TENANT_NOT_ALLOWED',
          ]);
        }),
        assertOptions(15),
      );
    });
  });

  describe('document dates outside the years 0001–9999', () => {
    // SequenceNumber.document_date is YYYY-MM-DD and periods are "", YYYY or YYYY-MM: a date
    // those cannot express must be refused, not numbered under a period nobody can address.
    test.each([
      ['10000-06-15', Date.UTC(10000, 5, 15, 12)],
      ['275760-09-13 (the last JS date)', 8.64e15],
      ['2 BC (-000001-06-15)', Date.parse('-000001-06-15T12:00:00Z')],
      ['271822 BC (the first JS date)', -8.64e15],
    ])('IssueNumber and ReserveNumber on a YEARLY series with document_time %s are refused', async (_label, ms) => {
      const answers = [];
      for (const m of [method('IssueNumber'), method('ReserveNumber')]) {
        const outcome = await send(m, encode(m, { seriesId: 'fz-yearly', documentTime: new Date(ms) }));
        const number = (outcome.response as { number?: { period: string; documentDate: string; formatted: string } } | undefined)?.number;
        answers.push({
          method: m.name,
          code: Status[outcome.code],
          breaches: breaches(outcome),
          numbered: number && { period: number.period, documentDate: number.documentDate, formatted: number.formatted },
        });
      }
      expect(answers).toEqual(['IssueNumber', 'ReserveNumber'].map((name) => ({ method: name, code: 'INVALID_ARGUMENT', breaches: [], numbered: undefined })));
    });
  });

  describe('afterwards', () => {
    test('the kernel is still serving and never masked an error as INTERNAL', async () => {
      const listed = await send(method('ListSeries'), encode(method('ListSeries'), {}));
      expect(breaches(listed)).toEqual([]);
      expect(listed.ok).toBe(true);
      const masked = Object.fromEntries(METHODS.map((m) => [m.name, kernel.kernel.metrics.counter('rpc_internal_errors_total', { method: `${SERVICE_NAME}/${m.name}` })]).filter(([, n]) => n));
      expect(masked).toEqual({});
    });

    test('nothing half-wrote: every number is audited, every counter is gap-free, every success has one audit entry', async () => {
      const db = new Client({ connectionString: kernel.databaseUrl });
      await db.connect();
      try {
        const sql = async (text: string) => (await db.query(text, [TENANT])).rows;
        // The fixtures' 1 s reservations must have been voided by the expiry sweep (every 200 ms).
        for (let waited = 0; ; waited += 100) {
          const [{ lapsed }] = await sql(`SELECT count(*)::int AS lapsed FROM sequence_number WHERE tenant_id = $1 AND subject_ref = 'lapses' AND status = 'RESERVED'`);
          if (lapsed === 0) break;
          if (waited > 10_000) throw new Error(`${lapsed} reservations of 1 s were not voided by the expiry sweep within 10 s`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const action = (rpc: string) => `'${SERVICE_NAME}/${rpc}'`;
        const resourceOf = `format('series/%s/periods/%s/numbers/%s', n.series_id, CASE WHEN n.period = '' THEN '-' ELSE n.period END, n.value)`;
        const audited = (actions: string[]) =>
          `EXISTS (SELECT 1 FROM kernel_audit_event e WHERE e.tenant_id = n.tenant_id AND e.outcome = 'OK'
                     AND e.action IN (${actions.map(action).join(', ')}) AND e.resource = ${resourceOf})`;
        /** What a number was audited as instead, under any spelling of its period. */
        const auditedAs = (actions: string[]) =>
          `ARRAY(SELECT e.action || ' ' || e.resource FROM kernel_audit_event e
                  WHERE e.tenant_id = n.tenant_id AND e.action IN (${actions.map(action).join(', ')})
                    AND e.resource LIKE 'series/' || n.series_id || '/periods/%/numbers/' || n.value ORDER BY e.event_id) AS audited_as`;

        const counters = await sql(
          `SELECT c.series_id, c.period, c.next_value::text AS next_value, s.start_value::text AS start_value,
                  count(n.value)::text AS numbers, min(n.value)::text AS first, max(n.value)::text AS last
             FROM sequence_counter c
             JOIN sequence_series s ON (s.tenant_id, s.series_id) = (c.tenant_id, c.series_id)
             LEFT JOIN sequence_number n ON (n.tenant_id, n.series_id, n.period) = (c.tenant_id, c.series_id, c.period)
            WHERE c.tenant_id = $1
            GROUP BY c.series_id, c.period, c.next_value, s.start_value`,
        );
        const incompleteGapReports: unknown[] = [];
        for (const { series_id: seriesId } of await sql(`SELECT series_id FROM sequence_series WHERE tenant_id = $1 ORDER BY series_id`)) {
          const report = await send(method('GetGapReport'), encode(method('GetGapReport'), { seriesId }));
          const body = (report.response as GetGapReportResponse | undefined)?.gapReport;
          if (!report.ok || !body?.complete) incompleteGapReports.push({ seriesId, outcome: summary(report), periods: body?.periods });
        }
        const [{ ok }] = await sql(`SELECT count(*)::int AS ok FROM kernel_audit_event WHERE tenant_id = $1 AND outcome = 'OK' AND principal <> 'system:kernel'`);
        const [{ records }] = await sql(`SELECT count(*)::int AS records FROM kernel_idempotency_record WHERE tenant_id = $1`);

        // One comparison, so that every kind of half-write shows at once.
        expect({
          // Every number was handed out by an audited IssueNumber/ReserveNumber...
          numbersWithoutAllocationAudit: await sql(
            `SELECT series_id, period, value, status, ${auditedAs(['IssueNumber', 'ReserveNumber'])}
               FROM sequence_number n WHERE tenant_id = $1 AND NOT ${audited(['IssueNumber', 'ReserveNumber'])}`,
          ),
          // ...every void is audited under the number's resource (by VoidNumber or the expiry sweep)...
          voidsWithoutAudit: await sql(
            `SELECT series_id, period, value, void_reason, ${auditedAs(['VoidNumber', 'ExpireReservation'])}
               FROM sequence_number n WHERE tenant_id = $1 AND status = 'VOIDED' AND NOT ${audited(['VoidNumber', 'ExpireReservation'])}`,
          ),
          // ...and so is every commit of a reservation.
          commitsWithoutAudit: await sql(
            `SELECT series_id, period, value FROM sequence_number n
              WHERE tenant_id = $1 AND status = 'ISSUED' AND ${audited(['ReserveNumber'])} AND NOT ${audited(['CommitReservation'])}`,
          ),
          // Every number lives in a period the API can address again (CommitReservation, VoidNumber, ListNumbers).
          numbersInUnaddressablePeriods: await sql(
            `SELECT series_id, period, value, status, to_char(document_date, 'YYYY-MM-DD BC') AS document_date
               FROM sequence_number WHERE tenant_id = $1 AND period !~ '^([0-9]{4}(-[0-9]{2})?)?$'`,
          ),
          numbersWithoutCounter: await sql(
            `SELECT series_id, period, value FROM sequence_number n WHERE tenant_id = $1
                AND NOT EXISTS (SELECT 1 FROM sequence_counter c WHERE (c.tenant_id, c.series_id, c.period) = (n.tenant_id, n.series_id, n.period))`,
          ),
          // Every counter accounts for exactly start_value .. next_value - 1, with no value missing.
          countersWithGaps: counters.filter(
            (c) => c.first !== c.start_value || c.last !== String(BigInt(c.next_value) - 1n) || c.numbers !== String(BigInt(c.next_value) - BigInt(c.start_value)),
          ),
          incompleteGapReports,
          // One OK audit entry and one idempotency record per successful mutating call, each naming what changed.
          okAuditEntries: ok,
          idempotencyRecords: records,
          okAuditEntriesWithoutResourceOrByStrangers: await sql(
            `SELECT action, principal, resource FROM kernel_audit_event
              WHERE tenant_id = $1 AND outcome = 'OK' AND (resource = '' OR principal NOT IN ('${SUBJECT}', 'system:kernel'))`,
          ),
        }).toEqual({
          numbersWithoutAllocationAudit: [],
          voidsWithoutAudit: [],
          commitsWithoutAudit: [],
          numbersInUnaddressablePeriods: [],
          numbersWithoutCounter: [],
          countersWithGaps: [],
          incompleteGapReports: [],
          okAuditEntries: mutationsOk,
          idempotencyRecords: mutationsOk,
          okAuditEntriesWithoutResourceOrByStrangers: [],
        });
        expect(counters.length).toBeGreaterThanOrEqual(SERIES.length + 1);
      } finally {
        await db.end();
      }
    });
  });

  /** One unary call with raw bytes as the body, straight through @grpc/grpc-js. */
  function rawCall(path: string, body: Buffer): Promise<{ code: grpc.status; trailer: grpc.Metadata }> {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    metadata.set('x-tenant-id', TENANT);
    metadata.set('idempotency-key', randomUUID());
    return new Promise((resolve) => {
      const call = rawClient.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        body,
        metadata,
        { deadline: Date.now() + 20_000 },
        () => undefined,
      );
      call.on('status', (status: grpc.StatusObject) => resolve({ code: status.code, trailer: status.metadata }));
    });
  }
});

function toNiceMetadata(trailer: grpc.Metadata): Metadata {
  const out = Metadata();
  for (const [key, values] of Object.entries(trailer.toJSON())) {
    for (const v of values) {
      if (key.endsWith('-bin')) out.append(key as `${string}-bin`, v as Buffer);
      else out.append(key, String(v));
    }
  }
  return out;
}
