/**
 * In-process counters keyed by name and labels. Small on purpose; latency histograms and the
 * OpenTelemetry export arrive with K-M7 (each call's duration is in its log line meanwhile).
 */
export class Metrics {
  private readonly counters = new Map<string, number>();

  increment(name: string, labels: Record<string, string> = {}, by = 1): void {
    const key = metricKey(name, labels);
    this.counters.set(key, (this.counters.get(key) ?? 0) + by);
  }

  counter(name: string, labels: Record<string, string> = {}): number {
    return this.counters.get(metricKey(name, labels)) ?? 0;
  }

  /** Sum of a counter over every label set. */
  total(name: string): number {
    let sum = 0;
    for (const [key, value] of this.counters) if (key === name || key.startsWith(`${name}{`)) sum += value;
    return sum;
  }
}

function metricKey(name: string, labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`);
  return parts.length ? `${name}{${parts.join(',')}}` : name;
}
