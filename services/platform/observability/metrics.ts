/**
 * In-process metrics: counters and latency histograms keyed by name and labels. Small on
 * purpose; the OpenTelemetry metrics bridge (K-M7) reads from here.
 */
export class Metrics {
  private readonly counters = new Map<string, number>();
  private readonly histograms = new Map<string, number[]>();

  increment(name: string, labels: Record<string, string> = {}, by = 1): void {
    const key = metricKey(name, labels);
    this.counters.set(key, (this.counters.get(key) ?? 0) + by);
  }

  /** Records one observation (kept in a bounded reservoir per series). */
  observe(name: string, labels: Record<string, string>, value: number): void {
    const key = metricKey(name, labels);
    let values = this.histograms.get(key);
    if (!values) this.histograms.set(key, (values = []));
    if (values.length >= 10_000) values.splice(0, values.length - 5_000);
    values.push(value);
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

  snapshot(): { counters: Record<string, number>; histograms: Record<string, { count: number; p50: number; p99: number }> } {
    const histograms: Record<string, { count: number; p50: number; p99: number }> = {};
    for (const [key, values] of this.histograms) {
      const sorted = [...values].sort((a, b) => a - b);
      const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
      histograms[key] = { count: values.length, p50: at(0.5), p99: at(0.99) };
    }
    return { counters: Object.fromEntries(this.counters), histograms };
  }
}

function metricKey(name: string, labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`);
  return parts.length ? `${name}{${parts.join(',')}}` : name;
}
