/**
 * The typed client's middleware chain alone: CPU per call of the kernel client chain
 * (clients/src: error normalization, trace, idempotency key, deadline, retry, authentication,
 * attempt errors) around an innermost step that answers at once — no transport, no protobuf —
 * 64 calls in flight in this process, in four rounds. What the chain itself adds to a typed
 * call; `bench:client-cost` measures the whole caller over the network.
 *
 *   npm run bench:client-chain [-- --calls 30000 --mutating]
 */
import { parseArgs } from 'node:util';
import { Metadata } from 'nice-grpc-common';
import { composeKernelMiddleware } from '../clients/src/client-chain';
import { kernelMiddlewareList } from '../clients/src/kernel-middleware';
import { machineLine } from './load';

async function main() {
  const { values } = parseArgs({ options: { calls: { type: 'string', default: '30000' }, mutating: { type: 'boolean', default: false } } });
  const calls = Number(values.calls);
  const chain = composeKernelMiddleware(kernelMiddlewareList({ token: 'header.payload.signature', tenantId: 'acme', deadlineMs: 30_000 }));
  // A read (NO_SIDE_EFFECTS) takes no idempotency key; a mutating call gets one per call.
  const method = { path: '/axis.kernel.sequences.v1.SequenceService/GetSeries', requestStream: false, responseStream: false, options: values.mutating ? {} : { idempotencyLevel: 'NO_SIDE_EFFECTS' as const } };
  // nice-grpc's step for a unary call: a generator that returns the response (here at once, after the trailer).
  async function* answer(_request: unknown, options: { onTrailer?: (trailer: Metadata) => void }): AsyncGenerator<never, unknown, undefined> {
    options.onTrailer?.(Metadata({ 'x-trace-id': '0af7651916cd43dd8448eb211c80319c' }));
    return { series: {} };
  }
  const one = async () => {
    const step = await chain({ method, request: { seriesId: 'bench' }, requestStream: false, responseStream: false, next: answer as never }, {} as never).next();
    if (!step.done) throw new Error('the chain yielded a message for a unary call');
  };
  console.log(`client chain benchmark — ${machineLine()}`);
  console.log(`  ${values.mutating ? 'mutating call (idempotency key per call)' : 'read (NO_SIDE_EFFECTS)'}, ${calls} calls per round, 64 in flight, no transport`);
  for (let round = 1; round <= 4; round += 1) {
    let started = 0;
    const before = process.cpuUsage();
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (started < calls) {
          started += 1;
          await one();
        }
      }),
    );
    const used = process.cpuUsage(before);
    console.log(`  round ${round}: ${((used.user + used.system) / calls).toFixed(1)} µs of CPU per call${round === 1 ? ' (includes warm-up)' : ''}`);
  }
}

void main();
