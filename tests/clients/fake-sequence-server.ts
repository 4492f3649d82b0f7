import { setTimeout as sleep } from 'node:timers/promises';
import { createServer, Metadata, ServerError, Status, type CallContext, type Server, type ServerMiddleware } from 'nice-grpc';
import {
  BadRequest,
  ErrorInfo,
  errorDetailsServerMiddleware,
  PreconditionFailure,
  QuotaFailure,
  RetryInfo,
  RichServerError,
  type ErrorDetails,
} from 'nice-grpc-error-details';
import {
  SequenceServiceDefinition,
  type SequenceServiceImplementation,
} from '../../gen/proto/axis/kernel/sequences/v1/sequence_service';

/** One call as the fake server saw it. */
export interface RecordedCall {
  method: string;
  seriesId: string;
  metadata: Metadata;
}

export interface FakeSequenceServer {
  readonly address: string;
  readonly calls: RecordedCall[];
  /** The calls of one method and series, in arrival order. */
  callsTo(method: string, seriesId: string): RecordedCall[];
  close(): Promise<void>;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

const errorInfo = (reason: string, metadata: Record<string, string> = {}, domain = 'kernel.axis') =>
  ErrorInfo.fromPartial({ reason, domain, metadata });
const retryInfo = (ms: number) => RetryInfo.fromPartial({ retryDelay: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 } });
const rich = (code: Status, message: string, details: ErrorDetails[]) => new RichServerError(code, message, details);

/**
 * A real nice-grpc server with a scripted SequenceService: the series id (its part before a
 * colon) picks the behaviour.
 * Like the kernel, it answers every call with `x-trace-id` (the caller's trace id) and, for a
 * repeated idempotency key, replays with `idempotent-replayed: true`.
 */
export async function startFakeSequenceServer(): Promise<FakeSequenceServer> {
  const calls: RecordedCall[] = [];
  const completedKeys = new Set<string>();
  const attemptsByKey = new Map<string, number>();

  const traceTrailer: ServerMiddleware = async function* traceTrailer(call, context) {
    const traceId = TRACEPARENT.exec(context.metadata.get('traceparent') ?? '')?.[1] ?? 'f'.repeat(32);
    context.trailer.set('x-trace-id', traceId);
    return yield* call.next(call.request, context);
  };

  const record = (method: string, seriesId: string, context: CallContext) => {
    calls.push({ method, seriesId, metadata: Metadata(context.metadata) });
    const key = context.metadata.get('idempotency-key') ?? '';
    const attempt = (attemptsByKey.get(key) ?? 0) + 1;
    attemptsByKey.set(key, attempt);
    return { key, attempt };
  };

  const number = (seriesId: string) => ({ number: { seriesId, period: '2026', value: 7, formatted: 'INV-2026-7' } });

  const implementation: Partial<SequenceServiceImplementation> = {
    async getSeries({ seriesId }, context) {
      record('GetSeries', seriesId, context);
      if (seriesId === 'missing') {
        throw rich(Status.NOT_FOUND, 'series not found', [errorInfo('SERIES_NOT_FOUND', { series_id: seriesId, trace_id: 'from-error-info' })]);
      }
      if (seriesId === 'slow') await sleep(5_000, undefined, { signal: context.signal });
      return { series: { seriesId, displayName: 'Invoices', pattern: 'INV-{YYYY}-{SEQ:4}' } };
    },

    async issueNumber({ seriesId }, context) {
      const { key, attempt } = record('IssueNumber', seriesId, context);
      // `behaviour:label` lets tests use a behaviour under their own series id.
      switch (seriesId.split(':')[0]) {
        case 'contended':
          if (attempt <= 2) {
            throw rich(Status.ABORTED, 'key in use', [errorInfo('IDEMPOTENCY_KEY_IN_USE'), retryInfo(50)]);
          }
          break;
        case 'always-contended':
          throw rich(Status.ABORTED, 'key in use', [errorInfo('IDEMPOTENCY_KEY_IN_USE'), retryInfo(100)]);
        case 'aborted-without-retry-info':
          throw rich(Status.ABORTED, 'conflict', [errorInfo('CONCURRENT_UPDATE')]);
        case 'flaky':
          if (attempt === 1) throw new ServerError(Status.UNAVAILABLE, 'try again');
          break;
        case 'invalid':
          throw rich(Status.INVALID_ARGUMENT, 'bad subject', [
            errorInfo('FIELD_INVALID'),
            BadRequest.fromPartial({ fieldViolations: [{ field: 'subject_ref', description: 'too long' }] }),
          ]);
        case 'exhausted':
          throw rich(Status.RESOURCE_EXHAUSTED, 'quota', [
            errorInfo('QUOTA_EXCEEDED'),
            QuotaFailure.fromPartial({ violations: [{ subject: 'tenant:acme', description: 'numbers per day' }] }),
          ]);
        case 'precondition':
          throw rich(Status.FAILED_PRECONDITION, 'voided', [
            errorInfo('NUMBER_ALREADY_VOIDED', { resource: 'inv/2026/7' }),
            PreconditionFailure.fromPartial({ violations: [{ type: 'NUMBER_ALREADY_VOIDED', subject: 'inv/2026/7', description: 'voided' }] }),
          ]);
        case 'foreign-domain':
          throw rich(Status.NOT_FOUND, 'not ours', [errorInfo('SOMETHING', {}, 'other.example')]);
      }
      if (completedKeys.has(key)) context.trailer.set('idempotent-replayed', 'true');
      completedKeys.add(key);
      return number(seriesId);
    },
  };

  // nice-grpc binds every method of the definition, so the unscripted ones answer UNIMPLEMENTED.
  const unimplemented = async () => {
    throw new ServerError(Status.UNIMPLEMENTED, 'not scripted');
  };
  const stubs = Object.fromEntries(Object.keys(SequenceServiceDefinition.methods).map((name) => [name, unimplemented]));
  const server: Server = createServer().use(traceTrailer).use(errorDetailsServerMiddleware);
  server.add(SequenceServiceDefinition, { ...stubs, ...implementation } as SequenceServiceImplementation);
  const port = await server.listen('127.0.0.1:0');
  return {
    address: `127.0.0.1:${port}`,
    calls,
    callsTo: (method, seriesId) => calls.filter((c) => c.method === method && c.seriesId === seriesId),
    close: () => server.shutdown(),
  };
}
