/**
 * The router worker's metrics without prom-client: counters, gauges and histograms
 * with the part of prom-client's API that RouterMetrics uses, read by the supervisor
 * as prom-client's own JSON (`getMetricsAsJSON`), which it merges with
 * AggregatorRegistry. A worker thus never loads prom-client (about 5 MB resident per
 * process; see the README's "what the workers cost"). The one-process router and the
 * supervisor use prom-client itself; test/unit/router-lite-metrics.test.ts drives
 * both with the same calls and compares their output.
 */
import type { MetricObjectWithValues, MetricValue } from "prom-client";
import type { MetricKinds, MetricsSetup } from "./metrics.js";

type LabelValues = Record<string, string | number>;
type Aggregator = "sum" | "max" | "min" | "omit" | "first" | "average";

interface LiteConfig {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly string[];
  readonly aggregator?: Aggregator;
  readonly buckets?: readonly number[];
  readonly registers?: readonly LiteRegistry[];
  collect?(this: LiteGauge): void;
}

/** One metric's series, keyed by their labels in the metric's label order. */
abstract class LiteMetric<S> {
  protected readonly series = new Map<string, { labels: LabelValues; value: S }>();
  constructor(
    protected readonly config: LiteConfig,
    readonly type: "counter" | "gauge" | "histogram",
  ) {
    for (const r of config.registers ?? []) r.register(this);
  }

  protected abstract fresh(): S;

  protected key(labels: LabelValues): string {
    for (const k of Object.keys(labels)) {
      if (!(this.config.labelNames ?? []).includes(k)) {
        throw new Error(`Added label "${k}" is not included in initial labelset: ${this.config.labelNames}`);
      }
    }
    return (this.config.labelNames ?? []).map((n) => String(labels[n] ?? "")).join("\u0000");
  }

  protected entry(labels: LabelValues): { labels: LabelValues; value: S } {
    const k = this.key(labels);
    let e = this.series.get(k);
    if (e === undefined) {
      e = { labels: { ...labels }, value: this.fresh() };
      this.series.set(k, e);
    }
    return e;
  }

  remove(labels: LabelValues): void {
    this.series.delete(this.key(labels));
  }

  protected abstract values(): MetricValue<string>[];

  json(): MetricObjectWithValues<MetricValue<string>> {
    const o = {
      name: this.config.name,
      help: this.config.help,
      type: this.type,
      values: this.values(),
      aggregator: this.config.aggregator ?? "sum",
    };
    return o as unknown as MetricObjectWithValues<MetricValue<string>>;
  }
}

/** Arguments as prom-client takes them: `(value?)` or `(labels, value?)`. */
function args(a?: LabelValues | number, b?: number): [LabelValues, number | undefined] {
  return typeof a === "object" ? [a, b] : [{}, a];
}

class Scalar extends LiteMetric<{ v: number }> {
  protected fresh() {
    return { v: 0 };
  }
  protected values(): MetricValue<string>[] {
    if (this.series.size === 0 && (this.config.labelNames ?? []).length === 0)
      return [{ value: 0, labels: {} }];
    return [...this.series.values()].map((e) => ({ value: e.value.v, labels: e.labels }));
  }
  protected add(labels: LabelValues, by: number): void {
    this.entry(labels).value.v += by;
  }
}

export class LiteCounter extends Scalar {
  constructor(config: LiteConfig) {
    super(config, "counter");
  }
  inc(a?: LabelValues | number, b?: number): void {
    const [labels, value = 1] = args(a, b);
    if (!(value >= 0)) throw new Error(`It is not possible to decrease a counter (${value})`);
    this.add(labels, value);
  }
  labels(labels: LabelValues): { inc(value?: number): void } {
    return { inc: (value = 1) => this.inc(labels, value) };
  }
}

export class LiteGauge extends Scalar {
  constructor(config: LiteConfig) {
    super(config, "gauge");
  }
  inc(a?: LabelValues | number, b?: number): void {
    const [labels, value = 1] = args(a, b);
    this.add(labels, value);
  }
  dec(a?: LabelValues | number, b?: number): void {
    const [labels, value = 1] = args(a, b);
    this.add(labels, -value);
  }
  set(a: LabelValues | number, b?: number): void {
    const [labels, value = 0] = args(a, b);
    this.entry(labels).value.v = value;
  }
  labels(labels: LabelValues) {
    return {
      inc: (value = 1) => this.inc(labels, value),
      dec: (value = 1) => this.dec(labels, value),
      set: (value: number) => this.set(labels, value),
    };
  }
  override json() {
    this.config.collect?.call(this);
    return super.json();
  }
}

export class LiteHistogram extends LiteMetric<{ counts: number[]; sum: number; count: number }> {
  private readonly buckets: readonly number[];
  constructor(config: LiteConfig) {
    super(config, "histogram");
    this.buckets = config.buckets ?? [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  }
  protected fresh() {
    return { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
  }
  observe(a: LabelValues | number, b?: number): void {
    const [labels, value = 0] = args(a, b);
    const s = this.entry(labels).value;
    const i = this.buckets.findIndex((le) => value <= le);
    if (i >= 0) s.counts[i]! += 1;
    s.sum += value;
    s.count += 1;
  }
  zero(labels: LabelValues): void {
    this.entry(labels);
  }
  protected values(): MetricValue<string>[] {
    const name = this.config.name;
    const out: MetricValue<string>[] = [];
    for (const { labels, value } of this.series.values()) {
      let acc = 0;
      const bucket = (le: number | string, v: number) =>
        out.push({
          value: v,
          metricName: `${name}_bucket`,
          exemplar: null,
          labels: { le, ...labels },
        } as never);
      this.buckets.forEach((le, i) => {
        acc += value.counts[i]!;
        bucket(le, acc);
      });
      bucket("+Inf", value.count);
      out.push({ value: value.sum, metricName: `${name}_sum`, labels } as never);
      out.push({ value: value.count, metricName: `${name}_count`, labels } as never);
    }
    return out;
  }
}

export class LiteRegistry {
  private readonly metrics: LiteMetric<unknown>[] = [];
  register(m: LiteMetric<unknown>): void {
    this.metrics.push(m);
  }
  async getMetricsAsJSON(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    return this.metrics.map((m) => m.json());
  }
}

/** The constructors RouterMetrics takes, for a worker. */
export const liteKinds = { Counter: LiteCounter, Gauge: LiteGauge, Histogram: LiteHistogram };

/** A worker's metrics: a LiteRegistry and the lite constructors. */
export function liteMetrics(): MetricsSetup {
  return { registry: new LiteRegistry(), kinds: liteKinds as unknown as MetricKinds };
}
