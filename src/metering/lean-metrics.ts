import type { Registry } from 'prom-client';

/**
 * Prometheus metrics for the request path, registered in a prom-client Registry and exported by it like
 * any of its metrics (same text, checked against prom-client in the tests). prom-client's own metrics
 * validate and hash the label set on every `inc` and `observe`, even through a `labels()` child: with a
 * dozen updates per request and one observation per streamed token (inter-token latency), that was a
 * measurable share of a request's CPU in bench/overhead. Here a child is found once per label set and
 * kept; an update is an addition (a histogram adds a bounds scan).
 */

/** What prom-client's Registry reads from a metric when it renders. */
interface ExportedMetric {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: Array<{ metricName?: string; labels: Record<string, string | number>; value: number }>;
}

/** One metric's series by label set, registered in prom-client registries; subclasses say how to export. */
abstract class LeanMetric<
  Label extends string,
  Child extends { readonly labels: Readonly<Record<string, string>> },
> {
  protected readonly series = new Map<string, Child>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly Label[],
    registers: readonly Registry[],
  ) {
    for (const registry of registers) registry.registerMetric(this as never);
  }

  /** The series for one label set; keep it (looking it up again builds a key). */
  labels(labels: Readonly<Record<Label, string>>): Child {
    const key = this.labelNames.map((name) => labels[name]).join('\0');
    let child = this.series.get(key);
    if (!child) {
      child = this.newChild({ ...labels });
      this.series.set(key, child);
    }
    return child;
  }

  /** What prom-client's Registry reads when it renders. */
  abstract get(): ExportedMetric;

  reset(): void {
    this.series.clear();
  }

  protected abstract newChild(labels: Readonly<Record<string, string>>): Child;
}

/** A counter (only goes up) or a gauge (up and down) with labels. */
export class LeanValue<Label extends string> extends LeanMetric<Label, LeanValueChild> {
  private readonly type: 'counter' | 'gauge';

  constructor(options: {
    name: string;
    help: string;
    type: 'counter' | 'gauge';
    labelNames: readonly Label[];
    registers: readonly Registry[];
  }) {
    super(options.name, options.help, options.labelNames, options.registers);
    this.type = options.type;
  }

  get(): ExportedMetric {
    const values: ExportedMetric['values'] = [];
    for (const child of this.series.values()) values.push({ labels: child.labels, value: child.value });
    return { name: this.name, help: this.help, type: this.type, aggregator: 'sum', values };
  }

  protected newChild(labels: Readonly<Record<string, string>>): LeanValueChild {
    return new LeanValueChild(labels);
  }
}

export class LeanValueChild {
  value = 0;
  constructor(readonly labels: Readonly<Record<string, string>>) {}
  inc(amount = 1): void {
    this.value += amount;
  }
  dec(amount = 1): void {
    this.value -= amount;
  }
}

export class LeanHistogram<Label extends string> extends LeanMetric<Label, LeanHistogramChild> {
  /** Upper bounds, ascending; `+Inf` is added. */
  private readonly buckets: readonly number[];

  constructor(options: {
    name: string;
    help: string;
    labelNames: readonly Label[];
    buckets: readonly number[];
    registers: readonly Registry[];
  }) {
    super(options.name, options.help, options.labelNames, options.registers);
    this.buckets = options.buckets;
  }

  /** Cumulative buckets, then sum and count, per series, in prom-client's label order (`le` first). */
  get(): ExportedMetric {
    const values: ExportedMetric['values'] = [];
    const { name, buckets } = this;
    for (const child of this.series.values()) {
      let cumulative = 0;
      buckets.forEach((bound, index) => {
        cumulative += child.counts[index] as number;
        values.push({
          metricName: `${name}_bucket`,
          labels: { le: bound, ...child.labels },
          value: cumulative,
        });
      });
      values.push({
        metricName: `${name}_bucket`,
        labels: { le: '+Inf', ...child.labels },
        value: child.count,
      });
      values.push({ metricName: `${name}_sum`, labels: child.labels, value: child.sum });
      values.push({ metricName: `${name}_count`, labels: child.labels, value: child.count });
    }
    return { name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }

  protected newChild(labels: Readonly<Record<string, string>>): LeanHistogramChild {
    return new LeanHistogramChild(this.buckets, labels);
  }
}

export class LeanHistogramChild {
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    private readonly bounds: readonly number[],
    readonly labels: Readonly<Record<string, string>>,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Per-token path: no allocation. */
  observe(value: number): void {
    const bounds = this.bounds;
    let index = 0;
    while (index < bounds.length && value > (bounds[index] as number)) index++;
    this.counts[index] = (this.counts[index] as number) + 1;
    this.sum += value;
    this.count++;
  }
}
