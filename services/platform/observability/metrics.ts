import type { Attributes, Counter, Histogram, Meter } from '@opentelemetry/api';

/**
 * The kernel's metrics, through the OpenTelemetry metrics API: counters and histograms by name
 * and labels, exported over OTLP when an endpoint is configured (see telemetry.ts). Counters are
 * also totalled in process, so a node (and its tests) can read them without an exporter.
 *
 * Label values are method names, status names, reasons, tenant ids — never request payloads.
 */
export class Metrics {
  private readonly totals = new Map<string, number>();
  private readonly counters = new Map<string, Counter>();
  private readonly histograms = new Map<string, Histogram>();

  /** `meter` absent: in-process totals only (tests, tools). */
  constructor(private readonly meter?: Meter) {}

  increment(name: string, labels: Record<string, string> = {}, by = 1): void {
    const key = metricKey(name, labels);
    this.totals.set(key, (this.totals.get(key) ?? 0) + by);
    if (!this.meter) return;
    let counter = this.counters.get(name);
    if (!counter) {
      counter = this.meter.createCounter(name);
      this.counters.set(name, counter);
    }
    counter.add(by, labels as Attributes);
  }

  /** Records one observation of a distribution (a duration in ms, a size). */
  record(name: string, value: number, labels: Record<string, string> = {}, unit?: string): void {
    if (!this.meter) return;
    let histogram = this.histograms.get(name);
    if (!histogram) {
      histogram = this.meter.createHistogram(name, unit ? { unit } : undefined);
      this.histograms.set(name, histogram);
    }
    histogram.record(value, labels as Attributes);
  }

  /** Reports `read()` on every collection (a queue depth, a lag). */
  observe(name: string, read: () => number, labels: Record<string, string> = {}): void {
    this.meter?.createObservableGauge(name).addCallback((result) => result.observe(read(), labels as Attributes));
  }

  /**
   * Gauges read together on each collection, by one (asynchronous) `read` — one query for several
   * figures. Nothing is read when nothing is exported. A failed read reports nothing that round.
   */
  observeAll(gauges: Record<string, { unit?: string; description?: string }>, read: () => Promise<Array<{ name: string; value: number; labels?: Record<string, string> }>>): void {
    const meter = this.meter;
    if (!meter) return;
    const observables = new Map(Object.entries(gauges).map(([name, options]) => [name, meter.createObservableGauge(name, options)]));
    meter.addBatchObservableCallback(async (result) => {
      for (const { name, value, labels } of await read().catch(() => [])) {
        const gauge = observables.get(name);
        if (gauge) result.observe(gauge, value, labels as Attributes);
      }
    }, [...observables.values()]);
  }

  counter(name: string, labels: Record<string, string> = {}): number {
    return this.totals.get(metricKey(name, labels)) ?? 0;
  }

  /** Sum of a counter over every label set. */
  total(name: string): number {
    let sum = 0;
    for (const [key, value] of this.totals) if (key === name || key.startsWith(`${name}{`)) sum += value;
    return sum;
  }
}

function metricKey(name: string, labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`);
  return parts.length ? `${name}{${parts.join(',')}}` : name;
}
