/*
 * Another service calling the kernel the way a domain team's service would: its own
 * OpenTelemetry SDK, @opentelemetry/instrumentation-grpc registered before gRPC is loaded, and
 * the typed kernel client used inside one of its own spans. Run as its own process
 * (`node --import tsx tests/support/instrumented-client.ts`): the instrumentation patches
 * @grpc/grpc-js for the whole process, which a test runner's module registry would not allow.
 *
 * Environment: KERNEL_ADDRESS, KERNEL_TOKEN, KERNEL_TENANT, OTLP_ENDPOINT.
 * Prints one JSON line: the trace id and span id of the service's own span.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

async function main(): Promise<void> {
  const env = (name: string) => process.env[name] ?? fail(`${name} is not set`);
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'ledger-demo' }),
    spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${env('OTLP_ENDPOINT')}/v1/traces` }))],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  registerInstrumentations({ instrumentations: [new GrpcInstrumentation()], tracerProvider: provider });

  // Only now is gRPC loaded (by the client), so the instrumentation sees it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createSchedulerClient, closeKernelClient } = require('../../clients/src') as typeof import('../../clients/src');
  const client = createSchedulerClient({ address: env('KERNEL_ADDRESS'), token: env('KERNEL_TOKEN'), tenantId: env('KERNEL_TENANT') });
  const tracer = trace.getTracer('ledger-demo');
  const ids = await tracer.startActiveSpan('ledger.post-invoice', async (span) => {
    try {
      await client.listJobs({ pageSize: 1 });
      return { traceId: span.spanContext().traceId, spanId: span.spanContext().spanId };
    } finally {
      span.end();
    }
  });
  closeKernelClient(client);
  await provider.forceFlush();
  await provider.shutdown();
  process.stdout.write(`${JSON.stringify(ids)}\n`);
}

function fail(message: string): never {
  throw new Error(message);
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
