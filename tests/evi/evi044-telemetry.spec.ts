import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createChannel, createClient } from 'nice-grpc';
import { Metadata } from 'nice-grpc-common';
import { closeKernelClient, createBatchClient, createSchedulerClient, createSecretClient } from '../../clients/src';
import { SecretKind } from '../../gen/proto/axis/kernel/secrets/v1/secret';
import { SecretServiceDefinition } from '../../gen/proto/axis/kernel/secrets/v1/secret_service';
import { OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver';
import { mintDevelopmentToken } from '../../services/platform/auth/token-verifier';
import { spawnKernel, type KernelProcess } from '../support/kernel-process';
import { superuserQuery } from '../support/superuser-sql';
import { createBackendDatabase, type TestBackendDatabase } from '../support/test-kernel';
import { waitFor } from '../support/wait-for';

/*
 * EVI044 — telemetry propagation (docs/capabilities/telemetry.md). A real OTLP/HTTP receiver runs inside the test and
 * decodes what the kernel exports with the OpenTelemetry protobuf types; the kernel — its own
 * process, as deployed — exports to it because OTEL_EXPORTER_OTLP_ENDPOINT points there, nothing
 * else. Its job and batch handlers come from tests/support/evi044-handlers.ts. The W3C rules
 * themselves are ported case by case in tests/platform/trace-context.spec.ts; here they are
 * checked end to end.
 */

const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3, CONSUMER: 5 } as const;
const BUDGETED = 'axis.kernel.secrets.v1.SecretService/ListSecrets';
const ROOT = path.resolve(__dirname, '../..');

const newTrace = () => ({ traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex') });
const traced = (t: { traceId: string; spanId: string }, extra: Record<string, string> = {}) =>
  Metadata({ traceparent: `00-${t.traceId}-${t.spanId}-01`, ...extra });

/** The chain of parents of `span` within its trace (the span itself first). */
function ancestry(spans: ReceivedSpan[], span: ReceivedSpan): ReceivedSpan[] {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const chain = [span];
  for (let at = byId.get(span.parentSpanId); at && chain.length < 50; at = byId.get(at.parentSpanId)) chain.push(at);
  return chain;
}

describe('EVI044 telemetry propagation', () => {
  let receiver: OtlpReceiver;
  let db: TestBackendDatabase;
  let kernel: KernelProcess;
  let hooks: Server;
  const hookRequests: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  const tenant = 'tenant-evi044';
  const secret = randomBytes(32).toString('base64url');
  /** Values that must never leave the kernel in telemetry: secrets, tokens, payloads with personal data. */
  const forbidden: string[] = [secret];
  const clients: object[] = [];
  let token: string;

  beforeAll(async () => {
    receiver = await new OtlpReceiver().start();
    hooks = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        hookRequests.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
    db = await createBackendDatabase();
    const handlers = path.join(ROOT, 'tests/support/evi044-handlers.ts');
    kernel = await spawnKernel({
      DATABASE_URL: db.url,
      KERNEL_AUTH_SECRET: secret,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      // The standard variables, read by the SDK's processors and readers: export quickly.
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_METRIC_EXPORT_INTERVAL: '300',
      KERNEL_RPC_BUDGETS_MS: JSON.stringify({ '*': 250, [BUDGETED]: 0.001 }),
      KERNEL_SCHEDULER_POLL_MS: '100',
      KERNEL_JOB_HANDLER_MODULES: handlers,
      KERNEL_BATCH_HANDLER_MODULES: handlers,
      EVI044_HOOK_URL: `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hook`,
    });
    token = await mintDevelopmentToken({
      secret,
      subject: 'tester',
      tenants: [tenant],
      scope: 'secrets:read secrets:write scheduler:read scheduler:write batch:read batch:write',
    });
    forbidden.push(token);
  }, 120_000);

  afterAll(async () => {
    clients.forEach(closeKernelClient);
    await kernel?.stop();
    await db?.close();
    await new Promise<void>((resolve) => (hooks ? hooks.close(() => resolve()) : resolve()));
    await receiver?.stop();
  });

  /** The kernel's JSON log lines. */
  const logLines = () => kernel.output.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });

  const options = () => ({ address: kernel.address, tenantId: tenant, token, maxAttempts: 1 });
  const secrets = () => {
    const client = createSecretClient(options());
    clients.push(client);
    return client;
  };

  /** Waits until the receiver holds spans of `traceId` satisfying `done`. */
  const spansOf = async (traceId: string, done: (spans: ReceivedSpan[]) => boolean) => {
    await waitFor(async () => done(receiver.spansOf(traceId)), 20_000);
    return receiver.spansOf(traceId);
  };

  test('[A] an incoming trace id appears in the response trailer, the log lines, the audit entry and the database spans', async () => {
    const caller = newTrace();
    const client = secrets();
    let trailer: string | undefined;
    const secretValue = `pii-value-${randomBytes(12).toString('hex')}`;
    forbidden.push(secretValue);
    await client.createSecret(
      { secret: { secretId: 'evi044-a', kind: SecretKind.SECRET_KIND_OPAQUE } },
      { metadata: traced(caller), onTrailer: (t) => (trailer = t.get('x-trace-id')) },
    );
    await client.addSecretVersion({ secretId: 'evi044-a', value: Buffer.from(secretValue) }, { metadata: traced(caller) });
    // Trailer.
    expect(trailer).toBe(caller.traceId);
    // Log lines: the call's own line, with method and final status.
    await waitFor(async () => logLines().filter((e) => e.trace_id === caller.traceId && e.msg === 'rpc').length >= 2, 10_000);
    const lines = logLines().filter((e) => e.trace_id === caller.traceId);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ msg: 'rpc', method: 'axis.kernel.secrets.v1.SecretService/CreateSecret', status: 'OK', tenant }),
        expect.objectContaining({ msg: 'rpc', method: 'axis.kernel.secrets.v1.SecretService/AddSecretVersion', status: 'OK', tenant }),
      ]),
    );
    // Audit entries.
    const audit = await superuserQuery(db.url, `SELECT action, trace_id FROM kernel_audit_event WHERE tenant_id = $1 ORDER BY event_id`, [tenant]);
    expect(audit.filter((r) => r.trace_id === caller.traceId).map((r) => r.action.split('/')[1])).toEqual(['CreateSecret', 'AddSecretVersion']);
    // Spans: the server span is the caller's span's child; the database statements are under it.
    const spans = await spansOf(caller.traceId, (s) => s.filter((x) => x.kind === SPAN_KIND.SERVER).length === 2 && s.some((x) => x.name.startsWith('db ')));
    const servers = spans.filter((s) => s.kind === SPAN_KIND.SERVER);
    expect(servers.map((s) => s.name).sort()).toEqual(['axis.kernel.secrets.v1.SecretService/AddSecretVersion', 'axis.kernel.secrets.v1.SecretService/CreateSecret']);
    for (const server of servers) {
      expect(server.parentSpanId).toBe(caller.spanId);
      expect(server.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'axis.kernel.secrets.v1.SecretService', 'rpc.grpc.status_code': 0, 'axis.tenant': tenant, 'axis.principal': 'tester' });
    }
    const statements = spans.filter((s) => s.name.startsWith('db '));
    expect(statements.length).toBeGreaterThan(0);
    for (const statement of statements) {
      expect(statement.kind).toBe(SPAN_KIND.CLIENT);
      expect(statement.attributes).toMatchObject({ 'db.system': 'postgresql', 'axis.tenant': tenant });
      // db span → commit group → server span (of this trace).
      const chain = ancestry(spans, statement);
      expect(chain.some((s) => s.kind === SPAN_KIND.SERVER)).toBe(true);
    }
    expect(spans.some((s) => s.name === 'commit group')).toBe(true);
  });

  test('[B] invalid traceparent values restart the trace and never fail the call; valid future versions and oversized tracestate or baggage do not fail it either', async () => {
    // A bare gRPC client: the typed client would replace an invalid traceparent before sending it.
    const channel = createChannel(kernel.address);
    const client = createClient(SecretServiceDefinition, channel);
    const call = (headers: Record<string, string>, onTrailer: (traceId: string | undefined) => void) =>
      client.listSecrets({ pageSize: 1 }, { metadata: Metadata({ authorization: `Bearer ${token}`, 'x-tenant-id': tenant, ...headers }), onTrailer: (t) => onTrailer(t.get('x-trace-id')) });
    const sent = '12345678901234567890123456789012';
    const invalid = [
      `ff-${sent}-1234567890123456-01`, // version ff
      `00-${'0'.repeat(32)}-1234567890123456-01`, // all-zero trace id
      `00-${sent}-${'0'.repeat(16)}-01`, // all-zero parent id
      `00-${sent}-123456789012345-01`, // parent id too short
      `00-${sent}1-1234567890123456-01`, // trace id too long
      `00-${sent.toUpperCase().replace(/1/g, 'A')}-1234567890123456-01`, // upper-case hex
      `00-${sent}-1234567890123456-01-extra`, // extra field on version 00
      'garbage',
    ];
    for (const traceparent of invalid) {
      let trailer: string | undefined;
      const response = await call({ traceparent }, (t) => (trailer = t));
      expect(response).toBeDefined();
      expect(trailer).toMatch(/^[0-9a-f]{32}$/);
      expect(trailer).not.toBe(sent);
      expect(trailer).not.toBe('0'.repeat(32));
      // The restarted trace has its own root span at the kernel.
      const server = (await spansOf(trailer!, (s) => s.some((x) => x.kind === SPAN_KIND.SERVER))).find((x) => x.kind === SPAN_KIND.SERVER)!;
      expect(server.parentSpanId).toBe('');
    }

    // A later version is read by its first four fields; extra fields after a dash are ignored.
    const future = newTrace();
    let continued: string | undefined;
    await call({ traceparent: `cc-${future.traceId}-${future.spanId}-01-what-the-future-holds` }, (t) => (continued = t));
    expect(continued).toBe(future.traceId);

    // 33 tracestate members and baggage beyond its limits: dropped or trimmed, the trace and the call kept.
    const crowded = newTrace();
    const tracestate = Array.from({ length: 33 }, (_, i) => `k${i}=v${i}`).join(',');
    const baggage = Array.from({ length: 100 }, (_, i) => `b${i}=${'x'.repeat(100)}`).join(',');
    let kept: string | undefined;
    await call({ traceparent: `00-${crowded.traceId}-${crowded.spanId}-01`, tracestate, baggage }, (t) => (kept = t));
    expect(kept).toBe(crowded.traceId);
    const server = (await spansOf(crowded.traceId, (s) => s.some((x) => x.kind === SPAN_KIND.SERVER))).find((x) => x.kind === SPAN_KIND.SERVER)!;
    expect(server.parentSpanId).toBe(crowded.spanId);
    channel.close();
  });

  test('[C] a job continues its enqueuer\'s trace — execution span, its statements, the request it sends out (traceparent) — and so do batch chunks', async () => {
    const scheduler = createSchedulerClient(options());
    const batches = createBatchClient(options());
    clients.push(scheduler, batches);

    const caller = newTrace();
    const email = `jane.doe.${randomBytes(4).toString('hex')}@example.com`;
    forbidden.push(email);
    const { job } = await scheduler.enqueueJob({ job: { jobType: 'evi044.callout', payload: { customerEmail: email } } }, { metadata: traced(caller) });
    await waitFor(async () => hookRequests.some((r) => r.body.includes(job!.jobId)), 20_000);
    const hook = hookRequests.find((r) => r.body.includes(job!.jobId))!;
    const [, hookTrace, hookParent] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(hook.headers.traceparent))!;
    expect(hookTrace).toBe(caller.traceId);

    const spans = await spansOf(caller.traceId, (s) => s.some((x) => x.name === 'job evi044.callout' && s.some((y) => y.parentSpanId === x.spanId)));
    const enqueue = spans.find((s) => s.kind === SPAN_KIND.SERVER && s.name.endsWith('/EnqueueJob'))!;
    expect(enqueue.parentSpanId).toBe(caller.spanId);
    const execution = spans.find((s) => s.name === 'job evi044.callout')!;
    expect(execution.kind).toBe(SPAN_KIND.CONSUMER);
    expect(execution.parentSpanId).toBe(enqueue.spanId);
    expect(execution.links).toEqual([{ traceId: caller.traceId, spanId: enqueue.spanId }]);
    expect(execution.attributes).toMatchObject({ 'axis.tenant': tenant, 'axis.job.id': job!.jobId, 'axis.job.type': 'evi044.callout' });
    // The outbound request's parent is the job's execution span: the receiver continues the trace from there.
    expect(hookParent).toBe(execution.spanId);
    // The handler's own statement (its transaction given the job's context) is the job span's child.
    expect(spans.filter((s) => s.parentSpanId === execution.spanId).map((s) => s.name)).toEqual(['db SELECT scheduler_job']);

    // A batch: StartBatch → chunk job → chunk span → the item handler's statements.
    const batchCaller = newTrace();
    await batches.startBatch({ batch: { batchId: 'evi044-batch', itemType: 'evi044.item', chunkSize: 5 }, items: { $case: 'range', value: { start: 0, count: 10 } } }, { metadata: traced(batchCaller) });
    const batchSpans = await spansOf(batchCaller.traceId, (s) => s.filter((x) => x.name === 'batch chunk').length >= 2);
    const start = batchSpans.find((s) => s.kind === SPAN_KIND.SERVER && s.name.endsWith('/StartBatch'))!;
    for (const chunk of batchSpans.filter((s) => s.name === 'batch chunk')) {
      expect(chunk.attributes).toMatchObject({ 'axis.tenant': tenant, 'axis.batch.id': 'evi044-batch' });
      const chain = ancestry(batchSpans, chunk);
      expect(chain[1].name).toBe('job kernel.batch.chunk');
      expect(chain.map((s) => s.spanId)).toContain(start.spanId);
      expect(batchSpans.some((s) => s.parentSpanId === chunk.spanId && s.name.startsWith('db '))).toBe(true);
    }
  });

  test('[D] a call over its latency budget logs a warning with the trace id and increments a metric, exported over OTLP', async () => {
    const client = secrets();
    const caller = newTrace();
    await client.listSecrets({ pageSize: 1 }, { metadata: traced(caller) });
    // The log line, as the kernel process writes it (its stdout reaches the test a moment later).
    await waitFor(async () => logLines().some((e) => e.trace_id === caller.traceId && e.msg === 'rpc over its latency budget'), 10_000);
    const warning = logLines().find((e) => e.trace_id === caller.traceId && e.msg === 'rpc over its latency budget');
    expect(warning).toMatchObject({ level: 'warn', method: BUDGETED, budget_ms: 0.001 });
    // The counter, as the metrics exporter delivers it (cumulative: at least this call).
    await waitFor(async () => receiver.points.some((p) => p.metric === 'rpc_budget_violations_total' && p.attributes.method === BUDGETED && p.value >= 1), 20_000);
  });

  test('[E] the OTLP receiver gets the spans and metrics, tagged with the tenant, with no secret, token or personal data', async () => {
    // What the proofs above caused, exported by now (the processor exports every 100 ms).
    await waitFor(async () => receiver.spans.filter((s) => s.resource['service.name'] === 'axis-kernel' && s.kind === SPAN_KIND.SERVER).length > 10, 20_000);
    const kernelSpans = receiver.spans.filter((s) => s.resource['service.name'] === 'axis-kernel');
    expect(kernelSpans.length).toBeGreaterThan(20);
    const servers = kernelSpans.filter((s) => s.kind === SPAN_KIND.SERVER);
    expect(servers.length).toBeGreaterThan(10);
    for (const span of servers) {
      expect(span.attributes['axis.tenant']).toBe(tenant);
      expect(span.attributes['rpc.system']).toBe('grpc');
      expect(typeof span.attributes['rpc.method']).toBe('string');
    }
    // Every span of tenant work names its tenant.
    for (const span of kernelSpans.filter((s) => s.name.startsWith('db ') || s.name.startsWith('job ') || s.name === 'batch chunk')) {
      expect(span.attributes['axis.tenant']).toBeDefined();
    }
    // Nothing that must stay inside: not in any attribute, name or resource, in no encoding.
    const raw = receiver.rawText();
    expect(forbidden.length).toBeGreaterThanOrEqual(4);
    for (const value of forbidden) {
      for (const form of [value, Buffer.from(value).toString('base64'), Buffer.from(value).toString('hex')]) expect(raw).not.toContain(form);
    }
    expect(raw).not.toMatch(/authorization|bearer/i);
    // Statement spans name the command and table only, never the statement text or its values.
    for (const span of kernelSpans.filter((s) => s.name.startsWith('db '))) {
      expect(span.name).toMatch(/^db [A-Z]+( [a-z_0-9]+)?$/);
      expect(Object.keys(span.attributes).sort()).toEqual(['axis.tenant', 'db.operation', 'db.system']);
    }
    // Metrics: RPC durations by method and status, commit-group sizes, scheduler queue depth and lag.
    const wanted = ['rpc.server.duration', 'kernel.commit_group.size', 'kernel.scheduler.queue.depth', 'kernel.scheduler.queue.lag'];
    await waitFor(async () => wanted.every((m) => receiver.points.some((p) => p.metric === m)), 20_000);
    expect(receiver.points.filter((p) => p.metric === 'kernel.scheduler.queue.depth').map((p) => p.attributes.queue)).toEqual(expect.arrayContaining(['default', 'kernel']));
    const durations = receiver.points.filter((p) => p.metric === 'rpc.server.duration');
    expect(durations[0].unit).toBe('ms');
    expect(durations.some((p) => p.attributes['rpc.method'] === 'axis.kernel.secrets.v1.SecretService/CreateSecret' && p.attributes['rpc.grpc.status_code'] === 'OK')).toBe(true);
    // OTLP over HTTP with protobuf bodies, as the standard variables configured it.
    expect(receiver.requests.every((r) => r.contentType === 'application/x-protobuf')).toBe(true);
  });

  test('a service instrumented with @opentelemetry/instrumentation-grpc: the typed client joins its span, the kernel continues from the client span', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'tests/support/instrumented-client.ts')], {
      cwd: ROOT,
      env: { ...process.env, KERNEL_ADDRESS: kernel.address, KERNEL_TOKEN: token, KERNEL_TENANT: tenant, OTLP_ENDPOINT: receiver.endpoint },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    const { traceId, spanId } = JSON.parse(stdout.trim()) as { traceId: string; spanId: string };
    const spans = await spansOf(traceId, (s) => s.some((x) => x.kind === SPAN_KIND.SERVER && x.resource['service.name'] === 'axis-kernel'));
    const server = spans.find((s) => s.kind === SPAN_KIND.SERVER && s.resource['service.name'] === 'axis-kernel')!;
    const grpcClient = spans.find((s) => s.spanId === server.parentSpanId)!;
    expect(grpcClient).toMatchObject({ kind: SPAN_KIND.CLIENT, parentSpanId: spanId });
    expect(grpcClient.resource['service.name']).toBe('ledger-demo');
    expect(grpcClient.attributes['rpc.system']).toBe('grpc');
  });
});
