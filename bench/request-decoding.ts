/**
 * Request decoding micro-benchmark: what the kernel's guarded decode (services/platform/
 * request-guard.ts: size limit, generated decode, then the raw-bytes checks of wire-check.ts —
 * strict UTF-8 of every string, Timestamp and Duration ranges) costs per call over the generated
 * ts-proto `decode` alone, for representative requests. In-process, no network: it isolates the
 * decode step that runs for every call inside grpc-js.
 *
 *   npm run bench:request-decoding [-- --ms 4000]   (time per request type and variant)
 */
import { parseArgs } from 'node:util';
import { AppendEventsRequest, AuditServiceDefinition } from '../gen/proto/axis/kernel/audit/v1/audit_service';
import { BatchServiceDefinition, StartBatchRequest } from '../gen/proto/axis/kernel/batch/v1/batch_service';
import { EnqueueJobRequest, SchedulerServiceDefinition } from '../gen/proto/axis/kernel/scheduler/v1/scheduler_service';
import { AddSecretVersionRequest, SecretServiceDefinition } from '../gen/proto/axis/kernel/secrets/v1/secret_service';
import { GetSeriesRequest, IssueNumberRequest, SequenceServiceDefinition } from '../gen/proto/axis/kernel/sequences/v1/sequence_service';
import { guardRequestDecoding, RefusedRequest } from '../services/platform/request-guard';
import { machineLine } from './load';

const { values: args } = parseArgs({ options: { ms: { type: 'string', default: '4000' } } });
const BUDGET_MS = Number(args.ms);

type Definition = { fullName: string; methods: Record<string, { name: string; requestType: { decode(b: Uint8Array): unknown } }> };
const method = (definition: Definition, name: string) => Object.values(definition.methods).find((m) => m.name === name)!;
const guarded = (definition: Definition, name: string) => method(guardRequestDecoding(definition as never) as Definition, name);

const cases: Array<{ label: string; definition: Definition; name: string; bytes: Uint8Array }> = [
  { label: 'GetSeries (10 B, ASCII, no time fields)', definition: SequenceServiceDefinition, name: 'GetSeries', bytes: GetSeriesRequest.encode({ seriesId: 'bench-01' }).finish() },
  {
    label: 'IssueNumber (Timestamp, 2 strings)',
    definition: SequenceServiceDefinition,
    name: 'IssueNumber',
    bytes: IssueNumberRequest.encode({ seriesId: 'inv', documentTime: new Date(), subjectRef: 'order-4711' }).finish(),
  },
  {
    label: 'EnqueueJob (Value payload, 2 Durations, Timestamp)',
    definition: SchedulerServiceDefinition,
    name: 'EnqueueJob',
    bytes: EnqueueJobRequest.encode(
      EnqueueJobRequest.fromPartial({
        job: {
          queue: 'default',
          jobType: 'mail.send',
          payload: { to: 'a@example.com', subject: 'Grüße', lines: ['one', 'two', 'three'], n: 42 },
          runTime: new Date(),
          timeout: { seconds: 30, nanos: 0 },
          backoffBase: { seconds: 1, nanos: 0 },
        },
      }),
    ).finish(),
  },
  {
    label: 'AppendEvents (10 events, Struct details, non-ASCII)',
    definition: AuditServiceDefinition,
    name: 'AppendEvents',
    bytes: AppendEventsRequest.encode(
      AppendEventsRequest.fromPartial({
        events: Array.from({ length: 10 }, (_, i) => ({ action: 'billing.invoice.sent', resource: `invoices/${i}`, detail: { amount: 12.5 * i, currency: 'EUR', note: 'Straße №1', tags: ['a', 'b'] } })),
      }),
    ).finish(),
  },
  {
    label: 'AddSecretVersion (4 KiB binary value)',
    definition: SecretServiceDefinition,
    name: 'AddSecretVersion',
    bytes: AddSecretVersionRequest.encode(AddSecretVersionRequest.fromPartial({ secretId: 'db-password', value: Buffer.alloc(4096, 0xa7) })).finish(),
  },
  {
    label: 'StartBatch (10,000 inline string items, 1 MiB, non-ASCII)',
    definition: BatchServiceDefinition,
    name: 'StartBatch',
    bytes: StartBatchRequest.encode(
      StartBatchRequest.fromPartial({ batch: { batchId: 'b1', itemType: 'noop' }, items: { $case: 'inlineItems', value: { payloads: Array.from({ length: 10_000 }, (_, i) => `{"n":${i},"name":"Müller-${'x'.repeat(80)}"}`) } } }),
    ).finish(),
  },
];

/** Seconds per call of `fn` over one round of about `ms`. */
function round(fn: () => unknown, ms: number): number {
  let n = 0;
  const start = process.hrtime.bigint();
  const stop = start + BigInt(Math.round(ms * 1e6));
  let now = start;
  while (now < stop) {
    for (let i = 0; i < 16; i++) fn();
    n += 16;
    now = process.hrtime.bigint();
  }
  return Number(now - start) / 1e9 / n;
}

/**
 * The fastest round of each, the two alternating: other processes on the machine only ever make a
 * round slower, so the minimum is the least disturbed figure, and alternating exposes both to the
 * same disturbances.
 */
function compare(a: () => unknown, b: () => unknown): [number, number] {
  round(a, 100);
  round(b, 100);
  let bestA = Infinity;
  let bestB = Infinity;
  for (let i = 0; i < 20; i++) {
    bestA = Math.min(bestA, round(a, BUDGET_MS / 40));
    bestB = Math.min(bestB, round(b, BUDGET_MS / 40));
  }
  return [bestA, bestB];
}

console.log(machineLine());
console.log('| request | bytes | generated decode | guarded decode | added per call |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const c of cases) {
  const plain = method(c.definition, c.name);
  const guard = guarded(c.definition, c.name);
  const check = guard.requestType.decode(c.bytes);
  if (check instanceof RefusedRequest) throw new Error(`${c.label}: the guarded decode refused a valid request: ${check.error.message}`);
  const [plainS, guardedS] = compare(() => plain.requestType.decode(c.bytes), () => guard.requestType.decode(c.bytes));
  const us = (seconds: number) => seconds * 1e6;
  console.log(`| ${c.label} | ${c.bytes.length.toLocaleString('en-US')} | ${us(plainS).toFixed(2)} µs | ${us(guardedS).toFixed(2)} µs | ${(us(guardedS) - us(plainS)).toFixed(2)} µs |`);
}
