import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { hostname } from 'node:os';
import { context as otelContext, trace as otelTrace, TraceFlags, type Context, type Meter, type Span, type Tracer } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { TraceContext } from '../trace-context';

/** The node's OpenTelemetry: where spans and metrics go, and how the kernel starts spans. */
export interface Telemetry {
  readonly tracer: Tracer;
  /** Undefined when nothing is exported (metrics stay in-process totals). */
  readonly meter?: Meter;
  /** True when spans are recorded and exported. */
  readonly exporting: boolean;
  /** Exports what is buffered now (spans and metrics). */
  flush(): Promise<void>;
  /** Flushes what is buffered and stops the exporters. */
  shutdown(): Promise<void>;
}

export interface TelemetryOptions {
  /** OTEL_EXPORTER_OTLP_ENDPOINT: unset ⇒ nothing is exported and spans cost (almost) nothing. */
  endpoint?: string;
  /** The standard variables the exporters read beyond the endpoint (headers, per-signal endpoints, intervals). */
  env?: Record<string, string | undefined>;
}

/**
 * OpenTelemetry for one kernel node, through the SDK: traces and metrics exported over OTLP
 * (HTTP, protobuf) when OTEL_EXPORTER_OTLP_ENDPOINT is set — `/v1/traces` and `/v1/metrics` under
 * it, or the per-signal OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT; OTEL_EXPORTER_OTLP_HEADERS,
 * OTEL_SERVICE_NAME and OTEL_METRIC_EXPORT_INTERVAL are honoured — and nothing at all otherwise.
 * Providers are the node's own, not process globals: several kernels in one process (the tests)
 * export independently.
 *
 * What spans carry: method, status, tenant, principal, job and batch ids — never a request's
 * payload, a token or a secret (tests/evi/evi044-telemetry.spec.ts checks what arrives).
 */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  const env = options.env ?? process.env;
  if (!options.endpoint) {
    return { tracer: otelTrace.getTracer('axis-kernel'), exporting: false, flush: async () => undefined, shutdown: async () => undefined };
  }
  const base = options.endpoint.replace(/\/+$/, '');
  const headers = parseHeaders(env.OTEL_EXPORTER_OTLP_HEADERS);
  // The exporters' default agent factory loads node:http by dynamic import, which some hosts of
  // the kernel (a test runner's VM context) cannot do: give them the agents directly.
  const agentFactory = (protocol: string) => (protocol === 'http:' ? new HttpAgent({ keepAlive: true }) : new HttpsAgent({ keepAlive: true }));
  const resource = resourceFromAttributes({
    'service.name': env.OTEL_SERVICE_NAME || 'axis-kernel',
    'service.instance.id': `${hostname()}:${process.pid}`,
  });
  const tracerProvider = new BasicTracerProvider({
    resource,
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || `${base}/v1/traces`, headers, httpAgentOptions: agentFactory }), {
        scheduledDelayMillis: Number(env.OTEL_BSP_SCHEDULE_DELAY) || 1000,
      }),
    ],
  });
  const meterProvider = new MeterProvider({
    resource,
    readers: [
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT || `${base}/v1/metrics`, headers, httpAgentOptions: agentFactory }),
        exportIntervalMillis: Number(env.OTEL_METRIC_EXPORT_INTERVAL) || 60_000,
      }),
    ],
  });
  return {
    tracer: tracerProvider.getTracer('axis-kernel'),
    meter: meterProvider.getMeter('axis-kernel'),
    exporting: true,
    async flush() {
      await Promise.allSettled([tracerProvider.forceFlush(), meterProvider.forceFlush()]);
    },
    async shutdown() {
      await Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]);
    },
  };
}

function parseHeaders(text: string | undefined): Record<string, string> | undefined {
  if (!text) return undefined;
  const headers: Record<string, string> = {};
  for (const pair of text.split(',')) {
    const at = pair.indexOf('=');
    if (at > 0) headers[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
  }
  return headers;
}

/** The OpenTelemetry context whose parent is the caller's span (the trace the kernel continues). */
export function remoteParent(trace: Pick<TraceContext, 'traceId' | 'parentSpanId' | 'sampled'>): Context {
  if (!trace.parentSpanId) return otelContext.active();
  return otelTrace.setSpanContext(otelContext.active(), {
    traceId: trace.traceId,
    spanId: trace.parentSpanId,
    traceFlags: trace.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE,
    isRemote: true,
  });
}

/**
 * The trace as the kernel reports it (trailer, logs, audit, stored traceparents) once `span` is
 * open: a recording span's own ids — the same trace id as `trace` when it continued the caller's,
 * the SDK's new one when the trace restarted — else `trace` unchanged (nothing recorded).
 */
export function withSpanIds<T extends { traceId: string; spanId: string }>(span: Span, trace: T): T {
  if (!span.isRecording()) return trace;
  const own = span.spanContext();
  return { ...trace, traceId: own.traceId, spanId: own.spanId };
}
